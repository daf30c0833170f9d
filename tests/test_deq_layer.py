"""gnn1000.nn.DEQ around a user-written f: gradients against finite differences, the Jacobian
penalty, the warm start, one warning per run, and the DEQ-GNN's unrolled-to-equilibrium hand-over."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch_geometric.utils import erdos_renyi_graph

from gnn1000.nn import DEQ, SolverConvergenceWarning
from gnn1000.nn.deq import jacobian_frobenius
from gnn1000.plugins.architectures.deq import DEQGNN


class Tanh(torch.nn.Module):
    """A user's own f(z, x) = tanh(z W + x U + b): nothing gnn1000 built."""

    def __init__(self, channels: int, in_channels: int):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(0.3 * torch.randn(channels, channels, generator=gen, dtype=torch.float64)
                                    / channels ** 0.5)
        self.u = torch.nn.Parameter(torch.randn(in_channels, channels, generator=gen, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.randn(channels, generator=gen, dtype=torch.float64))

    def forward(self, z, x):
        return torch.tanh(z @ self.w + x @ self.u + self.b)


Z0 = torch.zeros(7, 5, dtype=torch.float64)  # the state has its own width: z0 gives its shape


def tight(f, **kwargs):
    return DEQ(f, fwd_tol=1e-12, bwd_tol=1e-12, fwd_max_iter=200, bwd_max_iter=200, **kwargs)


@pytest.mark.parametrize("solver", ["broyden", "anderson", "fixed_point"])
def test_implicit_gradient_of_a_user_f_matches_finite_differences(solver):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    layer = tight(Tanh(5, 3), solver=solver, bwd_solver=solver)
    target = torch.randn(7, 5, generator=gen, dtype=torch.float64)

    def loss():
        return (layer(x, z0=Z0) * target).sum()

    loss().backward()
    assert layer.solver_stats["forward"].converged and layer.solver_stats["backward"].converged
    eps = 1e-6
    for name, tensor in [("x", x), *layer.named_parameters()]:
        numeric = torch.zeros_like(tensor)
        with torch.no_grad():
            for i in range(tensor.numel()):
                flat = tensor.view(-1)
                flat[i] += eps
                up = loss()
                flat[i] -= 2 * eps
                down = loss()
                flat[i] += eps
                numeric.view(-1)[i] = (up - down) / (2 * eps)
        assert torch.allclose(tensor.grad, numeric, rtol=1e-5, atol=1e-7), name


def test_phantom_gradient_needs_no_backward_solve():
    x = torch.randn(7, 3, dtype=torch.float64)
    layer = tight(Tanh(5, 3), gradient="phantom")
    layer(x, z0=Z0).sum().backward()
    assert layer.solver_stats["backward"] is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_jacobian_penalty_adds_its_own_gradient_and_nothing_else():
    x = torch.randn(7, 3, dtype=torch.float64)
    plain, penalised = tight(Tanh(5, 3)), tight(Tanh(5, 3), jac_reg=0.5)
    plain(x, z0=Z0).sum().backward()
    torch.manual_seed(3)  # the same Hutchinson probe below and inside the layer
    out = penalised(x, z0=Z0)
    assert torch.equal(out, plain(x, z0=Z0).detach())  # the penalty does not change the output
    out.sum().backward()
    assert penalised.pop_metrics()["deq_jac_fro2"] > 0

    reference = Tanh(5, 3)
    z_star = plain(x, z0=Z0).detach().requires_grad_()
    torch.manual_seed(3)
    penalty = 0.5 * jacobian_frobenius(reference(z_star, x), z_star)
    extra = torch.autograd.grad(penalty, list(reference.parameters()))
    for (name, p), q, e in zip(penalised.named_parameters(), plain.parameters(), extra):
        assert torch.allclose(p.grad - q.grad, e, atol=1e-10), name


def test_jacobian_estimate_is_unbiased_for_a_linear_map():
    w = torch.randn(6, 6, dtype=torch.float64)
    z = torch.randn(4000, 6, dtype=torch.float64, requires_grad=True)
    estimate = jacobian_frobenius(z @ w, z)  # each row is one probe of ||W||_F^2
    assert estimate.item() == pytest.approx(w.pow(2).sum().item() / 6, rel=0.1)


def test_warm_start_reaches_the_same_fixed_point_in_fewer_iterations():
    x = torch.randn(7, 3, dtype=torch.float64)
    cold, warm = DEQ(Tanh(5, 3), fwd_tol=1e-10, fwd_max_iter=100), DEQ(Tanh(5, 3), fwd_tol=1e-10,
                                                                      fwd_max_iter=100, warm_start_steps=8)
    with torch.no_grad():
        a, b = cold(x, z0=Z0), warm(x, z0=Z0)
    assert torch.allclose(a, b, atol=1e-8)
    assert warm.solver_stats["forward"].iterations < cold.solver_stats["forward"].iterations


def test_missed_tolerance_warns_once_per_run_and_counts_every_miss():
    x = torch.randn(7, 3, dtype=torch.float64)
    layer = DEQ(Tanh(5, 3), fwd_tol=1e-14, fwd_max_iter=2, bwd_tol=1e-14, bwd_max_iter=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _epoch in range(3):
            for _step in range(2):
                layer(x, z0=Z0).sum().backward()
            metrics = layer.pop_metrics()
            assert metrics["deq_fwd_nonconverged"] == 2 and metrics["deq_bwd_nonconverged"] == 2
    assert len([w for w in caught if issubclass(w.category, SolverConvergenceWarning)]) == 1


def graph(n=80, in_channels=6, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    edge_index = erdos_renyi_graph(n, 0.08)
    y = torch.randint(classes, (n,), generator=gen)
    x = torch.randn(n, in_channels, generator=gen) + 2 * torch.nn.functional.one_hot(y, in_channels).float()
    return x, edge_index, y


def losses_around_the_handover(pretrain: int, **options) -> list[float]:
    """The training loss of every epoch (measured before its step), warm-up then equilibrium."""
    x, edge_index, y = graph()
    torch.manual_seed(0)
    model = DEQGNN(6, 16, 3, 4, operator="gcn", pretrain_epochs=pretrain, **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for epoch in range(1, pretrain + 4):
        model.set_epoch(epoch)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x, edge_index), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.filterwarnings("ignore::gnn1000.nn.deq.SolverConvergenceWarning")
def test_handover_from_unrolled_warm_up_to_equilibrium_keeps_the_loss_continuous(one_thread):
    pretrain = 30
    losses = losses_around_the_handover(pretrain)  # the defaults: normalised injection, contractive start, warm start
    last_unrolled, first_equilibrium = losses[pretrain - 1], losses[pretrain]
    assert last_unrolled < 0.8 * losses[0], "the warm-up should have learned something"
    assert first_equilibrium <= 1.1 * last_unrolled, losses[pretrain - 3:]
