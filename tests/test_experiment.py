"""The experiment loop: run directory contents, reproducibility, crashes, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gnn1000 import checkpoint, config
from gnn1000.cli import main as cli_main
from gnn1000.errors import ConfigError, NonFiniteLossError
from gnn1000.build import build_experiment
from gnn1000.experiment import pick_device
from gnn1000.registry import register

from helpers import TINY, bind_args, run_gnn1000

VOLATILE = ("seconds", "step_memory_mb")


def _stable(record):
    return {k: v for k, v in record.items() if k not in VOLATILE}


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_config_metrics_summary_and_checkpoints(tmp_path, tiny):
    config.load("default", tiny)
    summary = build_experiment(tmp_path, progress=False).fit()
    history = _history(tmp_path)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert {"loss", "train_rocauc", "valid_rocauc", "test_rocauc", "seconds", "step_memory_mb"} <= set(history[0])
    assert history[-1]["loss"] < history[0]["loss"]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == summary
    assert saved["final"] == history[-1]
    assert saved["best"]["valid_rocauc"] == max(r["valid_rocauc"] for r in history)
    assert saved["test_at_best_valid"] == saved["best"]["test_rocauc"]
    assert saved["step_memory_mb"] >= 0 and "added by the epoch" in saved["memory_kind"] and saved["num_parameters"] > 0
    assert "resgnn.num_layers = 2" in (tmp_path / "config.gin").read_text()
    last = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and {"model", "optimizer", "rng", "best"} <= set(last)
    assert checkpoint.load(tmp_path / "checkpoints" / "best.pt")["epoch"] == saved["best"]["epoch"]


def test_rerunning_the_operative_config_reproduces_the_run(tmp_path, tiny):
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli_main(["train", "default", "--run-dir", str(first), "--no-progress",
                     "--bind", "resgnn.dropout = 0.2", *bind_args(tiny)]) == 0
    assert cli_main(["train", str(first / "config.gin"), "--run-dir", str(second), "--no-progress"]) == 0
    assert (first / "config.gin").read_text() == (second / "config.gin").read_text()
    assert [_stable(r) for r in _history(first)] == [_stable(r) for r in _history(second)]


# -- a loss that turns NaN -------------------------------------------------------------------------

@register("architectures", "nan_from_third_epoch")
class NanFromThirdEpoch(torch.nn.Module):
    """A linear model whose output becomes NaN in its third training epoch."""

    def __init__(self, in_channels, hidden_channels=4, out_channels=1, num_layers=1, *, edge_dim=None):
        super().__init__()
        self.lin = torch.nn.Linear(in_channels, out_channels)
        self.train_calls = 0

    def forward(self, x, edge_index, edge_attr=None, batch=None):
        self.train_calls += self.training
        out = self.lin(x)
        return out * float("nan") if self.train_calls >= 3 else out


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_state(tmp_path, tiny):
    config.load("default", [*tiny, "experiment.architecture = 'nan_from_third_epoch'", "experiment.epochs = 5"])
    experiment = build_experiment(tmp_path, progress=False)
    with pytest.raises(NonFiniteLossError) as err:
        experiment.fit()
    message = str(err.value)
    assert "loss is nan in epoch 3" in message
    assert "last good checkpoint" in message and "epoch 2" in message and "--resume" in message
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["epoch"] == 2
    assert [r["epoch"] for r in _history(tmp_path)] == [1, 2]
    assert not (tmp_path / "summary.json").exists()


def test_cli_reports_non_finite_loss_in_one_paragraph(tmp_path, tiny, capsys):
    code = cli_main(["train", "--run-dir", str(tmp_path), "--no-progress", *bind_args(tiny),
                     "--bind", "experiment.architecture = 'nan_from_third_epoch'"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("gnn1000 train: error: Training stopped: the loss is nan")
    assert "Traceback" not in err


# -- kill and resume -------------------------------------------------------------------------------

RESUME_RUN = [*TINY, "synthetic_proteins.num_nodes = 600", "experiment.epochs = 10",
              "resgnn.dropout = 0.3"]


def test_a_killed_run_resumes_to_the_same_final_metrics(tmp_path, one_thread):
    # one thread in every process: float sums taken by another thread count differ in the last digits
    single = {"OMP_NUM_THREADS": "1"}
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert cli_main(["train", "--run-dir", str(reference), "--no-progress", *bind_args(RESUME_RUN)]) == 0

    proc = subprocess.Popen([sys.executable, "-m", "gnn1000", "train", "--run-dir", str(killed),
                             "--no-progress", *bind_args(RESUME_RUN)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **single})
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "summary.json").exists()
    done = checkpoint.load(killed / "checkpoints" / "last.pt")["epoch"]
    assert 3 <= done < 10

    result = run_gnn1000(["train", "--resume", str(killed), "--no-progress"], env_extra=single)
    assert result.returncode == 0, result.stderr
    assert f"resumed {killed} after epoch {done}" in result.stdout + result.stderr
    assert [_stable(r) for r in _history(killed)] == [_stable(r) for r in _history(reference)]
    resumed = json.loads((killed / "summary.json").read_text())
    uninterrupted = json.loads((reference / "summary.json").read_text())
    assert _stable(resumed["final"]) == _stable(uninterrupted["final"])
    assert resumed["test_at_best_valid"] == uninterrupted["test_at_best_valid"]


def test_resume_can_extend_a_finished_run(tmp_path, tiny):
    assert cli_main(["train", "--run-dir", str(tmp_path), "--no-progress", *bind_args(tiny)]) == 0
    assert cli_main(["train", "--resume", str(tmp_path), "--no-progress", "--bind", "experiment.epochs = 5"]) == 0
    assert [r["epoch"] for r in _history(tmp_path)] == [1, 2, 3, 4, 5]


# -- bad input -------------------------------------------------------------------------------------

def test_device_is_automatic_and_checked():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="'auto', 'cpu', 'cuda' or 'cuda:N'"):
        pick_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda")


@pytest.mark.parametrize("args, expected", [
    (["train", "--resume", "no/such/run"], "Run directory 'no/such/run' does not exist"),
    (["evaluate", "no/such/run"], "Run directory 'no/such/run' does not exist"),
    (["train", "no_such_config.gin"], "is neither a file nor a shipped config"),
    (["train", "--bind", "resgnn.num_layer = 2"], "Did you mean num_layers"),
])
def test_bad_input_gets_one_paragraph_not_a_traceback(args, expected, capsys):
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
