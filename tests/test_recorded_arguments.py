"""A run built in Python records its model's real constructor arguments (``DeepGNN.arguments``), so
the CLI rebuilds exactly the model that was trained, a third-party ``DeepGNN`` subclass included."""

from __future__ import annotations

import json

import pytest

from gnn1000 import cli
from test_deep_gnn import gated  # noqa: F401  the plugin guide's GatedGNN, registered per test


def python_run(tmp_path, make_model):
    from gnn1000.checkpoint import seed_everything
    from gnn1000.data import load_dataset
    from gnn1000.experiment import Experiment, ExperimentConfig
    from gnn1000.registry import resolve

    seed_everything(0)
    data = load_dataset("synthetic-proteins", num_nodes=80, avg_degree=4, num_tasks=3)
    run = tmp_path / "run"
    experiment = Experiment(make_model(data), data, resolve("samplers", "full_batch")(),
                            ExperimentConfig(epochs=1, device="cpu"), run, progress=False, log=lambda _: None)
    experiment.fit()
    experiment.run.release()
    return run


def evaluates_as_trained(run, capsys) -> bool:
    """The CLI's rebuild scores the best checkpoint exactly as training did (full batch: no random draws)."""
    capsys.readouterr()
    assert cli.main(["evaluate", str(run)]) == 0
    scores = json.loads(capsys.readouterr().out)
    best = json.loads((run / "summary.json").read_text())["best"]
    return all(scores[f"{s}_rocauc"] == pytest.approx(best[f"{s}_rocauc"], abs=1e-9) for s in ("train", "valid", "test"))


def test_a_revgnn_records_its_operator_groups_and_tying_and_evaluate_rebuilds_it(tmp_path, capsys, one_thread):
    from gnn1000 import RevGNN

    run = python_run(tmp_path, lambda data: RevGNN(
        data.num_features, 16, data.num_outputs, 2, operator="sage", norm="batchnorm", num_groups=4,
        weight_tied=True, stream_dtype="float32", branch_scale=0.5, edge_dim=data.edge_dim))
    text = (run / "config.gin").read_text()
    for line in ("revgnn.operator = 'sage'", "revgnn.norm = 'batchnorm'", "revgnn.num_groups = 4",
                 "revgnn.weight_tied = True", "revgnn.stream_dtype = 'float32'", "revgnn.branch_scale = 0.5"):
        assert line in text
    assert "WARNING" not in text and "at their defaults" not in text
    assert evaluates_as_trained(run, capsys)


def test_a_third_party_deepgnn_is_recorded_and_rebuilt_by_the_cli(tmp_path, capsys, gated, one_thread):
    run = python_run(tmp_path, lambda data: gated(data.num_features, 16, data.num_outputs, 3, gate_init=-1.0,
                                                  operator="sage", edge_dim=data.edge_dim))
    text = (run / "config.gin").read_text()
    assert "experiment.architecture = 'gatedgnn'" in text
    assert "gatedgnn.gate_init = -1.0" in text and "gatedgnn.operator = 'sage'" in text and "WARNING" not in text
    assert evaluates_as_trained(run, capsys)
