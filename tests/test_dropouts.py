"""The dropouts every architecture has, in training only: ``input_dropout`` on the raw features before
the encoder, and ``edge_dropout`` (DropEdge) on the graph."""

import pytest
import torch
from torch_geometric.utils import remove_self_loops

from gnn1000.errors import ConfigError
from gnn1000.registry import resolve

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::gnn1000.nn.deq.SolverConvergenceWarning")]
ARCHITECTURES = ["resgnn", "revgnn", "deq"]


def encoder_inputs(model, x, edge_index):
    seen = []
    handle = model.encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    model(x, edge_index)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_input_dropout_drops_raw_features_in_training_only(name):
    torch.manual_seed(0)
    x, edge_index = torch.rand(50, 200) + 0.1, torch.randint(50, (2, 200))
    model = resolve("architectures", name)(200, 8, 3, 2, operator="gcn", input_dropout=0.4)
    seen = encoder_inputs(model.train(), x, edge_index)
    dropped = (seen == 0).float().mean().item()
    assert dropped == pytest.approx(0.4, abs=0.03)
    kept = seen != 0
    assert torch.allclose(seen[kept], x[kept] / 0.6)  # inverted dropout keeps the expected value
    assert torch.equal(encoder_inputs(model.eval(), x, edge_index), x)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_input_dropout_defaults_off_and_rejects_bad_values(name):
    cls = resolve("architectures", name)
    x, edge_index = torch.rand(20, 6) + 0.1, torch.randint(20, (2, 60))
    assert torch.equal(encoder_inputs(cls(6, 8, 3, 2, operator="gcn").train(), x, edge_index), x)
    with pytest.raises(ConfigError, match="dropout=1.0"):
        cls(6, 8, 3, 2, input_dropout=1.0)


def conv_graphs(model, x, edge_index, edge_attr=None):
    """The edge_index every graph convolution of one forward pass saw (without the self-loops GCN's
    normalisation adds: they are not edges of the input graph)."""
    seen, handles = [], []
    for module in model.modules():
        if type(module).__name__ in ("GCNConv", "GENConv"):
            handles.append(module.register_forward_pre_hook(
                lambda _, args: seen.append(remove_self_loops(args[1])[0].clone())))
    model(x, edge_index, edge_attr)
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_edge_dropout_drops_undirected_edges_once_per_pass_in_training_only(name):
    torch.manual_seed(0)
    n = 40
    pairs = torch.combinations(torch.arange(n), 2)[torch.randperm(n * (n - 1) // 2)[:300]].t()
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    model = resolve("architectures", name)(5, 8, 3, 3, operator="gcn", edge_dropout=0.3)
    graphs = conv_graphs(model.train(), torch.rand(n, 5), edge_index)
    assert len(graphs) >= 2 and all(torch.equal(g, graphs[0]) for g in graphs)  # one graph per pass
    kept = {tuple(e) for e in graphs[0].t().tolist()}
    assert all((v, u) in kept for u, v in kept)  # both directions of an edge go together
    assert len(kept) / edge_index.size(1) == pytest.approx(0.7, abs=0.08)
    assert kept <= {tuple(e) for e in edge_index.t().tolist()}
    assert not torch.equal(conv_graphs(model, torch.rand(n, 5), edge_index)[0], graphs[0])  # redrawn
    assert all(torch.equal(g, edge_index) for g in conv_graphs(model.eval(), torch.rand(n, 5), edge_index))


def test_edge_dropout_keeps_each_edges_features_with_it():
    torch.manual_seed(0)
    pairs = torch.combinations(torch.arange(20), 2)[torch.randperm(190)[:60]].t()
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    edge_attr = torch.rand(edge_index.size(1), 4)  # (u, v) and (v, u) differ: directed features
    model = resolve("architectures", "revgnn")(5, 8, 3, 2, operator="gen", edge_dim=4, edge_dropout=0.5)
    seen = []
    handle = model.edge_encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    graph = conv_graphs(model.train(), torch.rand(20, 5), edge_index, edge_attr)[0]
    handle.remove()
    original = {tuple(e): a for e, a in zip(edge_index.t().tolist(), edge_attr)}
    assert seen[0].size(0) == graph.size(1) < edge_index.size(1)
    for e, a in zip(graph.t().tolist(), seen[0]):
        assert torch.equal(a, original[tuple(e)])


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_edge_dropout_rejects_bad_values(name):
    with pytest.raises(ConfigError, match="dropout=1.0"):
        resolve("architectures", name)(6, 8, 3, 2, edge_dropout=1.0)
