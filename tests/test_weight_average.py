"""``experiment.ema_decay``: evaluation, the best checkpoint, ``gnn1000 evaluate`` and resume all see
the exponential moving average of the trained weights, never the last step's weights."""

import json

import pytest
import torch

from gnn1000 import checkpoint, config
from gnn1000.build import build_experiment
from gnn1000.cli import main as cli_main

from helpers import TINY, bind_args

DECAY = 0.5  # far from 1, so the average differs clearly from the last step's weights
EMA = [*TINY, "experiment.epochs = 4", f"experiment.ema_decay = {DECAY}", "resgnn.dropout = 0.2"]


def _history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _stable(record):
    return {k: v for k, v in record.items() if k not in ("seconds", "step_memory_mb")}


def test_scores_and_the_best_checkpoint_come_from_the_moving_average(tmp_path, one_thread):
    config.load("default", EMA)
    trained = []  # full batch: one optimizer step per epoch, so one weight snapshot per step
    experiment = build_experiment(tmp_path, progress=False,
                                  on_epoch=lambda record, last: trained.append(
                                      {k: v.clone() for k, v in experiment.model.state_dict().items()}))
    experiment.fit()

    averages = [dict(trained[0])]  # W_1 is copied, then W_k = d * W_{k-1} + (1 - d) * w_k
    for weights in trained[1:]:
        averages.append({k: DECAY * averages[-1][k] + (1 - DECAY) * w if w.is_floating_point() else w
                         for k, w in weights.items()})
    expected = averages[-1]
    averaged = experiment.averaged.module.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], value, rtol=1e-6, atol=1e-7)
    assert not torch.equal(averaged["encoder.weight"], trained[-1]["encoder.weight"])

    # the recorded scores are the average's: the last step's weights score differently
    last = _history(tmp_path)[-1]
    assert experiment.evaluate()["valid_rocauc"] == last["valid_rocauc"]
    experiment.evaluated.load_state_dict(trained[-1])
    assert experiment.evaluate()["valid_rocauc"] != last["valid_rocauc"]

    best = checkpoint.load(tmp_path / "checkpoints" / "best.pt")  # the average as it was at the best epoch
    for key, value in averages[best["epoch"] - 1].items():
        torch.testing.assert_close(best["model"][key], value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("which", ["best", "last"])
def test_evaluate_scores_the_weights_the_run_scored(tmp_path, one_thread, capsys, which):
    assert cli_main(["train", "--run-dir", str(tmp_path), "--no-progress", *bind_args(EMA)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    capsys.readouterr()
    assert cli_main(["evaluate", str(tmp_path), "--checkpoint", which]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["valid_rocauc"] == summary["best" if which == "best" else "final"]["valid_rocauc"]


def test_a_resumed_run_continues_the_same_average(tmp_path, one_thread):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert cli_main(["train", "--run-dir", str(whole), "--no-progress", *bind_args(EMA)]) == 0
    assert cli_main(["train", "--run-dir", str(halves), "--no-progress", *bind_args(EMA),
                     "--bind", "experiment.epochs = 2"]) == 0
    assert cli_main(["train", "--resume", str(halves), "--no-progress", "--bind", "experiment.epochs = 4"]) == 0

    assert [_stable(r) for r in _history(halves)] == [_stable(r) for r in _history(whole)]
    a = checkpoint.load(whole / "checkpoints" / "last.pt")["averaged"]
    b = checkpoint.load(halves / "checkpoints" / "last.pt")["averaged"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
