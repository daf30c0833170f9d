"""DEQ-GNN: an infinitely deep weight-tied GNN, Z* = f(Z*, X), found by a root finder.

Forward: solve for Z* without an autograd graph, then apply f once with the graph. Backward
(``gradient='implicit'``): the adjoint g = g J_f(Z*) + dL/dZ* is solved with ``bwd_solver``, so
activation memory does not depend on the number of solver iterations. ``gradient='phantom'``
backpropagates through the one last application of f only (Jacobian-free, cheaper, inexact).

Warm-up: for the first ``pretrain_epochs`` epochs the model is the unrolled weight-tied network
(f applied ``num_layers`` times from zero, plain autograd), as DEQ papers do to start from a
reasonable f. The model learns the epoch through ``set_epoch(epoch)`` (1-based; the experiment
loop calls it before each epoch, like a DistributedSampler's); the epoch is a buffer, so a
checkpoint restores the mode with the weights.

Monitoring: ``model.solver_stats`` holds the last forward and backward ``SolverStats``;
``pop_metrics()`` (once per epoch, from the experiment loop) returns deq_warmup and, for
deq_fwd_* and deq_bwd_*: solves, nonconverged, mean iterations, abs_residual and rel_residual.
A solve that misses its tolerance returns its best iterate and warns once per epoch.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from gnn1000.errors import ConfigError
from gnn1000.nn.blocks import OutputHead, build_norm, build_operator, check_dropout, check_sizes, preserved_buffers, shared_dropout_mask
from gnn1000.nn.resolver import reset
from gnn1000.plugins.solvers.base import SolverDivergedError, SolverStats, build_solver, check_solve_args
from gnn1000.registry import register

GRADIENTS = ("implicit", "phantom")


class SolverConvergenceWarning(UserWarning):
    """An equilibrium solve stopped at its iteration limit above its tolerance."""


class EquilibriumBlock(torch.nn.Module):
    """The paper's f: Z' = Conv(Z); Z'' = Norm(Z' + X); Z''' = Conv(Dropout(ReLU(Z''))); Norm(ReLU(Z''' + Z'))."""

    def __init__(self, channels: int, *, operator="gen", norm="layernorm", edge_dim: int | None = None,
                 operator_kwargs: dict | None = None, norm_kwargs: dict | None = None):
        super().__init__()
        self.conv1 = build_operator(operator, channels, channels, edge_dim, operator_kwargs)
        self.norm1 = build_norm(norm, channels, norm_kwargs)
        self.conv2 = build_operator(operator, channels, channels, edge_dim, operator_kwargs)
        self.norm2 = build_norm(norm, channels, norm_kwargs)

    def forward(self, z: Tensor, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | None = None) -> Tensor:
        z1 = self.conv1(z, edge_index, edge_attr)
        h = F.relu(self.norm1(z1 + x, batch))
        if dropout_mask is not None:
            h = h * dropout_mask
        z3 = self.conv2(h, edge_index, edge_attr)
        return self.norm2(F.relu(z3 + z1), batch)


class _ImplicitGradient(torch.autograd.Function):
    """Identity forward; backward swaps dL/dZ* for the adjoint solution ``adjoint(dL/dZ*)``.

    Hand-written because autograd cannot express "solve a linear system in backward"; a Function
    (rather than a tensor hook) keeps it correct under retain_graph and repeated backward calls.
    """

    @staticmethod
    def forward(ctx, z: Tensor, adjoint) -> Tensor:
        ctx.adjoint = adjoint
        return z.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError("deq: a second-order gradient (create_graph=True) through the implicit "
                               "backward is not supported; use deq.gradient = 'phantom', or "
                               "deq.pretrain_epochs to train the unrolled model, for that.")
        return ctx.adjoint(grad), None


@register("architectures", "deq")
class DEQGNN(torch.nn.Module):
    """Equilibrium GNN: encoder -> Z* = f(Z*, X) -> output head.

    ``num_layers`` is the depth of the unrolled weight-tied model used during warm-up
    (``pretrain_epochs``); the equilibrium model itself has no depth.
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int, *,
                 operator="gen", norm="layernorm", dropout: float = 0.0, edge_dim: int | None = None,
                 operator_kwargs: dict | None = None, norm_kwargs: dict | None = None,
                 solver="broyden", bwd_solver="broyden", fwd_tol: float = 1e-3, fwd_max_iter: int = 30,
                 bwd_tol: float = 1e-3, bwd_max_iter: int = 40, stop_mode: str = "rel",
                 gradient: str = "implicit", pretrain_epochs: int = 0, readout: str | None = None):
        super().__init__()
        check_sizes("deq", in_channels, hidden_channels, out_channels, num_layers)
        check_solve_args("deq forward solve", fwd_tol, fwd_max_iter, stop_mode)
        check_solve_args("deq backward solve", bwd_tol, bwd_max_iter, stop_mode)
        if gradient not in GRADIENTS:
            raise ConfigError(f"deq.gradient={gradient!r} is not supported; choose one of {', '.join(GRADIENTS)}.")
        if not isinstance(pretrain_epochs, int) or pretrain_epochs < 0:
            raise ConfigError(f"deq.pretrain_epochs={pretrain_epochs!r} must be a non-negative integer.")
        self.num_layers = num_layers
        self.dropout = check_dropout(dropout)
        self.solver = build_solver(solver)
        self.bwd_solver = build_solver(bwd_solver)
        self.fwd_tol, self.fwd_max_iter = fwd_tol, fwd_max_iter
        self.bwd_tol, self.bwd_max_iter = bwd_tol, bwd_max_iter
        self.stop_mode = stop_mode
        self.gradient = gradient
        self.pretrain_epochs = pretrain_epochs
        self.encoder = torch.nn.Linear(in_channels, hidden_channels)
        self.block = EquilibriumBlock(hidden_channels, operator=operator, norm=norm, edge_dim=edge_dim,
                                      operator_kwargs=operator_kwargs, norm_kwargs=norm_kwargs)
        self.head = OutputHead(hidden_channels, out_channels, norm=norm, dropout=dropout, readout=readout,
                               norm_kwargs=norm_kwargs)
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))
        self.solver_stats: dict[str, SolverStats | None] = {"forward": None, "backward": None}
        self._epoch_stats: dict[str, list[SolverStats]] = {"forward": [], "backward": []}
        self._warned = False

    def reset_parameters(self) -> None:
        for module in (self.encoder, self.block, self.head):
            reset(module)

    # -- epochs and metrics ---------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Tell the model which (1-based) training epoch starts; decides warm-up vs equilibrium."""
        self.epoch.fill_(int(epoch))

    @property
    def warming_up(self) -> bool:
        return 0 < self.pretrain_epochs and int(self.epoch) <= self.pretrain_epochs

    def pop_metrics(self) -> dict[str, float]:
        """Per-epoch solver summary (mean iterations and residuals, non-converged count); resets it."""
        record: dict[str, float] = {"deq_warmup": float(self.warming_up)}
        for kind, key in (("forward", "deq_fwd"), ("backward", "deq_bwd")):
            stats = self._epoch_stats[kind]
            record[f"{key}_solves"] = len(stats)
            record[f"{key}_nonconverged"] = sum(not s.converged for s in stats)
            if stats:
                record[f"{key}_iterations"] = sum(s.iterations for s in stats) / len(stats)
                record[f"{key}_abs_residual"] = sum(s.abs_residual for s in stats) / len(stats)
                record[f"{key}_rel_residual"] = sum(s.rel_residual for s in stats) / len(stats)
            stats.clear()
        self._warned = False
        return record

    def _record(self, kind: str, stats: SolverStats) -> None:
        self.solver_stats[kind] = stats
        if self.training:  # the epoch's metrics describe the training solves, not evaluation's
            self._epoch_stats[kind].append(stats)
        if not stats.converged and not self._warned:
            self._warned = True
            tol, max_iter = (self.fwd_tol, self.fwd_max_iter) if kind == "forward" else (self.bwd_tol, self.bwd_max_iter)
            warnings.warn(
                f"deq {kind} solve ({stats.solver}) did not reach {self.stop_mode} tolerance {tol:g} in "
                f"{max_iter} iterations (best residual {stats.residual:.3g}); using its best iterate. "
                f"Further misses this epoch are counted in the metrics (deq_*_nonconverged), not warned.",
                SolverConvergenceWarning, stacklevel=3)

    # -- forward --------------------------------------------------------------------------------

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None) -> Tensor:
        self.solver_stats = {"forward": None, "backward": None}
        inj = self.encoder(x)
        # One dropout mask for every application of f: f must be the same function at each iterate.
        mask = shared_dropout_mask(inj, self.dropout, self.training)

        def f(z: Tensor) -> Tensor:
            return self.block(z, inj, edge_index, edge_attr, batch, mask)

        z = self._unrolled(f, inj) if self.warming_up else self._equilibrium(f, inj)
        return self.head(z, batch)

    def _unrolled(self, f, inj: Tensor) -> Tensor:
        z = torch.zeros_like(inj)
        for _ in range(self.num_layers):
            z = f(z)
        return z

    def _solve(self, kind: str, solver, f, z0: Tensor, tol: float, max_iter: int):
        try:
            z, stats = solver.solve(f, z0, tol, max_iter, self.stop_mode)
        except SolverDivergedError as exc:
            raise SolverDivergedError(f"deq {kind} solve: {exc}") from exc
        self._record(kind, stats)
        return z

    def _equilibrium(self, f, inj: Tensor) -> Tensor:
        # The iterates are not the model: BatchNorm statistics count only the final application of f.
        with preserved_buffers(self.block):
            z_star = self._solve("forward", self.solver, f, torch.zeros_like(inj), self.fwd_tol, self.fwd_max_iter)
        if not torch.is_grad_enabled():
            return f(z_star)
        if self.gradient == "phantom":
            return f(z_star.detach())
        z_star = z_star.detach().requires_grad_()
        z_out = f(z_star)

        def adjoint(grad: Tensor) -> Tensor:
            # vjp(y) = y J_f(Z*); the fixed point of y -> vjp(y) + dL/dZ* is dL/dZ* (I - J_f)^-1.
            def h(y: Tensor) -> Tensor:
                return torch.autograd.grad(z_out, z_star, y, retain_graph=True)[0] + grad
            return self._solve("backward", self.bwd_solver, h, torch.zeros_like(grad),
                               self.bwd_tol, self.bwd_max_iter)

        return _ImplicitGradient.apply(z_out, adjoint)
