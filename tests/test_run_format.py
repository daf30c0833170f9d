"""A run directory written before issue #21's refactors still evaluates, predicts and resumes.

``tests/data/run-v0-revgnn`` was made with the code of commit dfb6b3a (see tests/data/README.md); if
a change to config.gin's bindings, the checkpoint's keys, the model's state_dict names or the
summary breaks reading it, every user's existing runs break the same way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gnn1000.cli import main as cli_main

FIXTURE = Path(__file__).parent / "data" / "run-v0-revgnn"


@pytest.fixture
def old_run(tmp_path, one_thread):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)  # the commands write into the run: never into the checked-in copy
    return run


# `gnn1000 evaluate` of the fixture on the whole graph (one part: no random partition), by the code that made it.
SCORES = {"train_rocauc": 0.5201827055993723, "valid_rocauc": 0.5032874260815438, "test_rocauc": 0.45452566251472987}


def test_evaluate_scores_the_old_best_model_as_the_code_that_made_it_did(old_run, capsys):
    assert cli_main(["evaluate", str(old_run), "--bind", "random_partition.eval_parts = 1"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores == pytest.approx(SCORES, abs=1e-6)


def test_predict_writes_one_row_per_node_of_the_old_run(old_run):
    import pandas as pd

    assert cli_main(["predict", str(old_run), "--out", str(old_run / "p.csv")]) == 0
    table = pd.read_csv(old_run / "p.csv")
    assert len(table) == 120 and set(table["split"]) == {"train", "valid", "test"}


def test_the_old_run_resumes_for_more_epochs_keeping_its_history(old_run):
    assert cli_main(["train", "--resume", str(old_run), "--no-progress", "--bind", "experiment.epochs = 3"]) == 0
    lines = (old_run / "metrics.jsonl").read_text().splitlines()
    assert lines[:2] == (FIXTURE / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    summary = json.loads((old_run / "summary.json").read_text())
    assert (summary["epochs"], summary["architecture"], summary["num_parameters"]) == (3, "revgnn", 436)
    assert (old_run / "run-id").read_text() == (FIXTURE / "run-id").read_text()
