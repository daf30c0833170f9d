"""The shipped DEQ-GNN model fragments parse and build the paper's models."""

from __future__ import annotations

import pytest
import torch

from gnn1000 import config as gin_config
from gnn1000.plugins.architectures.deq import DEQGNN



@pytest.mark.filterwarnings("ignore::gnn1000.plugins.architectures.deq.SolverConvergenceWarning")
@pytest.mark.parametrize("name,channels", [("models/deq-gnn-64", 64), ("models/deq-gnn-224", 224)])
def test_deq_fragment_parses_and_builds(name, channels):
    assert name in gin_config.shipped_configs()
    gin_config.load(name)
    assert gin_config.settings().architecture == "deq"
    model = gin_config.reference("architectures", "deq")(in_channels=8, out_channels=112, edge_dim=8)
    assert isinstance(model, DEQGNN)
    assert model.encoder.out_features == channels and model.head.lin.out_features == 112
    assert type(model.solver).__name__ == type(model.bwd_solver).__name__ == "Broyden"
    assert model.block.conv1.conv.aggr == "max" and model.dropout == 0.1
    x = torch.randn(20, 8)
    edge_index = torch.randint(20, (2, 60))
    model.eval()
    assert model(x, edge_index, torch.rand(60, 8)).shape == (20, 112)
