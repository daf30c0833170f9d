"""Operators that ask for x0 and layer (GCNII's initial residual and identity mapping): every stack
hands them over through one contract, and the reversible backward stays exact."""

import pytest
import torch
from torch_geometric.nn import GCN2Conv, GCNConv

from gnn1000 import DEQGNN, ResGNN, RevGNN
from gnn1000.errors import ConfigError
from gnn1000.nn import ReversibleStack
from gnn1000.plugins.operators.pyg_convs import GCN, GCN2


def graph(n=12, e=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randint(0, n, (2, e), generator=g)


def gradients(model, x, edge_index, seed=1):
    model.zero_grad()
    torch.manual_seed(seed)
    out = model(x, edge_index)
    out.pow(2).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("weight_tied", [False, True])
def test_reversible_gradients_equal_plain_autograd_with_gcn2_at_64_layers(weight_tied):
    x, edge_index = graph()
    torch.manual_seed(0)
    model = RevGNN(5, 16, 3, 64, operator="gcn2", weight_tied=weight_tied, dropout=0.2,
                   dropout_masks="per_layer", branch_scale=0.1).train()
    out, reversible = gradients(model, x, edge_index)
    model.reversible = False
    ref_out, reference = gradients(model, x, edge_index)
    assert torch.allclose(out, ref_out, atol=1e-6)
    assert reversible.keys() == reference.keys()
    assert "encoder.weight" in reversible  # x0 is the encoder's output: its gradient reaches the encoder
    for name, grad in reference.items():
        assert torch.allclose(reversible[name], grad, rtol=1e-5, atol=1e-7), name


class Recorder(torch.nn.Module):
    """A third-party operator that asks for x0 and layer by naming them, as the contract says."""

    calls: list = []

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.lin = torch.nn.Linear(in_channels, out_channels)

    def forward(self, x, edge_index, edge_attr=None, *, x0=None, layer=None):
        Recorder.calls.append((layer, None if x0 is None else tuple(x0.shape)))
        return self.lin(x) + x0


@pytest.mark.filterwarnings("ignore:DEQ forward solve")  # one iteration is enough to see the call
@pytest.mark.parametrize("arch, expected", [
    (lambda: ResGNN(5, 8, 2, 3, operator=Recorder), [(1, (12, 8)), (2, (12, 8)), (3, (12, 8))]),
    (lambda: RevGNN(5, 8, 2, 2, operator=Recorder, reversible=False),
     [(1, (12, 4)), (1, (12, 4)), (2, (12, 4)), (2, (12, 4))]),  # each group gets its own slice of x0
    (lambda: DEQGNN(5, 8, 2, 2, operator=Recorder, fwd_max_iter=1, handover="zeros"), [(None, (12, 8))] * 2),
])
def test_every_stack_hands_x0_and_the_layer_to_an_operator_that_names_them(arch, expected):
    x, edge_index = graph()
    model = arch().eval()
    Recorder.calls = []
    with torch.no_grad():
        model(x, edge_index)
    assert Recorder.calls[:len(expected)] == expected


def test_a_stack_whose_operators_take_x0_needs_it_to_invert():
    x, edge_index = graph()
    stack = ReversibleStack.from_conv(GCN2(4, 4), num_groups=2, num_layers=3).eval()
    y = stack(x[:, :4].repeat(1, 2), edge_index)
    with pytest.raises(ConfigError, match="needs x0"):
        stack.inverse(y, edge_index)
    assert torch.allclose(stack.inverse(y, edge_index, x0=x[:, :4].repeat(1, 2)), x[:, :4].repeat(1, 2), atol=1e-5)


def test_gcn2_is_pyg_gcn2conv_with_the_layers_beta():
    x, edge_index = graph()
    ours = GCN2(5, 5, alpha=0.2, theta=0.5)
    theirs = GCN2Conv(5, alpha=0.2, theta=0.5, layer=7)
    theirs.weight1.data.copy_(ours.conv.weight1.data)
    x0 = torch.randn_like(x)
    assert torch.allclose(ours(x, edge_index, x0=x0, layer=7), theirs(x, x0, edge_index), atol=1e-6)
    with pytest.raises(ConfigError, match="gcn2 needs x0"):
        ours(x, edge_index)
    with pytest.raises(ConfigError, match="must be equal"):
        GCN2(5, 6)


@pytest.mark.parametrize("improved", [False, True])
def test_gcn_normalises_each_graph_once_and_as_pyg_does(improved, monkeypatch):
    x, edge_index = graph()
    ours = GCN(5, 4, improved=improved)
    theirs = GCNConv(5, 4, improved=improved)
    theirs.load_state_dict(ours.conv.state_dict())
    weight = torch.ones(edge_index.size(1))
    assert torch.allclose(ours(x, edge_index), theirs(x, edge_index, weight), atol=1e-6)
    from gnn1000.plugins.operators import pyg_convs

    calls = []
    real = pyg_convs.gcn_norm
    monkeypatch.setattr(pyg_convs, "gcn_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = RevGNN(5, 8, 2, 16, operator="gcn")
    model(x, edge_index.clone()).sum().backward()  # 16 layers x 2 groups, forward and reversible backward
    assert len(calls) == 1
