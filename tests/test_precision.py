"""experiment.precision: autocast for every architecture, exact reversible gradients under bf16."""

import json

import pytest
import torch

from gnn1000 import RevGNN, precision
from gnn1000.cli import main as cli_main
from gnn1000.errors import ConfigError
from gnn1000.settings import ExperimentConfig

from helpers import bind_args


def _grads(model, x, edge_index, edge_attr):
    model.zero_grad()
    with precision.autocast(torch.device("cpu"), "bf16"):
        out = model(x, edge_index, edge_attr)
    out.float().square().mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_reversible_gradients_match_plain_autograd_under_bf16(one_thread):
    torch.manual_seed(0)
    x, edge_index = torch.randn(60, 8), torch.randint(60, (2, 300))
    edge_attr = torch.randn(300, 4)
    rev = RevGNN(8, 32, 3, 12, num_groups=2, edge_dim=4, dropout=0.0)
    plain = RevGNN(8, 32, 3, 12, num_groups=2, edge_dim=4, dropout=0.0, reversible=False)
    plain.load_state_dict(rev.state_dict())
    a, b = _grads(rev, x, edge_index, edge_attr), _grads(plain, x, edge_index, edge_attr)
    assert a.keys() == b.keys()
    for name in a:
        # the same bf16 computations in both: only the order of float additions differs
        torch.testing.assert_close(a[name], b[name], rtol=2e-2, atol=1e-4, msg=name)
        assert a[name].dtype == torch.float32


@pytest.mark.parametrize("arch", ["resgnn", "revgnn", "deq"])
def test_a_bf16_run_of_every_architecture(tmp_path, tiny, one_thread, arch):
    sizes = {"resgnn": [], "revgnn": ["revgnn.hidden_channels = 16", "revgnn.num_layers = 2", "revgnn.num_groups = 2"],
             "deq": ["deq.hidden_channels = 16", "deq.num_layers = 1"]}[arch]
    bindings = [*tiny, f"experiment.architecture = '{arch}'", *sizes, "experiment.precision = 'bf16'",
                "experiment.epochs = 2"]
    assert cli_main(["train", "--run-dir", str(tmp_path), "--no-progress", *bind_args(bindings)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["precision"] == "bf16" and 0 < summary["test_at_best_valid"] <= 1


def test_float16_trains_with_a_gradient_scaler(tmp_path, tiny, one_thread):
    bindings = [*tiny, "experiment.precision = '16'", "experiment.epochs = 2"]
    assert cli_main(["train", "--run-dir", str(tmp_path), "--no-progress", *bind_args(bindings)]) == 0
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert state["scaler"]["scale"] > 0  # the scaler's state is checkpointed with the run


def test_an_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="'32', 'bf16', '16'"):
        ExperimentConfig(precision="fp8")
