"""ResGNN, the residual baseline, with every operator and norm."""

import pytest
import torch

from gnn1000.errors import ConfigError
from gnn1000.registry import resolve

ResGNN = resolve("architectures", "resgnn")


def _graph(n=30, e=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 7, generator=g), torch.randint(n, (2, e), generator=g),
            torch.rand(e, 8, generator=g))


@pytest.mark.parametrize("operator", ["gen", "gcn", "sage", "gat"])
@pytest.mark.parametrize("norm", ["layernorm", "batchnorm", "graphnorm", "identity"])
def test_every_operator_and_norm_trains(operator, norm):
    x, edge_index, edge_attr = _graph()
    model = ResGNN(7, 16, 3, 3, operator=operator, norm=norm, dropout=0.1, edge_dim=8)
    out = model(x, edge_index, edge_attr)
    assert out.shape == (30, 3)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_weight_tied_reuses_one_block():
    tied = ResGNN(7, 16, 3, 12, weight_tied=True, edge_dim=8)
    untied = ResGNN(7, 16, 3, 12, edge_dim=8)
    assert len(tied.blocks) == 1 and len(untied.blocks) == 12
    assert sum(p.numel() for p in tied.parameters()) < sum(p.numel() for p in untied.parameters()) / 5


def test_checkpointing_changes_memory_not_results():
    x, edge_index, edge_attr = _graph()
    torch.manual_seed(0)
    plain = ResGNN(7, 16, 3, 4, dropout=0.2, edge_dim=8)
    ckpt = ResGNN(7, 16, 3, 4, dropout=0.2, edge_dim=8, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, ckpt):
        torch.manual_seed(1)
        model(x, edge_index, edge_attr).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_graph_readout_gives_one_row_per_graph():
    x, edge_index, edge_attr = _graph()
    batch = torch.arange(30) // 10
    model = ResGNN(7, 16, 2, 2, edge_dim=8, norm="graphnorm", readout="mean")
    assert model(x, edge_index, edge_attr, batch).shape == (3, 2)


@pytest.mark.parametrize("kwargs, expected", [
    ({"num_layers": 0}, "num_layers=0 must be a positive integer"),
    ({"dropout": 1.0}, r"dropout=1.0 is out of range"),
    ({"readout": "median"}, "readout='median' is not supported"),
    ({"operator": "gat", "hidden_channels": 10, "operator_kwargs": {"heads": 3}}, "divisible by heads=3"),
])
def test_bad_settings_are_named(kwargs, expected):
    args = {"in_channels": 7, "hidden_channels": 16, "out_channels": 3, "num_layers": 2, **kwargs}
    with pytest.raises(ConfigError, match=expected):
        ResGNN(**args)
