"""Dataset plugins on the shared real data: OGB's and PyG's loaders, splits, tasks, training."""

from __future__ import annotations

import os
from pathlib import Path

import gin
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from shared_data import requires, shared_data  # noqa: F401  (session fixture)

from gnn1000 import config
from gnn1000.errors import ConfigError
from gnn1000.build import build_experiment
from gnn1000.experiment import Experiment
from gnn1000.registry import resolve

SMALL_RESGNN = ["resgnn.hidden_channels = 16", "resgnn.num_layers = 2", "experiment.device = 'cpu'"]


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def experiment(tmp_path, dataset: str, bindings: list[str]) -> Experiment:
    config.load(None, [f"experiment.dataset = '{dataset}'", *SMALL_RESGNN, *bindings])
    return build_experiment(tmp_path / "run", progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def molhiv(shared_data):  # noqa: F811
    return resolve("datasets", "ogbg-molhiv")()


@requires("ogb/ogbg_molhiv")
def test_molhiv_has_the_official_scaffold_split_and_ogb_task(molhiv, shared_data):  # noqa: F811
    assert len(molhiv.dataset) == 41127
    assert {k: v.numel() for k, v in molhiv.split.items()} == {"train": 32901, "valid": 4113, "test": 4113}
    assert molhiv.task.ogb_name == "ogbg-molhiv" and molhiv.task.metric == "rocauc"
    assert molhiv.dataset[0].x.dtype == torch.long  # atom ids, for OGB's AtomEncoder
    assert molhiv.num_features == molhiv.edge_dim == molhiv.encoders.dim
    # The session's data root is a read-only copy: OGB processed a cache copy, not the root.
    assert not (shared_data / "ogb" / "ogbg_molhiv" / "processed").exists()
    assert (Path(os.environ["GNN1000_CACHE"]) / "ogb" / "ogbg_molhiv" / "processed").is_dir()


@requires("ogb/ogbg_molhiv")
def test_molhiv_epoch_with_graphnorm_is_scored_by_ogb_evaluator(molhiv, tmp_path):
    from ogb.graphproppred import Evaluator

    exp = experiment(tmp_path, "ogbg-molhiv", [
        "resgnn.norm = 'graphnorm'", "ogbg_molhiv.embedding_dim = 16", "experiment.batch_size = 64",
        "experiment.graphs_per_epoch = 1024", "experiment.epochs = 1"])
    summary = exp.fit()
    record = summary["final"]
    exp.model.eval()
    with torch.no_grad():
        logits, y = exp.runner.split_predictions(exp._forward)["valid"]
    assert logits.shape == (4113, 1)
    expected = Evaluator("ogbg-molhiv").eval({"y_true": y, "y_pred": logits})["rocauc"]
    assert record["valid_rocauc"] == pytest.approx(expected)
    assert 0.0 < record["test_rocauc"] < 1.0


@requires("ogb/ogbg_molhiv")
def test_graph_predictions_do_not_depend_on_the_other_graphs_in_the_batch(molhiv, tmp_path):
    # GraphNorm and the readout must use the batch vector: one graph alone or among 63 others,
    # its logits are the same.
    alone = experiment(tmp_path, "ogbg-molhiv", ["resgnn.norm = 'graphnorm'", "experiment.batch_size = 1"])
    index = molhiv.split["valid"][:64]
    alone.model.eval()
    with torch.no_grad():
        one_by_one, _ = alone.runner._predict(alone._forward, index)
        alone.runner.batch_size = 64
        together, _ = alone.runner._predict(alone._forward, index)
    assert torch.allclose(one_by_one, together, atol=1e-5)


@requires("ogb/blogcatalog")
def test_blogcatalog_trains_on_random_parts_with_multi_view_inference(shared_data, tmp_path):  # noqa: F811
    exp = experiment(tmp_path, "blogcatalog", [
        "experiment.sampler = 'random_partition'", "random_partition.num_parts = 4",
        "random_partition.eval_parts = 2", "random_partition.num_views = 3", "experiment.epochs = 2",
        "experiment.lr = 0.01", "blogcatalog.embedding_dim = 16"])
    graph = exp.runner.graph
    assert graph.num_nodes == 10312 and graph.y.shape == (10312, 39)
    assert exp.task.num_outputs == 39 and exp.task.metric == "rocauc"
    seen = torch.zeros(graph.num_nodes, dtype=torch.long)
    batches = list(exp.runner.sampler.batches(graph, train=False))
    for batch in batches:
        seen[batch.n_id] += 1
    assert len(batches) == 2 * 3 and bool((seen == 3).all())  # every node once per view

    summary = exp.fit()
    record = summary["final"]
    exp.model.eval()
    with torch.no_grad():
        logits = exp.predict()
    y_true, y_score = graph.y.numpy(), logits.numpy()
    per_task = [roc_auc_score(y_true[:, t], y_score[:, t]) for t in range(39)]
    assert exp.task.score(logits, graph.y) == pytest.approx(np.mean(per_task))  # all 39 tasks
    assert 0.0 < record["test_rocauc"] < 1.0 and record["loss"] > 0


@requires("planetoid/Cora")
def test_cora_public_split_trains_a_gcn_to_a_sensible_accuracy(shared_data, tmp_path):  # noqa: F811
    exp = experiment(tmp_path, "cora", [
        "resgnn.operator = 'gcn'", "resgnn.hidden_channels = 32", "resgnn.dropout = 0.5",
        "experiment.epochs = 30", "experiment.lr = 0.01", "experiment.weight_decay = 0.0005"])
    graph = exp.runner.graph
    assert [int(graph[f"{s}_mask"].sum()) for s in ("train", "valid", "test")] == [140, 500, 1000]
    summary = exp.fit()
    assert summary["metric"] == "acc"
    assert summary["test_at_best_valid"] > 0.6  # chance is 0.3 (largest class)


@requires("tu/MUTAG")
def test_tu_dataset_trains_graph_classification(shared_data, tmp_path):  # noqa: F811
    exp = experiment(tmp_path, "tu", ["tu.name = 'MUTAG'", "experiment.epochs = 2"])
    assert len(exp.data.dataset) == 188
    assert sum(v.numel() for v in exp.data.split.values()) == 188
    record = exp.fit()["final"]
    assert {"train_acc", "valid_acc", "test_acc"} <= set(record)


def test_a_missing_dataset_names_the_dataset_root_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GNN1000_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("GNN1000_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as err:
        resolve("datasets", "blogcatalog")()
    message = str(err.value)
    assert "'blogcatalog'" in message and str(tmp_path / "empty") in message
    assert "raw/edge.csv.gz" in message and "GNN1000_DATA" in message


def test_the_data_root_is_a_gin_setting(tmp_path, monkeypatch):
    from gnn1000.dataroot import data_root

    monkeypatch.setenv("GNN1000_DATA", str(tmp_path / "from-env"))
    assert data_root() == tmp_path / "from-env"
    config.load(None, [f"data.root = '{tmp_path / 'from-gin'}'"])
    assert data_root() == tmp_path / "from-gin"


def test_ogb_by_name_rejects_names_ogb_does_not_list():
    with pytest.raises(ConfigError, match="ogbn-arxiv"):
        resolve("datasets", "ogb")(name="ogbn-nonesuch")


def test_graph_level_data_refuses_a_node_sampler(tmp_path):
    from gnn1000.data import GraphTaskData
    from gnn1000.experiment import check_graph_sampler
    from gnn1000.task import Task

    data = GraphTaskData("g", dataset=[], split={}, task=Task("binary", 1, "rocauc"))
    with pytest.raises(ConfigError, match="DataLoader"):
        check_graph_sampler(data, "random_partition")


def test_an_ogb_folder_without_its_release_file_is_an_error_not_a_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("GNN1000_DATA", str(tmp_path))
    (tmp_path / "ogb" / "blogcatalog" / "raw").mkdir(parents=True)
    with pytest.raises(ConfigError, match="RELEASE_v1.txt"):
        resolve("datasets", "blogcatalog")()
