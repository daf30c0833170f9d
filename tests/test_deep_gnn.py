"""``DeepGNN``, the shell of every deep model: the built-ins keep their numerics on it, and a
third-party architecture gets the same shell by subclassing it (the plugin guide's example)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from gnn1000 import DEQGNN, DeepGNN, ResGNN, RevGNN
from gnn1000.errors import ConfigError

EDGES = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0],
                      [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
BATCH = torch.tensor([0] * 5 + [1] * 5)

# Built before the models moved onto DeepGNN (commit edd9fce), by the code of that commit:
# sha256 of the initial and of the reset state_dict (names and bytes), and the sums of a training
# forward pass, of its gradients' magnitudes and of an evaluation pass, all with the seeds below.
CASES = {
    "resgnn": (ResGNN, dict(in_channels=5, hidden_channels=8, out_channels=3, num_layers=3, dropout=0.2,
                            input_dropout=0.1, edge_dropout=0.2),
               ("68b0b4eda15b10a9", "a20afb05969c8c97", -4.796241745352745, 228.7677904940445, -5.088431149721146)),
    "resgnn-tied-scaled": (ResGNN, dict(in_channels=5, hidden_channels=8, out_channels=3, num_layers=3,
                                        weight_tied=True, branch_scale=0.1, operator="sage", norm="batchnorm",
                                        readout="mean"),
                           ("8e57ddccf751347d", "0c4ad2ef5e06adfe", 2.2284007221460342, 33.10969511454459,
                            1.123051643371582)),
    "revgnn": (RevGNN, dict(in_channels=5, hidden_channels=12, out_channels=3, num_layers=2, num_groups=3, edge_dim=4,
                            dropout=0.3, dropout_masks="per_layer", edge_dropout=0.1),
               ("8cf3da8b55a39754", "ff1c4825f9143a99", -5.666521802544594, 220.62587208367768, -5.69489648193121)),
    "revgnn-tied": (RevGNN, dict(in_channels=5, hidden_channels=8, out_channels=3, num_layers=4, weight_tied=True,
                                 operator="gcn", stream_dtype=None, branch_scale=0.5),
                    ("ea5b0f8be040a1c6", "e4e5ad303edfccb3", -1.213530644774437, 175.66962678811979,
                     -1.213530644774437)),
    "deq": (DEQGNN, dict(in_channels=5, hidden_channels=8, out_channels=3, num_layers=3, dropout=0.1, edge_dim=4,
                         input_dropout=0.1, edge_dropout=0.1),
            ("a3ffdc74e21a7e12", "4118315099aaf55e", -2.8255209028720856, 600.0227509224787, -0.16713224351406097)),
    "deq-weight-norm": (DEQGNN, dict(in_channels=5, hidden_channels=8, out_channels=3, num_layers=2, weight_norm=True,
                                     injection_norm=False, init_gain=0.3, readout="sum", pretrain_epochs=1),
                        ("89f753445b01ea55", "e7ee880242b5c2c7", 0.007618129253387451, 3260.185706799384,
                         0.007618129253387451)),
}


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("case", CASES)
def test_the_same_seed_gives_the_weights_and_outputs_it_gave_before_the_base(case, one_thread):
    cls, kwargs, (init, reset, train, grad, evaluated) = CASES[case]
    torch.manual_seed(0)
    model = cls(**kwargs)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 5, generator=g)
    edge_attr = torch.randn(20, 4, generator=g) if kwargs.get("edge_dim") else None
    batch = BATCH if kwargs.get("readout") else None
    assert isinstance(model, DeepGNN) and digest(model) == init
    if hasattr(model, "set_epoch"):
        model.set_epoch(1)
    model.train()
    torch.manual_seed(2)
    out = model(x, EDGES, edge_attr, batch)
    out.square().sum().backward()
    assert float(out.detach().double().sum()) == pytest.approx(train, rel=1e-5)
    assert sum(float(p.grad.double().abs().sum()) for p in model.parameters() if p.grad is not None) == \
        pytest.approx(grad, rel=1e-5)
    model.eval()
    with torch.no_grad():
        assert float(model(x, EDGES, edge_attr, batch).double().sum()) == pytest.approx(evaluated, rel=1e-5)
    torch.manual_seed(3)
    model.reset_parameters()
    assert digest(model) == reset


def test_the_models_keep_the_arguments_they_were_built_with():
    model = RevGNN(5, 12, 3, 2, operator="sage", num_groups=3, weight_tied=True, stream_dtype=None)
    assert {k: model.arguments[k] for k in ("operator", "num_groups", "weight_tied", "stream_dtype", "norm")} == \
        {"operator": "sage", "num_groups": 3, "weight_tied": True, "stream_dtype": None, "norm": "layernorm"}
    assert repr(model) == "RevGNN(5, 12, 3, num_layers=2, num_groups=3, weight_tied=True, reversible=True)"
    assert repr(DEQGNN(5, 8, 3, 2)) == "DEQGNN(5, 8, 3, num_layers=2, gradient='implicit', pretrain_epochs=0)"


def _guide_example() -> str:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    section = guide.split("## Your own architecture", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def gated(monkeypatch):
    """The plugin guide's GatedGNN, registered for this test only."""
    from gnn1000 import registry

    monkeypatch.setitem(registry._entries["architectures"], "gatedgnn", None)  # removed again afterwards
    namespace = {"__name__": "plugin_guide_example"}
    exec(compile(_guide_example(), "docs/plugins.md", "exec"), namespace)
    return namespace["GatedGNN"]


def test_a_subclass_gets_the_shell_encoder_dropouts_head_checks_reset_and_repr(gated, one_thread):
    torch.manual_seed(0)
    model = gated(8, 16, 3, num_layers=4, operator="sage", gate_init=-2.0, edge_dropout=0.1, readout="max")
    torch.manual_seed(0)
    builtin = ResGNN(8, 16, 3, num_layers=4, operator="sage")
    assert torch.equal(model.encoder.weight, builtin.encoder.weight)  # the shell's parameters come first
    assert model(torch.randn(10, 8), EDGES, batch=BATCH).shape == (2, 3)  # the head's readout
    assert repr(model) == "GatedGNN(8, 16, 3, num_layers=4)"
    assert (model.arguments["gate_init"], model.arguments["operator"], model.arguments["edge_dropout"]) == \
        (-2.0, "sage", 0.1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.reset_parameters()
    assert torch.equal(model.gates, torch.full((4,), -2.0))
    norms = {name: p for name, p in model.named_parameters() if name.endswith("norm.weight")}
    assert len(norms) == 5 and all(torch.equal(p, torch.ones(16)) for p in norms.values())  # blocks' and head's
    with pytest.raises(ConfigError, match=r"gatedgnn\.edge_dropout=1\.5"):
        gated(8, 16, 3, num_layers=4, edge_dropout=1.5)
    with pytest.raises(ConfigError, match=r"gatedgnn\.num_layers=0"):
        gated(8, 16, 3, num_layers=0)


def test_a_subclass_without_a_stack_says_what_to_implement():
    class Empty(DeepGNN):
        pass

    with pytest.raises(NotImplementedError, match="Empty must implement build_stack"):
        Empty(4, 8, 2, 1)
