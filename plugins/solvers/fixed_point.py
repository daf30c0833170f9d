"""``fixed_point``: plain (optionally damped) fixed-point iteration, the baseline every solver beats."""

from __future__ import annotations

from gnn1000.errors import ConfigError, check_number
from gnn1000.registry import register

from gnn1000.nn.root_finding import Solver


@register("solvers", "fixed_point")
class FixedPoint(Solver):
    """z <- (1 - damping) z + damping f(z); converges when f is a contraction."""

    name = "fixed_point"

    def __init__(self, damping: float = 1.0):
        check_number("fixed_point", "damping", damping, low=0, high=1, low_open=True)
        if not 0.0 < damping <= 1.0:
            raise ConfigError(f"fixed_point.damping={damping!r} must be in (0, 1].")
        self.damping = float(damping)

    def _iterate(self, f, z0, tracker, max_iter):
        z = z0
        while True:
            fz = f(z)
            if tracker.observe(z, fz) <= tracker.tol or tracker.iterations >= max_iter:
                return
            z = fz if self.damping == 1.0 else z + self.damping * (fz - z)
