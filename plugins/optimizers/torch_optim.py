"""torch.optim's optimizers behind one signature: ``opt(params, *, lr, weight_decay, ...)``.

``lr`` and ``weight_decay`` come from ``experiment.lr`` / ``experiment.weight_decay``; the rest are
each optimizer's own options (gin ``adam.betas``, ``sgd.momentum``...).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from gnn1000.registry import register


@register("optimizers", "adam")
def adam(params: Iterable, *, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-8, amsgrad: bool = False) -> torch.optim.Optimizer:
    """Adam (the paper's optimizer); ``weight_decay`` is L2 added to the gradient."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, amsgrad=amsgrad)


@register("optimizers", "adamw")
def adamw(params: Iterable, *, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, amsgrad: bool = False) -> torch.optim.Optimizer:
    """AdamW: ``weight_decay`` decoupled from the gradient."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps, amsgrad=amsgrad)


@register("optimizers", "sgd")
def sgd(params: Iterable, *, lr: float, weight_decay: float = 0.0, momentum: float = 0.0,
        nesterov: bool = False) -> torch.optim.Optimizer:
    """SGD, with optional (Nesterov) momentum."""
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov)
