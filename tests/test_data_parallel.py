"""Data-parallel training (``gnn1000 train --workers``): DDP steps equal one process's step over the
union of the ranks' batches, for every deep architecture; a 2-worker run on Ray Train matches the
single-process run; a worker lost mid-run restarts from the last checkpoint and the run finishes.

Everything runs on the CPU with gloo on 127.0.0.1, on graphs of 240 nodes.
"""

import json
import os
import socket
import sys
from pathlib import Path

import gin
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import TINY

from gnn1000 import checkpoint
from gnn1000 import config as gin_config
from gnn1000.build import build_experiment
from gnn1000.ranks import Ranks

TESTS = Path(__file__).parent

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
TWO_PARTS = ["experiment.sampler = 'random_partition'", "random_partition.num_parts = 2", "experiment.epochs = 1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_step_on_rank(rank: int, world: int, port: int, bindings: list[str], out: str) -> None:
    """One rank of a gloo group: the experiment loop's first training step, weights to ``out``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        gin_config.load(None, bindings)
        experiment = build_experiment(Path(out).parent / f"rank-{rank}", progress=False, ranks=Ranks.current())
        experiment.epoch = 1
        experiment.train_epoch()
        if rank == 0:
            torch.save(experiment.model.state_dict(), out)
    finally:
        dist.destroy_process_group()


def union_step(bindings: list[str]) -> dict:
    """One process, one optimizer step on the mean loss over both parts' training rows."""
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
    return experiment.model.state_dict()


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_one_ddp_step_equals_a_step_over_the_union_of_both_ranks_batches(name, tmp_path, one_thread):
    """RevGNN (custom autograd Function, with and without a parameter its operator leaves unused),
    WT-RevGNN, ResGNN with and without checkpointing and DEQ-GNN under DDP without
    find_unused_parameters: after one step each of 2 ranks, the weights equal (1e-6 relative) one
    process's step over both ranks' parts. Dropout is 0 in every model (the default), so the only
    difference is the order in which gradients are summed."""
    bindings = [*TINY, *ARCHITECTURES[name], *TWO_PARTS]
    out = tmp_path / "rank0.pt"
    mp.spawn(_one_step_on_rank, args=(2, free_port(), bindings, str(out)), nprocs=2, join=True)
    gin.clear_config()
    expected = union_step(bindings)
    got = torch.load(out, weights_only=True)
    assert got.keys() == expected.keys()
    initial = None
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7, msg=f"{name}: {key} differs")
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
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path]), "OMP_NUM_THREADS": "1",
           "GNN1000_TEST_FAIL_MARKER": str(marker), **FAULT}
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
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.gin", "metrics.jsonl", "summary.json"]


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
