"""What every root finder shares: the call signature, the stats it returns, residuals and checks.

A solver is a class registered in the ``solvers`` kind. Its constructor takes the solver's own
options (gin-configurable, e.g. ``anderson.m``); ``solve(f, z0, tol, max_iter, stop_mode)`` finds
z = f(z) and returns ``(z, SolverStats)``. The state is treated as one vector whatever its shape,
so a whole graph's node states are solved jointly. Solvers run without building an autograd graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from gnn1000.errors import ConfigError, Gnn1000Error, check_number
from gnn1000.registry import resolve

STOP_MODES = ("abs", "rel")
_EPS = 1e-9  # keeps the relative residual finite when f(z) is zero


class SolverDivergedError(Gnn1000Error, FloatingPointError):
    """A solver's state became NaN or Inf."""


@dataclass
class SolverStats:
    """How one solve went; ``trace`` holds the ``stop_mode`` residual of every iterate."""

    solver: str
    iterations: int
    abs_residual: float
    rel_residual: float
    converged: bool
    stop_mode: str = "abs"
    trace: list[float] = field(default_factory=list)

    @property
    def residual(self) -> float:
        """The residual the tolerance was compared with."""
        return self.abs_residual if self.stop_mode == "abs" else self.rel_residual

    def as_dict(self) -> dict:
        return asdict(self)


def check_solve_args(solver: str, tol: float, max_iter: int, stop_mode: str) -> None:
    if stop_mode not in STOP_MODES:
        raise ConfigError(f"{solver}: stop_mode={stop_mode!r} is not supported; choose one of {', '.join(STOP_MODES)}.")
    check_number(solver, "tol", tol, low=0)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"{solver}: max_iter={max_iter!r} must be a positive integer.")
    if not tol >= 0:
        raise ConfigError(f"{solver}: tol={tol!r} must be a non-negative number.")


class Tracker:
    """Residual bookkeeping for one solve: the trace, the best iterate so far, and the finite check.

    ``observe(z, fz)`` is called once per evaluation of f at iterate z; it returns the residual in
    ``stop_mode`` and remembers z if it is the lowest seen, which ``result()`` hands back.
    """

    def __init__(self, solver: str, tol: float, max_iter: int, stop_mode: str):
        check_solve_args(solver, tol, max_iter, stop_mode)
        self.solver, self.tol, self.stop_mode = solver, float(tol), stop_mode
        self.iterations = 0
        self.trace: list[float] = []
        self.best_z: Tensor | None = None
        self.best = (float("inf"), float("inf"), float("inf"))  # (stop-mode, abs, rel)

    def observe(self, z: Tensor, fz: Tensor) -> float:
        self.iterations += 1
        if not torch.isfinite(fz).all():
            raise SolverDivergedError(
                f"{self.solver} solver: the state became NaN/Inf at iteration {self.iterations} "
                f"(last residual {self.trace[-1] if self.trace else float('nan'):.3g}). "
                f"Lower the learning rate, add gradient clipping, or use a damped solver."
            )
        abs_res = torch.linalg.vector_norm(fz - z).item()
        rel_res = abs_res / (torch.linalg.vector_norm(fz).item() + _EPS)
        res = abs_res if self.stop_mode == "abs" else rel_res
        self.trace.append(res)
        if res < self.best[0]:
            self.best = (res, abs_res, rel_res)
            self.best_z = z.clone()
        return res

    def converged(self) -> bool:
        return self.best[0] <= self.tol

    def result(self) -> tuple[Tensor, SolverStats]:
        return self.best_z, SolverStats(
            solver=self.solver, iterations=self.iterations, abs_residual=self.best[1],
            rel_residual=self.best[2], converged=self.converged(), stop_mode=self.stop_mode,
            trace=self.trace,
        )


class Solver:
    """Base of the built-in solvers; a third-party solver only needs a ``solve`` with this signature."""

    name = "solver"

    def solve(self, f: Callable[[Tensor], Tensor], z0: Tensor, tol: float = 1e-4, max_iter: int = 50,
              stop_mode: str = "abs") -> tuple[Tensor, SolverStats]:
        """Find z = f(z) from z0; return the lowest-residual iterate and how the solve went."""
        tracker = Tracker(self.name, tol, max_iter, stop_mode)
        with torch.no_grad():
            self._iterate(f, z0.detach(), tracker, max_iter)
        return tracker.result()

    def _iterate(self, f: Callable[[Tensor], Tensor], z0: Tensor, tracker: Tracker, max_iter: int) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({opts})"


def build_solver(solver) -> Solver:
    """A solver instance from a registry name, a registered class, or an instance."""
    obj = resolve("solvers", solver)
    if isinstance(obj, type):
        obj = obj()
    if not callable(getattr(obj, "solve", None)):
        raise ConfigError(
            f"solver {solver!r} resolved to {obj!r}, which has no solve(f, z0, tol, max_iter, stop_mode) method."
        )
    return obj
