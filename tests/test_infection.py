"""The infection task: labels are hop distances (checked against networkx's BFS), the depth ceiling
is a brute-force count, the split is by graph, and every run records the ceiling of its depth."""

import json

import networkx as nx
import pytest
import torch
from torch_geometric.utils import degree, to_networkx

from gnn1000 import cli
from gnn1000.data import depth_ceiling
from gnn1000.errors import ConfigError
from gnn1000.plugins.datasets.infection import TorusGraph, infection

SMALL = dict(size=7, num_infected=2, max_path_length=4, num_graphs=6, split=(0.5, 0.25, 0.25))


@pytest.mark.parametrize("graph", ["torus", "grid"])
def test_labels_are_the_breadth_first_distance_to_the_nearest_infection_capped(graph):
    data = infection(graph=graph, **SMALL)
    g = data.graph
    for k in range(SMALL["num_graphs"]):
        nodes = (g.graph_id == k).nonzero().view(-1)
        sub = g.subgraph(nodes)
        nxg = to_networkx(sub, to_undirected=True)
        infected = (sub.x[:, 1] == 1).nonzero().view(-1).tolist()
        assert len(infected) == SMALL["num_infected"]
        dist = nx.multi_source_dijkstra_path_length(nxg, infected)
        cap = SMALL["max_path_length"] + 1
        expected = [min(dist.get(v, cap), cap) for v in range(sub.num_nodes)]
        assert sub.y.tolist() == expected


def test_the_torus_has_no_border():
    g = TorusGraph(5, 6)()
    assert g.num_nodes == 30
    assert degree(g.edge_index[0], 30).tolist() == [4.0] * 30  # every node has 4 neighbours
    assert nx.is_connected(to_networkx(g, to_undirected=True))


def test_the_depth_ceiling_is_a_brute_force_count():
    data = infection(**SMALL)
    y = data.graph.y[data.graph.test_mask].tolist()
    for layers in range(0, SMALL["max_path_length"] + 3):
        near = sum(1 for d in y if d <= layers)
        far = [d for d in y if d > layers]
        best = max((far.count(c) for c in set(far)), default=0)
        assert depth_ceiling(data, layers) == pytest.approx((near + best) / len(y))
    assert depth_ceiling(data, SMALL["max_path_length"] + 1) == 1.0
    assert depth_ceiling(data, None) == 1.0  # an equilibrium model sees every hop


def test_split_is_by_graph_and_the_data_seed_alone_decides_the_graphs():
    a, b = infection(**SMALL, seed=3), infection(**SMALL, seed=3)
    torch.manual_seed(123)  # the global generator (experiment.seed) must not matter
    c = infection(**SMALL, seed=3)
    for other in (b, c):
        assert torch.equal(a.graph.x, other.graph.x) and torch.equal(a.graph.y, other.graph.y)
    assert not torch.equal(a.graph.x, infection(**SMALL, seed=4).graph.x)
    g = a.graph
    owners = {s: set(g.graph_id[g[f"{s}_mask"]].tolist()) for s in ("train", "valid", "test")}
    assert owners["train"].isdisjoint(owners["valid"]) and owners["train"].isdisjoint(owners["test"])
    assert owners["valid"].isdisjoint(owners["test"])
    assert sorted(owners["train"] | owners["valid"] | owners["test"]) == list(range(SMALL["num_graphs"]))
    assert not (g.edge_index[0] >= 0).logical_and(g.graph_id[g.edge_index[0]] != g.graph_id[g.edge_index[1]]).any()


@pytest.mark.parametrize("bad, message", [
    (dict(graph="ring"), "infection.graph='ring'"),
    (dict(size=0), "infection.size=0"),
    (dict(num_infected=50), "infection.num_infected=50"),
    (dict(num_graphs=2), "leaves no"),
    (dict(max_path_length=2.5), "infection.max_path_length=2.5"),
])
def test_bad_values_are_named(bad, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        infection(**{**SMALL, **bad})


def test_a_run_records_and_prints_the_ceiling_of_its_depth(tmp_path, capsys):
    run = tmp_path / "run"
    bindings = ["infection.size = 6", "infection.num_graphs = 4", "infection.max_path_length = 4",
                "infection.split = (0.5, 0.25, 0.25)", "revgnn.num_layers = 2", "revgnn.hidden_channels = 8",
                "experiment.epochs = 2", "experiment.device = 'cpu'"]
    args = ["train", "infection/revgnn-deep", "--run-dir", str(run), "--no-progress"]
    assert cli.main([*args, *[a for b in bindings for a in ("--bind", b)]]) == 0
    summary = json.loads((run / "summary.json").read_text())
    from gnn1000 import config
    from gnn1000.plugins.datasets.infection import infection as load

    config.load(run / "config.gin")
    data = load(size=6, num_graphs=4, max_path_length=4, split=(0.5, 0.25, 0.25))
    # a RevGNN layer of 2 groups runs its operator twice, each group on the previous group's output: 4 hops
    assert summary["hops"] == 4 and summary["depth_ceiling"] == depth_ceiling(data, 4)
    assert summary["shallow_ceiling"] == depth_ceiling(data, 3) < summary["depth_ceiling"]
    assert f"depth ceiling on these test graphs: {summary['depth_ceiling']:.4f} for this 2-layer model (4 hops)" \
        in capsys.readouterr().out


def test_a_revgnn_layer_reaches_one_hop_per_group():
    from gnn1000 import DEQGNN, ResGNN, RevGNN
    from gnn1000.experiment import message_passing_depth

    torch.manual_seed(0)
    x = torch.randn(9, 4)
    moved = x.clone()
    moved[0] += 1.0
    edge_index = torch.tensor([[i for i in range(8)] + [i + 1 for i in range(8)],
                               [i + 1 for i in range(8)] + [i for i in range(8)]])  # a path 0 - 1 - ... - 8
    for model, hops in ((RevGNN(4, 48, 3, 2, num_groups=3, operator="sage"), 6),
                        (ResGNN(4, 48, 3, 2, operator="sage"), 2)):
        assert message_passing_depth(model) == hops
        model.eval()
        changed = (model(moved, edge_index) - model(x, edge_index)).abs().sum(-1) > 0
        assert changed.nonzero().max().item() == hops  # a change at node 0 reaches exactly that far
    assert message_passing_depth(DEQGNN(1, 6, 1, 2)) is None
