"""The built-in dataset: deterministic, shaped like ogbn-proteins, and checked on bad sizes."""

import pytest
import torch
from torch_geometric.utils import is_undirected

from gnn1000.errors import ConfigError
from gnn1000.registry import resolve

make = resolve("datasets", "synthetic-proteins")


def test_same_seed_same_graph_other_seed_other_graph():
    a, b, c = make(num_nodes=300, seed=1), make(num_nodes=300, seed=1), make(num_nodes=300, seed=2)
    for key in ("x", "edge_index", "edge_attr", "y", "train_mask"):
        assert torch.equal(a.graph[key], b.graph[key])
    assert not torch.equal(a.graph.y, c.graph.y)


def test_shaped_like_ogbn_proteins():
    data = make(num_nodes=500, num_species=5, avg_degree=20, num_tasks=12)
    g = data.graph
    assert is_undirected(g.edge_index, g.edge_attr, num_nodes=g.num_nodes)  # features follow both directions
    assert g.edge_attr.shape[1] == 8 and data.edge_dim == 8
    assert 0 < g.edge_attr.min() and g.edge_attr.max() < 1
    assert g.num_edges / g.num_nodes > 15  # dense
    same_species = (g.species[g.edge_index[0]] == g.species[g.edge_index[1]]).float().mean()
    assert same_species > 0.85
    assert g.y.shape == (500, 12) and set(g.y.unique().tolist()) == {0.0, 1.0}
    assert data.task.type == "multilabel" and data.task.metric == "rocauc" and data.num_outputs == 12
    masks = torch.stack([g.train_mask, g.valid_mask, g.test_mask])
    assert torch.equal(masks.sum(0), torch.ones(500, dtype=torch.long))  # a partition of the nodes
    assert data.num_features == 8 + 5  # edge-feature means + species one-hot


def test_labels_need_more_than_the_node_itself():
    """Each task depends on multi-hop neighbourhoods: neighbours' labels agree beyond chance."""
    g = make(num_nodes=1500, avg_degree=10).graph
    src, dst = g.edge_index
    agreement = (g.y[src] == g.y[dst]).float().mean()
    p = g.y.mean(0)
    chance = (p ** 2 + (1 - p) ** 2).mean()
    assert agreement > chance + 0.05


@pytest.mark.parametrize("kwargs, expected", [
    ({"num_nodes": 5}, "num_nodes=5"),
    ({"within_species": 1.5}, "within_species=1.5"),
    ({"split": (0.5, 0.5, 0.5)}, "split=(0.5, 0.5, 0.5)"),
])
def test_bad_sizes_are_named(kwargs, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        make(**kwargs)
