"""Data-parallel training (``gnn1000 train --workers``): DDP steps equal one process's step over the
union of the ranks' batches, for every deep architecture; a 2-worker run on Ray Train matches the
single-process run; a worker lost mid-run restarts from the last checkpoint and the run finishes.

Everything runs on the CPU with gloo on 127.0.0.1, on graphs of 240 nodes.
"""

import json
import os
import socket
import sys
import time
from pathlib import Path

import gin
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import TINY
from shared_data import requires, shared_data  # noqa: F401  (session fixture, for the graph-level case)

from gnn1000 import checkpoint
from gnn1000 import config as gin_config
from gnn1000.build import build_experiment
from gnn1000.ranks import Ranks

TESTS = Path(__file__).parent
WORKER_PATH = os.pathsep.join([str(TESTS), *sys.path])  # Ray workers import the test-only plugins (dp_faults)

ARCHITECTURES = {  # unused parameters: RevGNN under gcn leaves its edge encoder out of every forward
    "revgnn-gcn": ["experiment.architecture = 'revgnn'", "revgnn.hidden_channels = 16", "revgnn.num_layers = 3",
                   "revgnn.operator = 'gcn'"],
    "revgnn-gen": ["experiment.architecture = 'revgnn'", "revgnn.hidden_channels = 16", "revgnn.num_layers = 3"],
    "wt-revgnn": ["experiment.architecture = 'revgnn'", "revgnn.hidden_channels = 16", "revgnn.num_layers = 3",
                  "revgnn.weight_tied = True"],
    "resgnn": ["experiment.architecture = 'resgnn'", "resgnn.num_layers = 3"],
    "resgnn-checkpoint": ["experiment.architecture = 'resgnn'", "resgnn.num_layers = 3", "resgnn.checkpoint = True"],
    "deq": ["experiment.architecture = 'deq'", "deq.hidden_channels = 16", "deq.num_layers = 2", "deq.fwd_max_iter = 8",
            "deq.bwd_max_iter = 8"],
}
# One training step per rank; evaluation on 2 views of 3 parts, so ranks hold 3 parts each, of both views.
TWO_PARTS = ["experiment.sampler = 'random_partition'", "random_partition.num_parts = 2", "experiment.epochs = 1",
             "random_partition.eval_parts = 3", "random_partition.num_views = 2"]
CASES = {name: [*TINY, *bindings, *TWO_PARTS] for name, bindings in ARCHITECTURES.items()}
# Graph level: 16 training graphs in mini-batches of 8, one per rank; 19-graph valid/test splits make
# uneven shares (2 mini-batches and 1) that the gather must put back in order.
CASES["graph-level"] = [*TINY, "experiment.dataset = 'tu'", "tu.name = 'MUTAG'", "tu.readout = 'mean'",
                        "experiment.graphs_per_epoch = 16", "experiment.batch_size = 8", "experiment.epochs = 1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_step_on_rank(rank: int, world: int, port: int, bindings: list[str], out: str) -> None:
    """One rank of a gloo group: the experiment loop's first training step and the evaluation after
    it; rank 0 saves the weights and scores to ``out``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        gin_config.load(None, bindings)
        experiment = build_experiment(Path(out).parent / f"rank-{rank}", progress=False, ranks=Ranks.current())
        experiment.epoch = 1
        experiment.train_epoch()
        scores = experiment.evaluate()
        if rank == 0:
            torch.save({"model": experiment.model.state_dict(), "scores": scores}, out)
        del experiment  # DDP holds the process group: free it while the peer is still there
    finally:
        dist.destroy_process_group()


def union_step(bindings: list[str]) -> tuple[dict, dict]:
    """One process, one optimizer step on the mean loss over both batches' training rows; the
    weights and the evaluation after it."""
    gin_config.load(None, bindings)
    experiment = build_experiment(Path("unused"), progress=False)
    experiment.model.train()
    parts = list(experiment.runner.train_batches())
    rows = sum(int(mask.sum()) for _, mask in parts)
    experiment.optimizer.zero_grad()
    loss = sum(experiment.task.loss(experiment._forward(b)[m], b.y[m]) * int(m.sum()) / rows for b, m in parts)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(experiment.model.parameters(), experiment.cfg.grad_clip)
    experiment.optimizer.step()
    return experiment.model.state_dict(), experiment.evaluate()


@pytest.mark.parametrize("name", [*ARCHITECTURES, pytest.param("graph-level", marks=requires("tu/MUTAG"))])
def test_one_ddp_step_equals_a_step_over_the_union_of_both_ranks_batches(name, tmp_path, one_thread, request):
    """RevGNN (custom autograd Function, with and without a parameter its operator leaves unused),
    WT-RevGNN, ResGNN with and without checkpointing and DEQ-GNN under DDP without
    find_unused_parameters, and a graph-level ResGNN: after one step each of 2 ranks, the weights
    equal (1e-6 relative) one process's step over both ranks' batches, and the distributed, gathered
    evaluation (multi-view for the partitions) scores them as one process does. Dropout is 0 in every
    model (the default), so the only difference is the order in which gradients are summed."""
    if name == "graph-level":
        request.getfixturevalue("shared_data")  # GNN1000_DATA: a session copy the spawned ranks inherit
    bindings = CASES[name]
    out = tmp_path / "rank0.pt"
    mp.spawn(_one_step_on_rank, args=(2, free_port(), bindings, str(out)), nprocs=2, join=True)
    gin.clear_config()
    expected, scores = union_step(bindings)
    got = torch.load(out, weights_only=True)
    assert got["model"].keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got["model"][key], value, rtol=1e-6, atol=1e-7, msg=f"{name}: {key} differs")
    assert got["scores"] == pytest.approx(scores, rel=1e-6)
    # the step moved the weights (a test that compares two unchanged models would prove nothing)
    gin_config.load(None, bindings)
    initial = build_experiment(Path("unused"), progress=False).model.state_dict()
    assert any(not torch.equal(initial[k], expected[k]) for k in expected if expected[k].is_floating_point())


# -- on Ray Train ----------------------------------------------------------------------------------

FULL_BATCH_REVGNN = [*TINY, *ARCHITECTURES["revgnn-gen"], "experiment.epochs = 3"]
FAULT = {"GNN1000_TEST_FAIL_RANK": "1", "GNN1000_TEST_FAIL_EPOCH": "2"}


@pytest.fixture(scope="module")
def ray_cpus(tmp_path_factory):
    """A local Ray of 2 CPUs whose workers can import the test-only fault plugin (tests/dp_faults.py)."""
    ray = pytest.importorskip("ray")
    marker = tmp_path_factory.mktemp("fault") / "failed"
    env = {"PYTHONPATH": WORKER_PATH, "OMP_NUM_THREADS": "1",
           "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",  # as `train --workers` sets for its local Ray
           "GNN1000_TEST_FAIL_MARKER": str(marker), "GNN1000_TEST_EPOCHS_FILE": str(marker.with_name("epochs")),
           **FAULT}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, address="local")
    yield marker
    ray.shutdown()


def config_text(bindings: list[str], *lines: str) -> str:
    gin_config.load(None, bindings)
    text = gin.config_str()
    gin.clear_config()
    return "\n".join([*lines, text])


@pytest.fixture(scope="module")
def uninterrupted(ray_cpus, tmp_path_factory):
    """A 3-epoch RevGNN run (full batch) in 2 workers, and what on_epoch saw in this process."""
    from gnn1000.tune.data_parallel import fit_data_parallel

    run = tmp_path_factory.mktemp("dp") / "run"
    seen = []
    final = fit_data_parallel(config_text(FULL_BATCH_REVGNN), run, workers=2,
                              on_epoch=lambda record, run_dir: seen.append((record["epoch"], run_dir,
                                                                            (run_dir / "metrics.jsonl").read_text())))
    return run, final, seen


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_workers_match_one_process_over_three_epochs(uninterrupted, tmp_path, one_thread):
    """Full batch: each rank's loss covers every other training node, weighted so DDP's average is the
    full-batch gradient; with dropout 0 both runs take the same steps in exact arithmetic, and only
    float32 summation order differs (two partial gradients all-reduced vs one sum). Over 3 Adam steps
    that stays below 1e-5 relative in the loss; the ROC-AUCs, rank statistics of logits that agree to
    that precision, match to 1e-4 (a swapped near-tie of two of 240 nodes' scores moves them less)."""
    run, final, seen = uninterrupted
    gin_config.load(None, FULL_BATCH_REVGNN)
    single = build_experiment(tmp_path / "single", progress=False).fit()
    parallel = history(run)
    assert [r["epoch"] for r in parallel] == [1, 2, 3]
    for one, two in zip(history(tmp_path / "single"), parallel, strict=True):
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
        for split in ("train", "valid", "test"):
            assert two[f"{split}_rocauc"] == pytest.approx(one[f"{split}_rocauc"], abs=1e-4)
    assert final["epoch"] == 3 and final["loss"] == parallel[-1]["loss"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["final"]["epoch"] == 3 and single["epochs"] == 3
    # on_epoch ran here, each time with the run directory already holding that epoch's record
    assert [(epoch, path) for epoch, path, _ in seen] == [(1, run.resolve()), (2, run.resolve()), (3, run.resolve())]
    assert [len(text.splitlines()) for _, _, text in seen] == [1, 2, 3]
    # rank 0's run only: no other rank's files, no lock left by a worker
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.gin", "metrics.jsonl", "run-id", "summary.json"]


def test_a_worker_lost_mid_run_restarts_from_the_last_checkpoint(uninterrupted, ray_cpus, tmp_path):
    """Rank 1 raises after epoch 2's checkpoint is written but before it is reported, so the last
    checkpoint is epoch 1's: the new worker group restores it (weights, optimizer, random state) and
    trains epochs 2 and 3 again. The restart is deterministic (same draws from the restored random
    state, gloo sums two ranks in a fixed order), so the final weights equal the uninterrupted run's."""
    from gnn1000.tune.data_parallel import fit_data_parallel

    run, logged = tmp_path / "run", []
    final = fit_data_parallel(config_text([*FULL_BATCH_REVGNN, "experiment.loggers = ['fail_once']"],
                                          "import dp_faults"),
                              run, workers=2, max_failures=1, log=logged.append)
    assert ray_cpus.read_text().startswith("failed at epoch 2")  # the fault really happened
    assert any("WorkerLost" in line for line in logged)
    records = history(run)
    assert [r["epoch"] for r in records] == [1, 2, 3] and final["epoch"] == 3
    restarts = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert [(r["after_epoch"], "worker failed" in r["reason"]) for r in restarts] == [(1, True)]
    assert "# This run was resumed" in (run / "config.gin").read_text()
    expected = checkpoint.load(uninterrupted[0] / "checkpoints" / "last.pt")["model"]
    got = checkpoint.load(run / "checkpoints" / "last.pt")["model"]
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    for one, two in zip(history(uninterrupted[0]), records):
        assert {k: v for k, v in one.items() if k not in ("seconds", "step_memory_mb")} == \
               {k: v for k, v in two.items() if k not in ("seconds", "step_memory_mb")}


def test_resume_continues_a_data_parallel_run_in_its_own_directory(uninterrupted, tmp_path):
    """--resume with --workers: the workers start from the run directory's checkpoint, train the
    epochs added, and the run records the change as a single-process resume does."""
    import shutil

    from gnn1000.tune.data_parallel import fit_data_parallel

    run = shutil.copytree(uninterrupted[0], tmp_path / "run")
    final = fit_data_parallel(config_text([*FULL_BATCH_REVGNN, "experiment.epochs = 4"]), run, workers=2, resume=True)
    assert [r["epoch"] for r in history(run)] == [1, 2, 3, 4] and final["epoch"] == 4
    assert history(run)[:3] == history(uninterrupted[0])
    [entry] = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert entry["after_epoch"] == 3 and entry["changed"] == {"experiment.epochs": {"from": 3, "to": 4}}


def test_a_caller_that_stops_reading_ends_the_run_and_frees_the_workers(ray_cpus, tmp_path):
    """Tune stops a trial by raising SystemExit in its report (ASHA's early stop): fit_data_parallel
    re-raises it only after the workers ended at the next epoch, so their CPUs are free for the next
    trial, and the run directory keeps the epochs it reported."""
    import ray

    from gnn1000.tune.data_parallel import fit_data_parallel

    def stop_after_epoch_1(record, _run_dir):
        if record["epoch"] == 1:
            raise SystemExit(0)

    run, trained = tmp_path / "run", ray_cpus.with_name("epochs")
    with pytest.raises(SystemExit):
        fit_data_parallel(config_text([*FULL_BATCH_REVGNN, "experiment.epochs = 100",
                                       "experiment.loggers = ['epochs_trained']"], "import dp_faults"),
                          run, workers=2, on_epoch=stop_after_epoch_1)
    # the workers stopped within the epochs that were under way when the caller stopped, not at 100
    assert 1 <= len(trained.read_text().split()) < 100
    assert [r["epoch"] for r in history(run)] == [1]  # what the caller was shown, and no more
    deadline = time.monotonic() + 60  # Ray hands a finished run's placement group back asynchronously
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]


def test_a_bad_setting_in_the_workers_is_the_users_error_not_rays(ray_cpus, tmp_path):
    """A setting only the workers meet (the model is built there) comes back as gnn1000's own error,
    which the CLI prints as one paragraph with exit code 2, not as Ray's wrapping of it."""
    from gnn1000.errors import ConfigError
    from gnn1000.tune.data_parallel import fit_data_parallel

    with pytest.raises(ConfigError, match="hidden_channels=16 is not divisible by num_groups=3") as raised:
        fit_data_parallel(config_text([*FULL_BATCH_REVGNN, "revgnn.num_groups = 3"]), tmp_path / "run", workers=2)
    assert type(raised.value).__module__.startswith("gnn1000")


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--workers", "0"], "--workers 0: the number of data-parallel workers must be >= 1"),
    (["--workers", "2", "--gpus-per-worker", "-1"], "--gpus-per-worker -1: must be >= 0"),
    (["--gpus-per-worker", "1"], "only apply to a data-parallel run; add --workers N"),
    (["--address", "auto", "--storage", "/tmp/x"], "--address, --storage only apply to a data-parallel run"),
    (["--workers", "2", "--seeds", "2"], "--workers cannot be combined with --seeds or --folds"),
    (["--workers", "2", "--address", "127.0.0.1:1"], "no Ray head answers at 127.0.0.1:1"),
    (["--workers", "2", "--max-failures", "-2"], "--max-failures -2: must be >= 0"),
    (["--max-failures", "3"], "--max-failures only apply to a data-parallel run"),
])
def test_bad_data_parallel_flags_get_one_paragraph_and_exit_code_2(args, says, tmp_path):
    from helpers import bind_args, run_gnn1000

    result = run_gnn1000(["train", *bind_args(TINY), "--run-dir", str(tmp_path / "run"), *args], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())  # nothing left behind


@pytest.mark.parametrize("workers, gpus, cluster, says", [
    (4, 0.0, {"CPU": 2.0}, "needs 4 CPUs but the cluster has 2. Ray Train would wait for them forever; use fewer"),
    (2, 1.0, {"CPU": 8.0}, "needs 2 GPUs but the cluster has 0"),
    (2, 0.5, {"CPU": 8.0, "GPU": 1.0}, "cannot share a GPU"),
])
def test_requests_the_cluster_cannot_meet_fail_at_once(workers, gpus, cluster, says):
    from gnn1000.errors import ConfigError
    from gnn1000.tune.data_parallel import check_workers

    with pytest.raises(ConfigError, match=None) as raised:
        check_workers(workers, gpus, 1, cluster)
    assert says in str(raised.value)


# -- the driver killed -------------------------------------------------------------------------------

KILLS = int(os.environ.get("GNN1000_DP_KILLS", "2"))  # the closing note's figure: GNN1000_DP_KILLS=20


def test_a_killed_driver_leaves_a_run_that_resumes_to_the_uninterrupted_one(tmp_path):
    """#25: SIGKILL the `gnn1000 train --workers 2` process (the driver, whose run directory is the
    only copy a user keeps) at a random moment of training, KILLS times. Each kill leaves the run
    directory at most one epoch behind the epochs the workers had finished, and `--resume` carries the
    run on: the records and the final weights equal an uninterrupted 2-worker run's."""
    import random
    import signal
    import subprocess

    from test_run_safety import stable

    epochs = 8 + 2 * KILLS  # each kill falls after this start's copy gained an epoch
    config = tmp_path / "run.gin"
    config.write_text("\n".join(["import dp_faults", *TINY, *ARCHITECTURES["revgnn-gen"], f"experiment.epochs = {epochs}",
                                 "experiment.loggers = ['epochs_trained']", ""]))
    trained = tmp_path / "epochs"  # every epoch rank 0 finished, written by the workers themselves
    env = {**os.environ, "PYTHONPATH": WORKER_PATH, "OMP_NUM_THREADS": "1",
           "GNN1000_TEST_EPOCHS_FILE": str(trained)}

    def start(run: Path) -> subprocess.Popen:
        resume = (run / "checkpoints" / "last.pt").is_file()
        args = ["--resume", str(run)] if resume else [str(config), "--run-dir", str(run)]
        with open(tmp_path / "driver.log", "a") as log:  # a file, not a pipe: Ray's worker logs would fill it
            return subprocess.Popen([sys.executable, "-m", "gnn1000", "train", *args, "--workers", "2", "--no-progress"],
                                    env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

    def finished() -> int:
        return int(trained.read_text().split()[-1]) if trained.exists() and trained.read_text().split() else 0

    def mirrored(run: Path) -> int:
        return len((run / "metrics.jsonl").read_text().splitlines()) if (run / "metrics.jsonl").exists() else 0

    reference = tmp_path / "reference"
    proc = start(reference)
    assert proc.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    trained.unlink()

    run, rng, lags = tmp_path / "run", random.Random(25), []
    while len(lags) < KILLS:
        proc, before = start(run), mirrored(run)
        deadline = time.monotonic() + 300
        while mirrored(run) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # this start made progress: the kill falls in training, wherever in an epoch
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:
            break  # it finished first
        workers_finished = finished()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lags.append(workers_finished - mirrored(run))
    if not (run / "summary.json").exists():
        proc = start(run)
        assert proc.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    print(f"\n{len(lags)} SIGKILLs of the --workers 2 driver; epochs the workers had finished minus epochs "
          f"in the run directory, per kill: {lags}")
    assert len(lags) == KILLS and max(lags) <= 1, lags
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))  # each epoch once
    assert stable(records) == stable(history(reference))
    mine = checkpoint.load(run / "checkpoints" / "last.pt")["model"]
    theirs = checkpoint.load(reference / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
