"""``anderson``: Anderson acceleration (type II, Walker and Ni 2011) over the last ``m`` iterates."""

from __future__ import annotations

import torch

from gnn1000.errors import ConfigError, check_number
from gnn1000.registry import register

from gnn1000.nn.root_finding import Solver


@register("solvers", "anderson")
class Anderson(Solver):
    """Next iterate = the mix of the last ``m`` f-values whose residuals cancel best.

    ``lam`` regularises the small least-squares system relative to the mean squared residual in the
    history (so it means the same at every scale); ``beta`` mixes f-values (1) with iterates (0).
    """

    name = "anderson"

    def __init__(self, m: int = 5, lam: float = 1e-4, beta: float = 1.0):
        check_number("anderson", "lam", lam)  # a number at all; its range is checked below
        check_number("anderson", "beta", beta)
        if not isinstance(m, int) or m < 1:
            raise ConfigError(f"anderson.m={m!r} must be a positive integer (the history length).")
        if not lam > 0:
            raise ConfigError(f"anderson.lam={lam!r} must be positive: it keeps the mixing system solvable "
                              f"when the history holds repeated iterates (1e-4 is a good start).")
        if not 0.0 < beta <= 1.0:
            raise ConfigError(f"anderson.beta={beta!r} must be in (0, 1].")
        self.m, self.lam, self.beta = m, float(lam), float(beta)

    def _iterate(self, f, z0, tracker, max_iter):
        shape = z0.shape
        x = z0.reshape(-1)
        hist = min(self.m, max_iter)
        X = x.new_zeros(hist, x.numel())
        F = x.new_zeros(hist, x.numel())
        for k in range(max_iter):
            fx = f(x.view(shape)).reshape(-1)
            if tracker.observe(x.view(shape), fx.view(shape)) <= tracker.tol or k + 1 >= max_iter:
                return
            X[k % hist], F[k % hist] = x, fx
            n = min(k + 1, hist)
            alpha = self._weights(F[:n] - X[:n])
            x = self.beta * (alpha @ F[:n]) + (1 - self.beta) * (alpha @ X[:n])

    def _weights(self, G: torch.Tensor) -> torch.Tensor:
        """argmin ||alpha G|| subject to sum(alpha) = 1, in float64 (the system is tiny)."""
        H = (G @ G.T).double()
        n = H.size(0)
        H = H + self.lam * H.diagonal().mean().clamp_min(1e-300) * torch.eye(n, dtype=H.dtype, device=H.device)
        a = torch.linalg.solve(H, torch.ones(n, 1, dtype=H.dtype, device=H.device)).squeeze(1)
        return (a / a.sum()).to(G.dtype)
