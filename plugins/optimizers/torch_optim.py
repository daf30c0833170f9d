"""torch.optim's optimizers behind one signature: ``opt(params, *, lr, weight_decay, ...)``.

``lr`` and ``weight_decay`` come from ``experiment.lr`` / ``experiment.weight_decay``; the rest are
each optimizer's own options (gin ``adam.betas``, ``sgd.momentum``...).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from gnn1000.errors import ConfigError, check_bools, check_number
from gnn1000.registry import register


def _check_adam(owner: str, betas, eps, amsgrad) -> None:
    """Adam's options where they enter, as every other option: torch would fail mid-build or not at all."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ConfigError(f"{owner}.betas={betas!r} is not allowed: it must be a pair (beta1, beta2), "
                          f"each a number in [0, 1), e.g. (0.9, 0.999).")
    for i, beta in enumerate(betas):
        check_number(owner, f"betas[{i}]", beta, low=0, high=1, high_open=True)
    check_number(owner, "eps", eps, low=0, low_open=True)
    check_bools(owner, amsgrad=amsgrad)


@register("optimizers", "adam")
def adam(params: Iterable, *, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8, amsgrad: bool = False) -> torch.optim.Optimizer:
    """Adam (the paper's optimizer); ``weight_decay`` is L2 added to the gradient."""
    _check_adam("adam", betas, eps, amsgrad)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, amsgrad=amsgrad)


@register("optimizers", "adamw")
def adamw(params: Iterable, *, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, amsgrad: bool = False) -> torch.optim.Optimizer:
    """AdamW: ``weight_decay`` decoupled from the gradient."""
    _check_adam("adamw", betas, eps, amsgrad)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, amsgrad=amsgrad)


@register("optimizers", "sgd")
def sgd(params: Iterable, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.0,
        nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD, with optional (Nesterov) momentum."""
    check_number("sgd", "momentum", momentum, low=0)
    check_bools("sgd", nesterov=nesterov)
    if nesterov and momentum == 0:
        raise ConfigError("sgd.nesterov=True needs sgd.momentum > 0 (Nesterov momentum with no momentum).")
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)
