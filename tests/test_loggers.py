"""Loggers, the training-curve plot, learning-rate schedules and early stopping, through the CLI."""

import csv
import json
import math

import pytest

from gnn1000.cli import main as cli_main
from gnn1000.registry import available

from helpers import bind_args


def _train(run, tiny, *extra):
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args([*tiny, *extra])]) == 0
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_and_csv_hold_every_logged_number(tmp_path, tiny, one_thread):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = _train(tmp_path, tiny, "experiment.loggers = ['tensorboard', 'csv']")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "train_rocauc", "valid_rocauc", "test_rocauc", "step_memory_mb"} <= tags
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([r["loss"] for r in records], rel=1e-6)
    with (tmp_path / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["valid_rocauc"]) for r in rows] == pytest.approx([r["valid_rocauc"] for r in records])


def test_deq_solver_statistics_reach_tensorboard(tmp_path, tiny, one_thread):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = _train(tmp_path, tiny, "experiment.architecture = 'deq'", "deq.hidden_channels = 16",
                     "deq.num_layers = 1", "experiment.epochs = 1", "experiment.loggers = ['tensorboard']")
    solver_keys = {k for k in records[0] if k.startswith("deq_")}
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert solver_keys and solver_keys <= set(events.Tags()["scalars"])


def test_loggers_are_registered_and_an_unknown_one_is_named(tmp_path, tiny, capsys):
    assert {"csv", "tensorboard", "mlflow"} <= set(available("loggers"))
    run = tmp_path / "run"
    assert cli_main(["train", "--run-dir", str(run), *bind_args([*tiny, "experiment.loggers = ['cvs']"])]) == 2
    assert "Did you mean 'csv'" in capsys.readouterr().err
    assert not (run / "metrics.jsonl").exists()  # refused before the run directory was written


def test_mlflow_logger_when_installed(tmp_path, tiny, one_thread, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    records = _train(tmp_path, tiny, "experiment.loggers = ['mlflow']")
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("Default").experiment_id])[0]
    history = client.get_metric_history(run.info.run_id, "valid_rocauc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([r["valid_rocauc"] for r in records])


def test_plot_draws_the_curves_of_several_runs(tmp_path, tiny, one_thread, capsys):
    pytest.importorskip("matplotlib")
    _train(tmp_path / "a", tiny)
    _train(tmp_path / "b", tiny, "experiment.lr = 0.01")
    out = tmp_path / "curves.png"
    assert cli_main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli_main(["plot", str(tmp_path / "missing")]) == 2


def test_a_cosine_schedule_shows_in_the_logged_lr(tmp_path, tiny, one_thread):
    records = _train(tmp_path, tiny, "experiment.epochs = 6", "experiment.lr = 0.01",
                     "experiment.scheduler = 'cosine'", "cosine.warmup_epochs = 0")
    # the rate each epoch trained with: lr/2 * (1 + cos(pi * t / T)), t = epochs done before it
    expected = [0.005 * (1 + math.cos(math.pi * t / 6)) for t in range(6)]
    assert [r["lr"] for r in records] == pytest.approx(expected, rel=1e-9)


def test_early_stopping_at_the_patience(tmp_path, tiny, one_thread):
    # lr = 1e-9: nothing learns, so the validation score never improves after epoch 1
    records = _train(tmp_path, tiny, "experiment.epochs = 20", "experiment.lr = 1e-9", "experiment.patience = 2")
    summary = json.loads((tmp_path / "summary.json").read_text())
    best = summary["best"]["epoch"]
    assert summary["stopped_early"] and summary["stopped_at_epoch"] == best + 2 == len(records) < 20
    assert cli_main(["train", "--resume", str(tmp_path), "--no-progress"]) == 0  # a resumed run knows it stopped
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == len(records)


def test_progress_bars_stay_quiet_when_output_is_not_a_terminal(tmp_path, tiny):
    from helpers import run_gnn1000

    result = run_gnn1000(["train", "--run-dir", str(tmp_path), *bind_args(tiny)],
                         env_extra={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "it/s" not in result.stderr and "%|" not in result.stderr
