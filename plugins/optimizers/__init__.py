"""Optimizers: ``factory(params, *, lr, weight_decay, ...) -> torch.optim.Optimizer``."""
