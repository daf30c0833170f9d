"""torch.optim.lr_scheduler's schedules behind one signature, stepped once per epoch.

``factory(optimizer, *, epochs, mode)``: ``epochs`` is ``experiment.epochs``; ``mode`` is 'max' when
the task's metric is better higher (for ``plateau``). The experiment loop steps the result after
each epoch, with the epoch's validation score when it is a ``ReduceLROnPlateau``.
"""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler

from gnn1000.errors import ConfigError, check_number, check_positive_ints
from gnn1000.registry import register


@register("schedulers", "none")
def constant(optimizer: torch.optim.Optimizer, *, epochs: int, mode: str = "max") -> None:
    """A constant learning rate: no scheduler."""
    return None


@register("schedulers", "cosine", fitted_to_epochs=True)  # its decay spans experiment.epochs: fixed on resume
def cosine(optimizer: torch.optim.Optimizer, *, epochs: int, mode: str = "max", warmup_epochs: int = 0,
           min_lr: float = 0.0) -> lr_scheduler.LRScheduler:
    """Linear warm-up over ``warmup_epochs`` from 1% of the rate, then cosine decay to ``min_lr``."""
    check_number("cosine", "min_lr", min_lr, low=0)
    if not isinstance(warmup_epochs, int) or not 0 <= warmup_epochs < epochs:
        raise ConfigError(f"cosine.warmup_epochs={warmup_epochs!r} must be an integer in [0, experiment.epochs={epochs}).")
    decay = lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs - warmup_epochs, eta_min=min_lr)
    if warmup_epochs == 0:
        return decay
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup_epochs)
    return lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[warmup_epochs])


@register("schedulers", "step")
def step(optimizer: torch.optim.Optimizer, *, epochs: int, mode: str = "max", step_size: int = 30,
         gamma: float = 0.1) -> lr_scheduler.LRScheduler:
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""
    check_positive_ints("step", step_size=step_size)
    check_number("step", "gamma", gamma, low=0, low_open=True)  # <= 0 would zero or negate the rate
    return lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@register("schedulers", "plateau")
def plateau(optimizer: torch.optim.Optimizer, *, epochs: int, mode: str = "max", factor: float = 0.5,
            patience: int = 10, min_lr: float = 0.0) -> lr_scheduler.ReduceLROnPlateau:
    """Multiply the rate by ``factor`` when the validation score stalls for ``patience`` epochs."""
    check_number("plateau", "factor", factor, low=0, high=1, low_open=True, high_open=True)
    check_number("plateau", "patience", patience, low=0, integer=True)
    check_number("plateau", "min_lr", min_lr, low=0)
    return lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr)
