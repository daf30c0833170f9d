"""ogbn-proteins and ogbn-arxiv through OGB's own loader, on miniatures written in OGB's raw layout
(the real ones are too large to ship): the paper's node features, undirected arxiv, OGB's tasks."""

from __future__ import annotations

import gin
import numpy as np
import pandas as pd
import pytest
import torch

from gnn1000.registry import resolve

EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 0]])
NUM_NODES = 6
SPLIT = {"train": [0, 1, 2], "valid": [3], "test": [4, 5]}


@pytest.fixture(autouse=True)
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def write_csv(path, array):
    pd.DataFrame(np.asarray(array)).to_csv(path, header=False, index=False, compression="gzip")


def write_ogb_node_layout(root, folder, split_name, labels, **files):
    """Files as OGB's download unpacks them: raw/*.csv.gz, split/<name>/*.csv.gz, RELEASE_v1.txt."""
    base = root / "ogb" / folder
    (base / "raw").mkdir(parents=True)
    (base / "split" / split_name).mkdir(parents=True)
    (base / "RELEASE_v1.txt").write_text("1\n")
    write_csv(base / "raw" / "edge.csv.gz", EDGES)
    write_csv(base / "raw" / "num-node-list.csv.gz", [[NUM_NODES]])
    write_csv(base / "raw" / "num-edge-list.csv.gz", [[len(EDGES)]])
    write_csv(base / "raw" / "node-label.csv.gz", labels)
    for name, array in files.items():
        write_csv(base / "raw" / f"{name}.csv.gz", array)
    for split, index in SPLIT.items():
        write_csv(base / "split" / split_name / f"{split}.csv.gz", np.array(index)[:, None])


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("GNN1000_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("GNN1000_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_ogbn_proteins_features_are_summed_edge_features_plus_species_one_hot(data_root):
    rng = np.random.default_rng(0)
    edge_feat = rng.random((len(EDGES), 8)).round(3)
    species = np.array([[3702], [3702], [4932], [4932], [9606], [3702]])  # taxonomy ids
    labels = rng.integers(0, 2, (NUM_NODES, 112))
    write_ogb_node_layout(data_root, "ogbn_proteins", "species", labels,
                          **{"edge-feat": edge_feat, "node_species": species})
    data = resolve("datasets", "ogbn-proteins")()
    graph = data.graph
    # OGB adds the inverse of every edge with the same features: a node's sum covers both directions
    expected = np.zeros((NUM_NODES, 8))
    for (u, v), f in zip(EDGES, edge_feat):
        expected[u] += f
        expected[v] += f
    one_hot = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert np.allclose(graph.x.numpy(), np.concatenate([expected, one_hot], axis=1), atol=1e-5)
    assert graph.edge_attr.shape == (2 * len(EDGES), 8) and data.edge_dim == 8
    assert data.task.type == "multilabel" and data.task.num_outputs == 112
    assert data.task.metric == "rocauc" and data.task.ogb_name == "ogbn-proteins"
    assert [int(graph[f"{s}_mask"].sum()) for s in SPLIT] == [3, 1, 2]


def test_ogbn_arxiv_is_made_undirected_and_scored_by_accuracy(data_root):
    features = np.random.default_rng(0).random((NUM_NODES, 128)).round(3)
    labels = np.array([[0], [1], [2], [3], [4], [39]])
    write_ogb_node_layout(data_root, "ogbn_arxiv", "time", labels,
                          **{"node-feat": features, "node_year": np.full((NUM_NODES, 1), 2019)})
    data = resolve("datasets", "ogbn-arxiv")()
    pairs = {tuple(e) for e in data.graph.edge_index.t().tolist()}
    assert pairs == {(int(u), int(v)) for u, v in EDGES} | {(int(v), int(u)) for u, v in EDGES}
    assert data.task.type == "multiclass" and data.task.num_outputs == 40
    assert data.task.ogb_name == "ogbn-arxiv" and data.num_features == 128
    logits = torch.nn.functional.one_hot(data.graph.y.view(-1), 40).float()
    assert data.task.score(logits, data.graph.y) == 1.0  # OGB's Evaluator, perfect predictions
