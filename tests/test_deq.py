"""DEQGNN: implicit gradients against unrolling, shared dropout, warm-up, stats, failure modes."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric.utils import erdos_renyi_graph

from gnn1000.errors import ConfigError, UnknownNameError
from gnn1000.plugins.architectures.deq import DEQGNN, SolverConvergenceWarning
from gnn1000.nn.root_finding import SolverDivergedError
from gnn1000.registry import register, resolve

# Tests about something other than convergence use default thresholds a random model may miss.
pytestmark = pytest.mark.filterwarnings("ignore::gnn1000.nn.deq.SolverConvergenceWarning")



def graph(n=60, in_channels=5, edge_dim=4, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    edge_index = erdos_renyi_graph(n, 0.1)
    x = torch.randn(n, in_channels, generator=gen, dtype=dtype)
    edge_attr = torch.rand(edge_index.size(1), edge_dim, generator=gen, dtype=dtype)
    return x, edge_index, edge_attr


def contractive(model: DEQGNN, scale: float = 0.05) -> DEQGNN:
    """Shrink the first conv, so f is a contraction and plain unrolling reaches Z* too."""
    with torch.no_grad():
        for p in model.block.conv1.parameters():
            p.mul_(scale)
    return model


def test_deq_is_registered_and_built_through_the_registry():
    assert resolve("architectures", "deq") is DEQGNN


@pytest.mark.parametrize("operator", ["gen", "gcn"])
def test_implicit_gradient_matches_long_unrolled_iteration(operator):
    torch.manual_seed(0)
    x, edge_index, edge_attr = graph(dtype=torch.float64)
    x.requires_grad_()
    model = contractive(DEQGNN(5, 8, 2, 1, operator=operator, edge_dim=4, fwd_tol=1e-12, bwd_tol=1e-12,
                               fwd_max_iter=200, bwd_max_iter=200).double())

    model(x, edge_index, edge_attr).square().sum().backward()
    assert model.solver_stats["forward"].converged and model.solver_stats["backward"].converged
    implicit = [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]

    x.grad = None
    model.zero_grad()
    inj = model.injection_norm(model.encoder(x))
    z = torch.zeros_like(inj)
    for _ in range(300):  # plain autograd through the whole iteration
        z = model.block(z, inj, edge_index, edge_attr)
    model.head(z).square().sum().backward()
    unrolled = [x.grad.clone()] + [p.grad.clone() for p in model.parameters()]

    names = ["input x"] + [name for name, _ in model.named_parameters()]
    for name, a, b in zip(names, implicit, unrolled):
        rel = ((a - b).norm() / b.norm()).item()
        assert rel < 1e-3, f"{name}: relative gradient error {rel:.2e}"


def test_phantom_gradient_uses_no_backward_solve_and_reaches_all_parameters():
    x, edge_index, edge_attr = graph()
    model = DEQGNN(5, 8, 2, 1, edge_dim=4, gradient="phantom")
    model(x, edge_index, edge_attr).sum().backward()
    assert model.solver_stats["forward"] is not None and model.solver_stats["backward"] is None
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_solver_stats_hold_both_solves_and_pop_metrics_summarises_the_epoch():
    x, edge_index, edge_attr = graph()
    model = contractive(DEQGNN(5, 8, 2, 1, edge_dim=4, solver="anderson", bwd_solver="fixed_point",
                               fwd_tol=1e-4, bwd_tol=1e-4, fwd_max_iter=100, bwd_max_iter=100))
    for _ in range(2):
        model(x, edge_index, edge_attr).sum().backward()
    fwd, bwd = model.solver_stats["forward"], model.solver_stats["backward"]
    assert (fwd.solver, bwd.solver) == ("anderson", "fixed_point")
    assert fwd.converged and bwd.converged and fwd.rel_residual <= 1e-4 and bwd.rel_residual <= 1e-4
    metrics = model.pop_metrics()
    assert metrics["deq_fwd_solves"] == 2 and metrics["deq_bwd_solves"] == 2
    assert metrics["deq_fwd_nonconverged"] == 0 and metrics["deq_bwd_nonconverged"] == 0
    assert metrics["deq_fwd_iterations"] > 1 and metrics["deq_bwd_rel_residual"] <= 1e-4
    assert model.pop_metrics()["deq_fwd_solves"] == 0  # reset for the next epoch


def test_one_dropout_mask_is_shared_by_every_solver_iteration():
    # With a fresh mask per application f would change every iteration and never settle.
    x, edge_index, edge_attr = graph()
    model = contractive(DEQGNN(5, 16, 2, 1, edge_dim=4, dropout=0.5, fwd_tol=1e-5, fwd_max_iter=100))
    model.train()
    model(x, edge_index, edge_attr)
    assert model.solver_stats["forward"].converged


def test_non_convergence_warns_once_per_run_and_is_counted():
    x, edge_index, edge_attr = graph()
    model = DEQGNN(5, 8, 2, 1, edge_dim=4, fwd_tol=1e-12, fwd_max_iter=2, bwd_tol=1e-12, bwd_max_iter=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            out = model(x, edge_index, edge_attr)
            out.sum().backward()
    assert torch.isfinite(out).all()
    assert len([w for w in caught if issubclass(w.category, SolverConvergenceWarning)]) == 1
    metrics = model.pop_metrics()
    assert metrics["deq_fwd_nonconverged"] == 3 and metrics["deq_bwd_nonconverged"] == 3
    with warnings.catch_warnings():  # a new epoch does not warn again: one warning per run
        warnings.simplefilter("error", SolverConvergenceWarning)
        model(x, edge_index, edge_attr)
    assert model.pop_metrics()["deq_fwd_nonconverged"] == 1  # still counted in the metrics



def test_nan_state_stops_with_error_naming_solve_solver_and_iteration():
    x, edge_index, edge_attr = graph()
    model = DEQGNN(5, 8, 2, 1, edge_dim=4, norm="identity")
    with torch.no_grad():
        model.block.conv2.conv.mlp[0].weight.fill_(float("nan"))
    with pytest.raises(SolverDivergedError, match="DEQ forward solve: broyden solver.*iteration 1"):
        model(x, edge_index, edge_attr)


def test_warm_up_trains_the_unrolled_model_then_switches_to_the_equilibrium():
    x, edge_index, edge_attr = graph()
    model = DEQGNN(5, 8, 2, 3, edge_dim=4, pretrain_epochs=2)
    calls = []
    model.block.register_forward_hook(lambda *_: calls.append(1))
    model.set_epoch(2)
    model(x, edge_index, edge_attr).sum().backward()
    assert len(calls) == 3 and model.solver_stats["forward"] is None
    assert model.pop_metrics() == {"deq_warmup": 1.0, "deq_fwd_solves": 0, "deq_fwd_nonconverged": 0,
                                   "deq_bwd_solves": 0, "deq_bwd_nonconverged": 0}
    model.set_epoch(3)
    model(x, edge_index, edge_attr).sum().backward()
    assert model.solver_stats["forward"] is not None and model.solver_stats["backward"] is not None
    assert model.pop_metrics()["deq_warmup"] == 0.0
    restored = DEQGNN(5, 8, 2, 3, edge_dim=4, pretrain_epochs=2)
    restored.load_state_dict(model.state_dict())  # the epoch travels with the checkpoint
    assert not restored.warming_up


@pytest.mark.parametrize("operator,norm", [("gcn", "batchnorm"), ("sage", "graphnorm"), ("gat", "layernorm")])
def test_any_registered_operator_and_norm(operator, norm):
    x, edge_index, edge_attr = graph()
    model = DEQGNN(5, 8, 3, 1, operator=operator, norm=norm, edge_dim=4)
    out = model(x, edge_index, edge_attr)
    out.sum().backward()
    assert out.shape == (60, 3) and model.solver_stats["backward"] is not None
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_solver_registered_by_a_third_party_drives_the_model():
    @register("solvers", "test-deq-picard")
    class Picard:
        def __init__(self):
            self.calls = 0

        def solve(self, f, z0, tol, max_iter, stop_mode):
            from gnn1000.nn.root_finding import Tracker
            tracker = Tracker("picard", tol, max_iter, stop_mode)
            self.calls += 1
            with torch.no_grad():
                z = z0
                while True:
                    fz = f(z)
                    if tracker.observe(z, fz) <= tol or tracker.iterations >= max_iter:
                        break
                    z = fz
            return tracker.result()

    x, edge_index, edge_attr = graph()
    model = contractive(DEQGNN(5, 8, 2, 1, edge_dim=4, solver="test-deq-picard", bwd_solver="test-deq-picard"))
    model(x, edge_index, edge_attr).sum().backward()
    assert model.solver.calls == 1 and model.bwd_solver.calls == 1
    assert model.solver_stats["forward"].solver == "picard"


def test_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="deq.gradient='exact'.*implicit, phantom"):
        DEQGNN(5, 8, 2, 1, gradient="exact")
    with pytest.raises(ConfigError, match="stop_mode='max'"):
        DEQGNN(5, 8, 2, 1, stop_mode="max")
    with pytest.raises(ConfigError, match="pretrain_epochs=-1"):
        DEQGNN(5, 8, 2, 1, pretrain_epochs=-1)
    with pytest.raises(UnknownNameError, match="Did you mean 'broyden'"):
        DEQGNN(5, 8, 2, 1, solver="broyde")


def test_batchnorm_statistics_count_the_equilibrium_not_the_solver_iterates():
    x, edge_index, edge_attr = graph()
    model = contractive(DEQGNN(5, 8, 2, 1, norm="batchnorm", edge_dim=4, fwd_max_iter=20))
    model.train()
    model(x, edge_index, edge_attr).sum().backward()
    assert model.solver_stats["forward"].iterations > 1
    assert int(model.block.norm1.module.num_batches_tracked) == 1


def test_second_order_gradients_through_the_implicit_backward_are_refused():
    x, edge_index, edge_attr = graph()
    model = contractive(DEQGNN(5, 8, 2, 1, edge_dim=4))
    loss = model(x, edge_index, edge_attr).square().sum()
    with pytest.raises(RuntimeError, match="gradient='phantom'"):
        torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
