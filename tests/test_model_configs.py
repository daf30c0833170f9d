"""The paper's model fragments parse, name a registered architecture and build a working model."""

import gin
import pytest
import torch

from gnn1000 import config

MODELS = ["revgnn-deep", "revgnn-wide", "resgnn-64", "wt-revgnn-224", "revgcn-deep", "revsage", "revgat",
          "revgnn-160", "revgnn-256"]
EXPECTED = {  # (architecture, layers, hidden channels) as the paper reports them
    "revgnn-deep": ("revgnn", 1001, 80), "revgnn-wide": ("revgnn", 448, 224),
    "resgnn-64": ("resgnn", 112, 64), "wt-revgnn-224": ("revgnn", 112, 224),
    "revgcn-deep": ("revgnn", 28, 128), "revgnn-160": ("revgnn", 56, 160), "revgnn-256": ("revgnn", 14, 256),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny graphs: one thread is fastest


@pytest.mark.parametrize("name", MODELS)
def test_model_fragment_builds_a_model(name):
    config.load(f"models/{name}")
    arch = gin.query_parameter("experiment.architecture")
    # ogbn-proteins-like sizes: 8 node features, 112 tasks, 8 edge features
    model = config.reference("architectures", arch)(in_channels=8, out_channels=112, edge_dim=8)
    if name in EXPECTED:
        want_arch, layers, hidden = EXPECTED[name]
        assert arch == want_arch
        assert model.num_layers == layers if arch == "resgnn" else model.stack.num_layers == layers
        assert model.encoder.out_features == hidden
    if name == "wt-revgnn-224":
        assert len(model.stack.blocks) == 1
    gen = torch.Generator().manual_seed(0)
    x, edge_index = torch.randn(6, 8, generator=gen), torch.randint(6, (2, 12), generator=gen)
    with torch.no_grad():
        out = model.eval()(x, edge_index, torch.rand(12, 8, generator=gen))
    assert out.shape == ((1, 112) if name == "revgnn-256" else (6, 112))
    assert torch.isfinite(out).all()
