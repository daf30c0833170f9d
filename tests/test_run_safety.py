"""No work lost: run-directory ownership, checkpoints that survive any kill, truthful resume, the NaN stop."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

from gnn1000 import checkpoint, config
from gnn1000.cli import main as cli_main
from gnn1000.errors import ConfigError, NonFiniteLossError
from gnn1000.build import build_experiment
from gnn1000.registry import register
from gnn1000.rundir import RunDir

from helpers import TINY, bind_args, run_gnn1000

VOLATILE = ("seconds", "step_memory_mb")
KILL_RUN = [*TINY, "experiment.epochs = 8", "resgnn.dropout = 0.3"]


def stable(records):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# -- the kill loop ---------------------------------------------------------------------------------

def _train(run_dir: str, resume: bool, pause: float) -> None:
    """A child process: train the tiny run (new or resumed), then exit without Python's cleanup."""
    torch.set_num_threads(1)
    os.environ[checkpoint.PAUSE_ENV] = str(pause)
    config.load("default", KILL_RUN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not resume:
            RunDir.for_new_run(run_dir, overwrite=True)  # a run killed before its first checkpoint
        build_experiment(run_dir, progress=False, log=lambda _: None).fit(resume=resume)
    os._exit(0)


def _start(run_dir, pause: float) -> multiprocessing.Process:
    last = RunDir(run_dir).last
    resume = last.is_file() or checkpoint.previous(last).is_file()
    # forkserver: a plain fork would copy threads other tests leave behind (Ray's) and can deadlock
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch_geometric", "gnn1000.build"])
    proc = context.Process(target=_train, args=(str(run_dir), resume, pause))
    proc.start()
    return proc


def kill_at_a_random_moment(proc, rng: random.Random, moment: str, tmp_file) -> bool:
    """SIGKILL ``proc`` at a random moment: ``'any'`` a random delay after its start (loading, training
    or writing), ``'inside a write'`` a random offset after its next checkpoint temporary ``tmp_file``
    appears, ``'after a write'`` a random delay after that write was committed (so a loaded machine,
    where starting takes longer than any delay, still makes progress), ``'just after a write'`` at once. False when it ended by itself
    first; joined either way."""
    def wait(done) -> None:
        deadline = time.monotonic() + 60
        while not done() and proc.is_alive() and time.monotonic() < deadline:
            time.sleep(0.001)

    if moment == "any":
        time.sleep(rng.uniform(0.0, 1.5))
    else:
        wait(tmp_file.exists)
        if moment in ("after a write", "just after a write"):
            wait(lambda: not tmp_file.exists())
            time.sleep(rng.uniform(0.0, 0.3) if moment == "after a write" else 0.0)
        else:
            time.sleep(rng.uniform(0.0, 0.06))
    alive = proc.is_alive()
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    return alive


def test_twenty_four_kills_at_random_moments_lose_no_epoch(tmp_path, one_thread):
    """SIGKILL at random delays, and inside checkpoint writes (widened by a pause), then resume:
    the metrics equal an uninterrupted run's, every epoch's record present once."""
    reference = tmp_path / "reference"
    proc = _start(reference, pause=0.0)
    proc.join()
    assert proc.exitcode == 0
    expected = stable(history(reference))
    assert [r["epoch"] for r in expected] == list(range(1, 9))

    rng = random.Random(1234)
    killed = tmp_path / "killed"
    tmp_file = killed / "checkpoints" / ".last.pt.tmp"
    kills = inside_writes = finished_early = 0
    while kills < 24:
        proc = _start(killed, pause=0.03)
        if kills % 2:  # inside a checkpoint write: wait for its temporary file, then a random offset
            deadline = time.monotonic() + 30
            while not tmp_file.exists() and proc.is_alive() and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.06))
        else:
            time.sleep(rng.uniform(0.0, 1.5))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            kills += 1
            inside_writes += tmp_file.exists()
        else:
            proc.join()
            finished_early += 1
            if (killed / "summary.json").exists():  # finished: start the loop's run over, aside
                RunDir.for_new_run(killed, overwrite=True)
    proc = _start(killed, pause=0.0)
    proc.join()
    assert proc.exitcode == 0
    print(f"kill loop: {kills} SIGKILLs, {inside_writes} inside a checkpoint write, "
          f"{finished_early} runs finished before their kill")
    assert inside_writes >= 5
    records = history(killed)
    assert [r["epoch"] for r in records] == list(range(1, 9))  # each once
    assert stable(records) == expected
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["test_at_best_valid"] == json.loads((reference / "summary.json").read_text())["test_at_best_valid"]


# -- ownership -------------------------------------------------------------------------------------

def test_a_second_process_cannot_train_in_a_locked_run_directory(tmp_path):
    run = RunDir(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from gnn1000.rundir import RunDir; "
                               f"RunDir({str(run.path)!r}).lock(); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_gnn1000(["train", "--run-dir", str(run.path), "--no-progress", *bind_args(TINY)])
        assert result.returncode == 2
        assert f"PID {holder.pid}" in result.stderr and "Traceback" not in result.stderr
        assert not run.config.exists() and not run.metrics.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock went with it (no stale lock), so the run may start now
    assert cli_main(["train", "--run-dir", str(run.path), "--no-progress", *bind_args(TINY)]) == 0


def test_without_fcntl_the_lock_falls_back_to_filelock_and_still_excludes(tmp_path, monkeypatch):
    """Where fcntl is missing (Windows) the import works and the lock still holds a second process out."""
    from gnn1000 import rundir
    from gnn1000.errors import RunDirError

    run = RunDir(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import time; import gnn1000.rundir as r; r.fcntl = None; "
                               f"r.RunDir({str(run.path)!r}).lock(); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    monkeypatch.setattr(rundir, "fcntl", None)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match="in use by another gnn1000 process"):
            run.lock()
    finally:
        holder.kill()
        holder.wait()
    run.lock()  # the holder died: no stale lock
    run.release()


def test_overwrite_moves_the_old_run_aside(tmp_path, tiny, one_thread):
    run = tmp_path / "run"
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(tiny)]) == 0
    old = history(run)
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(tiny)]) == 2
    assert history(run) == old
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", "--overwrite",
                     *bind_args(tiny), "--bind", "experiment.epochs = 2"]) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and history(aside[0]) == old
    assert (aside[0] / "checkpoints" / "last.pt").is_file()
    assert [r["epoch"] for r in history(run)] == [1, 2]


# -- records and checkpoints -----------------------------------------------------------------------

def test_a_kill_between_checkpoint_and_record_loses_no_record(tmp_path, tiny, one_thread):
    run = tmp_path / "run"
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(tiny)]) == 0
    full = history(run)
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    # epoch 3's checkpoint was written, its record not; and a torn half of it is there instead
    (run / "metrics.jsonl").write_text("".join(lines[:2]) + lines[2][:25])
    with pytest.warns(UserWarning, match="last line was cut off"):
        assert cli_main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert history(run) == full


def test_a_truncated_last_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny, one_thread, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(tiny)]) == 0
    full = stable(history(run))
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="continuing from the previous checkpoint"):
        assert cli_main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert "last.prev.pt (epoch 2)" in capsys.readouterr().out
    assert stable(history(run)) == full
    assert checkpoint.load(last)["epoch"] == 3


# -- resume tells the truth ------------------------------------------------------------------------

def test_resume_applies_changed_settings_to_the_optimizer_and_records_them(tmp_path, tiny, one_thread):
    run = tmp_path / "run"
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(tiny),
                     "--bind", "experiment.epochs = 2", "--bind", "experiment.lr = 0.01"]) == 0
    assert cli_main(["train", "--resume", str(run), "--no-progress", "--bind", "experiment.lr = 0.5",
                     "--bind", "experiment.weight_decay = 0.01", "--bind", "experiment.epochs = 3"]) == 0
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    assert {g["lr"] for g in state["optimizer"]["param_groups"]} == {0.5}
    assert {g["weight_decay"] for g in state["optimizer"]["param_groups"]} == {0.01}
    text = (run / "config.gin").read_text()
    assert "experiment.lr = 0.5" in text and "experiment.epochs = 3" in text
    assert "after epoch 2" in text
    (entry,) = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert entry["after_epoch"] == 2
    assert entry["changed"]["experiment.lr"] == {"from": 0.01, "to": 0.5}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["lr"] == 0.5 and summary["epochs"] == 3


def test_resume_refuses_fixed_settings_before_touching_anything(tmp_path, tiny, one_thread, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(tiny)]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli_main(["train", "--resume", str(run), "--bind", "resgnn.hidden_channels = 32",
                     "--bind", "synthetic_proteins.num_nodes = 500", "--bind", "experiment.lr = 0.1"]) == 2
    err = capsys.readouterr().err
    assert "resgnn.hidden_channels = 32 (the run has 16)" in err
    assert "synthetic_proteins.num_nodes = 500 (the run has 240)" in err and "experiment.lr" not in err.split("Settings")[0]
    assert cli_main(["train", "--resume", str(run), "--bind", "experiment.epochs = 1"]) == 2
    assert "already trained 3 epochs" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


# -- the NaN stop ----------------------------------------------------------------------------------

def test_a_blow_up_stops_with_a_finite_checkpoint_and_a_lower_lr_continues(tmp_path, tiny, one_thread, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(tiny),
                     "--bind", "experiment.epochs = 2"]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--resume", str(run), "--no-progress", "--bind", "experiment.lr = 1e30",
                     "--bind", "experiment.epochs = 4"]) == 2
    err = capsys.readouterr().err
    assert "Training stopped" in err and "in epoch 3" in err and "Traceback" not in err
    assert f"{run / 'checkpoints' / 'last.pt'} (epoch 2); every tensor in it is finite" in err
    assert f"gnn1000 train --resume {run} --bind 'experiment.lr = " in err
    state = checkpoint.load(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and not checkpoint.nonfinite_tensors(state)
    assert [r["epoch"] for r in history(run)] == [1, 2]

    assert cli_main(["train", "--resume", str(run), "--no-progress", "--bind", "experiment.lr = 0.001"]) == 0
    records = history(run)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)


def test_an_update_too_large_for_float32_stops_in_the_first_epoch(tmp_path, tiny, one_thread):
    config.load("default", [*tiny, "experiment.lr = 1e38", "experiment.grad_clip = None"])
    experiment = build_experiment(tmp_path / "run", progress=False, log=lambda _: None)
    with pytest.raises(NonFiniteLossError) as err:
        experiment.fit()
    message = str(err.value)
    assert "optimizer update is too large for float32 in epoch 1" in message
    assert "no checkpoint to continue from" in message and "--overwrite --bind 'experiment.lr = " in message
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


@register("architectures", "weight_turns_inf_in_epoch_two")
class WeightTurnsInf(torch.nn.Module):
    """A linear model with a weight that becomes Inf during its second training epoch."""

    def __init__(self, in_channels, hidden_channels=4, out_channels=1, num_layers=1, *, edge_dim=None):
        super().__init__()
        self.lin = torch.nn.Linear(in_channels, out_channels)
        self.spare = torch.nn.Parameter(torch.zeros(3))
        self.calls = 0

    def forward(self, x, edge_index, edge_attr=None, batch=None):
        self.calls += self.training
        if self.calls == 2 and self.training:
            with torch.no_grad():
                self.spare.fill_(float("inf"))
        return self.lin(x)


def test_non_finite_weights_after_a_step_stop_before_evaluation_and_checkpoint(tmp_path, tiny):
    config.load("default", [*tiny, "experiment.architecture = 'weight_turns_inf_in_epoch_two'"])
    experiment = build_experiment(tmp_path / "run", progress=False, log=lambda _: None)
    with pytest.raises(NonFiniteLossError) as err:
        experiment.fit()
    assert "weight 'spare' after the optimizer step is non-finite in epoch 2" in str(err.value)
    state = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and not checkpoint.nonfinite_tensors(state)


def test_resume_of_a_run_without_checkpoint_says_so(tmp_path, tiny):
    run = tmp_path / "run"
    config.load("default", tiny)
    build_experiment(run, progress=False).run_files.write_config()
    with pytest.raises(ConfigError, match="no checkpoint yet"):
        build_experiment(run, progress=False).fit(resume=True)
