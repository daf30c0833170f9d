"""The experiment loop's settings: a plain dataclass that checks its values (no gin here)."""

from __future__ import annotations

from dataclasses import dataclass

from gnn1000.errors import ConfigError, check_positive_ints


@dataclass
class ExperimentConfig:
    """What to train and how; in a gin config every field is a binding ``experiment.<field>``.

    ``dataset``, ``architecture``, ``sampler``, ``optimizer`` and ``scheduler`` are registry names
    (they record what the configuration layer built); the rest are the loop's own settings.
    """

    dataset: str = "synthetic-proteins"
    architecture: str = "resgnn"
    sampler: str = "full_batch"
    epochs: int = 100
    lr: float = 0.001
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    seed: int = 0
    device: str = "auto"
    batch_size: int = 32  # graphs per mini-batch, for graph-level datasets
    graphs_per_epoch: int | None = None  # train on this many random training graphs per epoch
    optimizer: str = "adam"  # a registered optimizer (gnn1000 list optimizers)
    scheduler: str = "none"  # a registered learning-rate schedule, stepped once per epoch

    def __post_init__(self):
        check_positive_ints("experiment", epochs=self.epochs, batch_size=self.batch_size)
        if self.graphs_per_epoch is not None and (not isinstance(self.graphs_per_epoch, int)
                                                  or self.graphs_per_epoch < 1):
            raise ConfigError(f"experiment.graphs_per_epoch={self.graphs_per_epoch!r} must be a "
                              f"positive integer, or None for every training graph.")
        if not self.lr > 0:
            raise ConfigError(f"experiment.lr={self.lr!r} must be positive.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"experiment.grad_clip={self.grad_clip!r} must be positive, or None to turn clipping off.")
