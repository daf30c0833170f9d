"""``DEQ``: a deep-equilibrium layer around any ``f(z, x, ...)``, model-independent (as torchdeq's
``get_deq``): ``DEQ(f)(x, ...)`` returns Z* = f(Z*, x, ...), found by a root finder.

Forward: the solve runs without an autograd graph (from zero, or, with ``warm_start_steps``, from
the state that many plain applications of f reach: the hand-over from an unrolled warm-up), then f
is applied once with the graph. Backward: ``gradient='implicit'`` solves the adjoint system
g = g J_f(Z*) + dL/dZ* (memory independent of the iterations); ``'phantom'`` backpropagates through
that last application only (Jacobian-free, inexact). ``jac_reg`` adds ``jac_reg * ||J_f(Z*)||_F^2 /
numel`` (Hutchinson estimate, one probe) to the gradient, which keeps f contractive as it trains.

Statistics: ``solver_stats`` holds the last forward and backward ``SolverStats``; ``pop_metrics()``
returns the training solves since its last call (count, non-converged, mean iterations, residuals,
the Jacobian estimate) and clears them. The first solve that misses its tolerance warns once for the
whole life of the layer (one run); later misses are counted in the metrics only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from gnn1000.errors import ConfigError
from gnn1000.nn.blocks import preserved_buffers
from gnn1000.nn.root_finding import SolverDivergedError, SolverStats, build_solver, check_solve_args

GRADIENTS = ("implicit", "phantom")


class SolverConvergenceWarning(UserWarning):
    """An equilibrium solve stopped at its iteration limit above its tolerance."""


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
            raise RuntimeError("DEQ: a second-order gradient (create_graph=True) through the implicit "
                               "backward is not supported; use gradient='phantom' (or an unrolled "
                               "warm-up) for that.")
        return ctx.adjoint(grad), None


class _AddToGradient(torch.autograd.Function):
    """Identity on z; backward also backpropagates ``penalty`` (as if it were added to the loss).

    Lets a layer add a regulariser to the training objective without the training loop knowing.
    """

    @staticmethod
    def forward(ctx, z: Tensor, penalty: Tensor) -> Tensor:
        ctx.shape = penalty.shape
        return z.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, grad.new_ones(ctx.shape)


def implicit_gradient(z_out: Tensor, z_star: Tensor, solve_adjoint: Callable) -> Tensor:
    """``z_out`` = f(z_star) (z_star a leaf) whose backward is the implicit-function gradient.

    vjp(y) = y J_f(Z*); the fixed point of y -> vjp(y) + dL/dZ* is dL/dZ* (I - J_f)^-1, which
    ``solve_adjoint(h, grad)`` finds with the backward solver.
    """

    def adjoint(grad: Tensor) -> Tensor:
        def h(y: Tensor) -> Tensor:
            return torch.autograd.grad(z_out, z_star, y, retain_graph=True)[0] + grad
        return solve_adjoint(h, grad)

    return _ImplicitGradient.apply(z_out, adjoint)


def jacobian_frobenius(z_out: Tensor, z_in: Tensor) -> Tensor:
    """Hutchinson estimate of ||J_f||_F^2 / numel at z_in (one Gaussian probe), differentiable."""
    v = torch.randn_like(z_in)
    vjp = torch.autograd.grad(z_out, z_in, v, create_graph=True)[0]
    return vjp.pow(2).sum() / v.numel()


class DEQ(torch.nn.Module):
    """Equilibrium layer: ``DEQ(f, ...)(x, *args, **kwargs)`` returns Z* = f(Z*, x, *args, **kwargs).

    Args:
        f: a callable (usually a module, then registered as a submodule) mapping (z, x, ...) to a
            tensor shaped like z. z starts as zeros shaped like x unless ``z0`` is given.
        solver, bwd_solver: root finders for the forward and adjoint solves (registry name, class
            or instance; see ``gnn1000.solvers``).
        fwd_tol, fwd_max_iter, bwd_tol, bwd_max_iter, stop_mode: the solves' thresholds.
        gradient: 'implicit' (exact at the fixed point) or 'phantom' (one step, Jacobian-free).
        jac_reg: weight of the Jacobian penalty in training (0 turns it off).
        warm_start_steps: plain applications of f (without a graph) that give the solve's start.
    """

    def __init__(self, f: Callable[..., Tensor], *, solver="broyden", bwd_solver="broyden",
                 fwd_tol: float = 1e-3, fwd_max_iter: int = 30, bwd_tol: float = 1e-3,
                 bwd_max_iter: int = 40, stop_mode: str = "rel", gradient: str = "implicit",
                 jac_reg: float = 0.0, warm_start_steps: int = 0):
        super().__init__()
        check_solve_args("DEQ forward solve", fwd_tol, fwd_max_iter, stop_mode)
        check_solve_args("DEQ backward solve", bwd_tol, bwd_max_iter, stop_mode)
        if gradient not in GRADIENTS:
            raise ConfigError(f"DEQ: gradient={gradient!r} is not supported; choose one of {', '.join(GRADIENTS)}.")
        if not jac_reg >= 0:
            raise ConfigError(f"DEQ: jac_reg={jac_reg!r} must be a non-negative number (0 turns it off).")
        if not isinstance(warm_start_steps, int) or warm_start_steps < 0:
            raise ConfigError(f"DEQ: warm_start_steps={warm_start_steps!r} must be a non-negative integer.")
        self.f = f
        self.solver = build_solver(solver)
        self.bwd_solver = build_solver(bwd_solver)
        self.fwd_tol, self.fwd_max_iter = fwd_tol, fwd_max_iter
        self.bwd_tol, self.bwd_max_iter = bwd_tol, bwd_max_iter
        self.stop_mode = stop_mode
        self.gradient = gradient
        self.jac_reg = float(jac_reg)
        self.warm_start_steps = warm_start_steps
        self.solver_stats: dict[str, SolverStats | None] = {"forward": None, "backward": None}
        self._epoch_stats: dict[str, list[SolverStats]] = {"forward": [], "backward": []}
        self._jac: list[float] = []
        self._warned = False

    # -- statistics -----------------------------------------------------------------------------

    def pop_metrics(self, prefix: str = "deq") -> dict[str, float]:
        """The training solves since the last call: count, misses, mean iterations and residuals."""
        record: dict[str, float] = {}
        for kind, key in (("forward", f"{prefix}_fwd"), ("backward", f"{prefix}_bwd")):
            stats = self._epoch_stats[kind]
            record[f"{key}_solves"] = len(stats)
            record[f"{key}_nonconverged"] = sum(not s.converged for s in stats)
            if stats:
                record[f"{key}_iterations"] = sum(s.iterations for s in stats) / len(stats)
                record[f"{key}_abs_residual"] = sum(s.abs_residual for s in stats) / len(stats)
                record[f"{key}_rel_residual"] = sum(s.rel_residual for s in stats) / len(stats)
            stats.clear()
        if self._jac:
            record[f"{prefix}_jac_fro2"] = sum(self._jac) / len(self._jac)
            self._jac.clear()
        return record

    def _record(self, kind: str, stats: SolverStats) -> None:
        self.solver_stats[kind] = stats
        if self.training:  # the metrics describe the training solves, not evaluation's
            self._epoch_stats[kind].append(stats)
        if not stats.converged and not self._warned:
            self._warned = True
            tol, max_iter = (self.fwd_tol, self.fwd_max_iter) if kind == "forward" else (self.bwd_tol, self.bwd_max_iter)
            warnings.warn(
                f"DEQ {kind} solve ({stats.solver}) did not reach {self.stop_mode} tolerance {tol:g} in "
                f"{max_iter} iterations (best residual {stats.residual:.3g}); using its best iterate. "
                f"This is the only warning of this run: further misses are counted in the metrics "
                f"(deq_fwd_nonconverged, deq_bwd_nonconverged).",
                SolverConvergenceWarning, stacklevel=4)

    @torch.compiler.disable  # under torch.compile the loop runs eagerly: its iteration count varies per solve
    def _solve(self, kind: str, solver, f, z0: Tensor, tol: float, max_iter: int) -> Tensor:
        try:
            z, stats = solver.solve(f, z0, tol, max_iter, self.stop_mode)
        except SolverDivergedError as exc:
            raise SolverDivergedError(f"DEQ {kind} solve: {exc}") from exc
        self._record(kind, stats)
        return z

    # -- forward --------------------------------------------------------------------------------

    def unrolled(self, x: Tensor, *args, steps: int, z0: Tensor | None = None, **kwargs) -> Tensor:
        """f applied ``steps`` times from z0 (zeros) with plain autograd: the warm-up model."""
        z = torch.zeros_like(x) if z0 is None else z0
        for step in range(steps):
            if step == steps - 1 and z.requires_grad:  # the penalty keeps f contractive in warm-up too
                z_out = self.f(z, x, *args, **kwargs)
                return self._penalised(z_out, z_out, z)
            z = self.f(z, x, *args, **kwargs)
        return z

    def _penalised(self, result: Tensor, z_out: Tensor, z_in: Tensor) -> Tensor:
        """``result``, carrying the gradient of the Jacobian penalty of z_out = f(z_in) when training
        with ``jac_reg``."""
        if not (self.training and self.jac_reg > 0 and torch.is_grad_enabled()):
            return result
        fro2 = jacobian_frobenius(z_out, z_in)
        self._jac.append(fro2.item())
        return _AddToGradient.apply(result, self.jac_reg * fro2)

    def forward(self, x: Tensor, *args, z0: Tensor | None = None, **kwargs) -> Tensor:
        def f(z: Tensor) -> Tensor:
            return self.f(z, x, *args, **kwargs)

        # The iterates are not the model: BatchNorm statistics count only the final application of f.
        with torch.no_grad(), preserved_buffers(self):
            start = self.unrolled(x, *args, steps=self.warm_start_steps, z0=z0, **kwargs)
            z_star = self._solve("forward", self.solver, f, start, self.fwd_tol, self.fwd_max_iter)
        if not torch.is_grad_enabled():
            return f(z_star)
        z_star = z_star.detach().requires_grad_()
        z_out = f(z_star)
        if self.gradient == "implicit":
            z_grad = implicit_gradient(z_out, z_star, lambda h, grad: self._solve(
                "backward", self.bwd_solver, h, torch.zeros_like(grad), self.bwd_tol, self.bwd_max_iter))
            return self._penalised(z_grad, z_out, z_star)
        return self._penalised(z_out, z_out, z_star)

    def extra_repr(self) -> str:
        return (f"solver={self.solver!r}, bwd_solver={self.bwd_solver!r}, fwd_tol={self.fwd_tol:g}, "
                f"fwd_max_iter={self.fwd_max_iter}, gradient={self.gradient!r}, jac_reg={self.jac_reg:g}, "
                f"warm_start_steps={self.warm_start_steps}")
