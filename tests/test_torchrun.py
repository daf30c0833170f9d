"""``torchrun --nproc-per-node 2 -m gnn1000 train``: one model trained data-parallel, as ``--workers``
trains it on Ray Train; rank 0 writes the run directory a single-process run writes, and the run
resumes under torchrun.

Two CPU ranks (gloo on 127.0.0.1), on the 240-node graphs of tests/test_data_parallel.py, whose
single-process reference step (``union_step``) these runs are compared with.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import run_gnn1000
from test_data_parallel import CASES, free_port, history, union_step

from gnn1000 import checkpoint
from gnn1000 import config as gin_config
from gnn1000.build import build_experiment

# one step per rank: 2 partition parts, one each; evaluated on 2 views of 3 parts
BINDINGS = CASES["revgnn-gen"]


def torchrun(args: list[str], tmp: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run ... -m gnn1000 ARGS`` with its temporary folder in ``tmp``
    (where the ranks other than 0 keep their scratch run directories)."""
    (tmp / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp / "tmp")}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "gnn1000", *args],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """A 1-epoch RevGNN run on 2 torchrun ranks, one partition part each."""
    tmp = tmp_path_factory.mktemp("torchrun")
    (tmp / "tiny.gin").write_text("\n".join(BINDINGS) + "\n")  # these bindings alone, as union_step loads them
    result = torchrun(["train", "tiny.gin", "--run-dir", "run", "--no-progress"], tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp, result


def test_two_torchrun_ranks_step_as_one_process_over_both_batches(launched, one_thread):
    """The weights rank 0 saved after one step equal (1e-6 relative) one process's step on the mean loss
    over both ranks' batches, and the gathered multi-view evaluation scores them as one process does."""
    tmp, _ = launched
    expected, scores = union_step(BINDINGS)
    got = checkpoint.load(tmp / "run" / "checkpoints" / "last.pt")["model"]
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-7, msg=f"{key} differs")
    [record] = history(tmp / "run")
    assert {k: record[k] for k in scores} == pytest.approx(scores, rel=1e-6)
    # the step moved the weights: comparing two untrained models would prove nothing
    gin_config.load(None, BINDINGS)
    initial = build_experiment(Path("unused"), progress=False).model.state_dict()
    assert any(not torch.equal(initial[k], expected[k]) for k in expected if expected[k].is_floating_point())


def test_rank_0_alone_writes_the_run_directory_a_single_process_run_writes(launched, tmp_path, one_thread):
    """Same files as a single-process run's, one set of epoch lines on stdout (rank 0's), and no
    scratch run directory of rank 1 left in the temporary folder."""
    tmp, result = launched
    gin_config.load(None, BINDINGS)
    build_experiment(tmp_path / "single", progress=False).fit()

    def files(run: Path) -> list[str]:
        return sorted(str(p.relative_to(run)) for p in run.rglob("*"))

    assert files(tmp / "run") == files(tmp_path / "single")
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["device"] == "cpu"
    assert result.stdout.count("epoch    1/1") == 1 and result.stdout.count("final test rocauc") == 1
    assert not list((tmp / "tmp").rglob("rank-*"))


def test_a_torchrun_run_resumes_under_torchrun(launched, tmp_path):
    """--resume with more epochs: both ranks continue from the run's checkpoint (rank 1 from a copy),
    the first epoch's record stays, and the change is recorded as in a single-process resume."""
    import shutil

    run = shutil.copytree(launched[0] / "run", tmp_path / "run")
    first = history(run)
    result = torchrun(["train", "--resume", "run", "--bind", "experiment.epochs = 2", "--no-progress"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    records = history(run)
    assert [r["epoch"] for r in records] == [1, 2] and records[:1] == first
    [entry] = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert entry["after_epoch"] == 1 and entry["changed"] == {"experiment.epochs": {"from": 1, "to": 2}}
    assert not list((tmp_path / "tmp").rglob("rank-*"))


def _cli_in_a_process_group(rank: int, world: int, port: int, args: list[str]) -> None:
    """A process that set up its own env:// group (as a SLURM script or another launcher does), then
    calls the CLI: the group is used as it is, and left for its owner to take down."""
    import torch.distributed as dist

    from gnn1000 import cli

    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    try:
        assert cli.main(args) == 0
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_an_existing_env_process_group_trains_one_model(launched, tmp_path, monkeypatch):
    """The same run as under torchrun, from processes that hold an env:// group before calling gnn1000."""
    import torch.multiprocessing as mp

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    (tmp_path / "tiny.gin").write_text("\n".join(BINDINGS) + "\n")
    args = ["train", str(tmp_path / "tiny.gin"), "--run-dir", str(tmp_path / "run"), "--no-progress"]
    mp.spawn(_cli_in_a_process_group, args=(2, free_port(), args), nprocs=2, join=True)
    expected = checkpoint.load(launched[0] / "run" / "checkpoints" / "last.pt")["model"]
    got = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert not list(tmp_path.rglob("rank-*"))


@pytest.mark.parametrize("args, says", [
    (["--workers", "2"], "--workers 2 starts its own data-parallel workers on Ray Train, but this process is "
                         "already rank 1 of 2"),
    (["--seeds", "2"], "--seeds and --folds cannot run under torchrun"),
])
def test_launcher_flags_that_would_nest_get_one_paragraph_and_exit_code_2(args, says, tmp_path):
    """A rank of a torchrun launch (its environment, no group needed to refuse) names the clash."""
    result = run_gnn1000(["train", "--run-dir", str(tmp_path / "run"), *args], cwd=tmp_path,
                         env_extra={"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
