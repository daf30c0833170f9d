"""``input_dropout``: dropout on the raw features before the encoder, in training only, for every
architecture."""

import pytest
import torch

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
