"""``gnn1000 predict`` and ``gnn1000 evaluate --bind`` through the real CLI."""

import json

import pandas as pd
import pytest

from gnn1000.cli import main as cli_main

from helpers import bind_args


@pytest.fixture
def trained(tmp_path, tiny, one_thread):
    run = tmp_path / "run"
    bindings = [*tiny, "experiment.sampler = 'random_partition'", "random_partition.num_parts = 2"]
    assert cli_main(["train", "--run-dir", str(run), "--no-progress", *bind_args(bindings)]) == 0
    return run


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predictions_have_one_row_per_node_with_its_split(trained, tmp_path, capsys, suffix):
    out = tmp_path / f"predictions{suffix}"
    assert cli_main(["predict", str(trained), "--out", str(out)]) == 0
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert len(frame) == 240 and list(frame["node"]) == list(range(240))
    # synthetic-proteins splits 60 / 20 / 20
    assert frame["split"].value_counts().to_dict() == {"train": 144, "valid": 48, "test": 48}
    scores = frame[[c for c in frame if c.startswith("score_")]]
    assert scores.shape[1] == 6 and ((scores >= 0) & (scores <= 1)).all().all()  # sigmoid probabilities
    assert "written to" in capsys.readouterr().out


def test_predict_refuses_an_unknown_format_before_running(trained, tmp_path, capsys):
    assert cli_main(["predict", str(trained), "--out", str(tmp_path / "p.txt")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err


def test_evaluate_binds_inference_settings_only(trained, capsys):
    assert cli_main(["evaluate", str(trained), "--bind", "random_partition.num_views = 4"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"train_rocauc", "valid_rocauc", "test_rocauc"}
    assert cli_main(["evaluate", str(trained), "--bind", "resgnn.num_layers = 5"]) == 2
    err = capsys.readouterr().err
    assert "cannot change resgnn.num_layers" in err and "random_partition.num_views" in err
    assert "Traceback" not in err


def test_ogb_datasets_also_get_the_test_split_in_the_evaluators_form(tmp_path):
    from dataclasses import replace

    import numpy as np
    import torch

    from gnn1000 import predictions
    from gnn1000.plugins.datasets.synthetic_proteins import synthetic_proteins

    data = synthetic_proteins(num_nodes=120, num_tasks=4, avg_degree=4)
    assert predictions.ogb_test_submission(torch.zeros(120, 4), data, tmp_path / "p.csv") is None  # not OGB's
    as_ogb = replace(data, task=replace(data.task, ogb_name="ogbn-proteins"))
    logits = torch.randn(120, 4)
    path = predictions.ogb_test_submission(logits, as_ogb, tmp_path / "p.csv")
    saved = np.load(path)
    test = data.graph.test_mask.nonzero().view(-1).numpy()
    assert path.name == "p.ogb-test.npz" and saved["dataset"] == "ogbn-proteins"
    assert (saved["index"] == test).all() and np.allclose(saved["y_pred"], logits[test].numpy())
