"""``broyden``: Broyden's good method with a low-rank inverse-Jacobian, the paper's DEQ solver.

The whole state (every node of the graph) is one vector. The inverse Jacobian of g(z) = f(z) - z
starts at -I and gains one rank-one term per iteration, so memory grows with iterations (2 vectors
each), never with depth; ``memory`` caps the terms kept (when full, the approximation restarts
from -I).
"""

from __future__ import annotations

from gnn1000.errors import ConfigError
from gnn1000.registry import register

from gnn1000.nn.root_finding import Solver


@register("solvers", "broyden")
class Broyden(Solver):
    """Quasi-Newton root finding on g(z) = f(z) - z; ``memory`` = rank-one terms kept (None: all)."""

    name = "broyden"

    def __init__(self, memory: int | None = None):
        if memory is not None and (not isinstance(memory, int) or memory < 1):
            raise ConfigError(f"broyden.memory={memory!r} must be a positive integer, or None to keep every update.")
        self.memory = memory

    def _iterate(self, f, z0, tracker, max_iter):
        shape = z0.shape
        x = z0.reshape(-1)
        fx = f(x.view(shape)).reshape(-1)
        if tracker.observe(x.view(shape), fx.view(shape)) <= tracker.tol:
            return
        gx = fx - x
        rank = min(self.memory or max_iter, max_iter)
        U = x.new_zeros(rank, x.numel())  # B = -I + sum_i U[i] V[i]^T approximates J_g^{-1}
        V = x.new_zeros(rank, x.numel())
        stored = 0

        def matvec(v):  # B v
            return -v + U[:stored].T @ (V[:stored] @ v)

        def rmatvec(v):  # v^T B
            return -v + V[:stored].T @ (U[:stored] @ v)

        update = gx  # -B g with B = -I: the first step is a plain fixed-point step
        while tracker.iterations < max_iter:
            x_new = x + update
            fx_new = f(x_new.view(shape)).reshape(-1)
            if tracker.observe(x_new.view(shape), fx_new.view(shape)) <= tracker.tol:
                return
            gx_new = fx_new - x_new
            dx, dg = x_new - x, gx_new - gx
            if stored == rank:  # restart from B = -I: overwriting only the oldest term can diverge
                stored = 0
            vT = rmatvec(dx)
            denom = vT @ dg
            if denom.abs() > 1e-30:  # a zero denominator means no new curvature: keep B
                u = (dx - matvec(dg)) / denom
                U[stored], V[stored] = u, vT
                stored += 1
            x, gx = x_new, gx_new
            update = -matvec(gx)
