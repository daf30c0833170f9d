"""A run built in Python (``Experiment(RevGNN(...), ...)``) records what it built, so the CLI can
evaluate, predict and resume it, and its summary names the model that was trained."""

from __future__ import annotations

import json

import pytest

from gnn1000 import cli


@pytest.fixture
def python_run(tmp_path, one_thread):
    from gnn1000 import RevGNN
    from gnn1000.checkpoint import seed_everything
    from gnn1000.data import load_dataset
    from gnn1000.experiment import Experiment, ExperimentConfig
    from gnn1000.registry import resolve

    seed_everything(0)
    data = load_dataset("synthetic-proteins", num_nodes=120, avg_degree=4, num_tasks=4)
    model = RevGNN(data.num_features, 16, data.num_outputs, 2, edge_dim=data.edge_dim, dropout=0.1)
    run = tmp_path / "run"
    experiment = Experiment(model, data, resolve("samplers", "random_partition")(num_parts=2),
                            ExperimentConfig(epochs=1, device="cpu"), run, progress=False, log=lambda _: None)
    experiment.fit()
    experiment.run.release()
    return run


def test_the_summary_names_the_model_and_config_gin_records_it(python_run):
    summary = json.loads((python_run / "summary.json").read_text())
    assert (summary["architecture"], summary["config"]["sampler"]) == ("revgnn", "random_partition")
    text = (python_run / "config.gin").read_text()
    for line in ("experiment.architecture = 'revgnn'", "revgnn.hidden_channels = 16", "revgnn.dropout = 0.1",
                 "synthetic_proteins.num_nodes = 120", "random_partition.num_parts = 2"):
        assert line in text
    assert "WARNING" not in text


def test_the_cli_evaluates_predicts_and_resumes_it(python_run, capsys):
    assert cli.main(["evaluate", str(python_run)]) == 0
    assert "valid_rocauc" in capsys.readouterr().out
    assert cli.main(["predict", str(python_run)]) == 0
    assert (python_run / "predictions.csv").is_file()
    assert cli.main(["train", "--resume", str(python_run), "--no-progress", "--bind", "experiment.epochs = 2"]) == 0
    summary = json.loads((python_run / "summary.json").read_text())
    assert (summary["epochs"], summary["architecture"]) == (2, "revgnn")
    resumed = json.loads((python_run / "resumes.jsonl").read_text())
    assert list(resumed["changed"]) == ["experiment.epochs"]  # not every default gin's config lists


def test_what_cannot_be_read_back_is_said_in_config_gin(tmp_path):
    from gnn1000 import RevGNN, recorded
    from gnn1000.data import load_dataset
    from gnn1000.settings import ExperimentConfig

    data = load_dataset("synthetic-proteins", num_nodes=60, avg_degree=4, num_tasks=2)
    from torch_geometric.nn import SAGEConv

    model = RevGNN(data.num_features, 16, data.num_outputs, 2, operator=SAGEConv)  # a class: no gin literal
    warned = []
    _, text = recorded.describe(model, data, None, ExperimentConfig(), warned.append)
    assert "do not rebuild its parameter shapes" in text and "operator" in warned[0]
