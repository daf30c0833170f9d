"""The experiment loop's settings: a plain dataclass that checks its values (no gin here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gnn1000.errors import ConfigError, check_number, check_positive_ints
from gnn1000.precision import PRECISIONS


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
    precision: str = "32"  # '32', 'bf16' or '16' (autocast; '16' adds a gradient scaler)
    patience: int | None = None  # stop after this many epochs without a better validation score
    ema_decay: float | None = None  # score and keep an exponential moving average of the weights (per step)
    loggers: list[str] = field(default_factory=list)  # registered loggers besides metrics.jsonl, e.g. ['tensorboard', 'csv']
    callbacks: list[str] = field(default_factory=list)  # registered callbacks (gnn1000 list callbacks), run after the built-in ones
    # after training, one training step of each of these models (e.g. ['resgnn']) at the run's depth and
    # width, and of the run's own, each in a fresh process: gnn1000 train's memory comparison
    compare_step_memory: list[str] = field(default_factory=list)
    deterministic: bool = False  # torch.use_deterministic_algorithms while training (docs/experiments.md: its cost)
    compile: bool = False  # training steps call torch.compile of the model (gnn1000.compilation; bench speed --compile)

    def __post_init__(self):
        check_positive_ints("experiment", epochs=self.epochs, batch_size=self.batch_size)
        check_number("experiment", "graphs_per_epoch", self.graphs_per_epoch, low=1, integer=True, allow_none=True)
        check_number("experiment", "lr", self.lr, low=0, low_open=True)
        check_number("experiment", "weight_decay", self.weight_decay, low=0)
        check_number("experiment", "grad_clip", self.grad_clip, low=0, low_open=True, allow_none=True)
        check_number("experiment", "patience", self.patience, low=1, integer=True, allow_none=True)
        check_number("experiment", "ema_decay", self.ema_decay, low=0, high=1, low_open=True, high_open=True,
                     allow_none=True)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"experiment.precision={self.precision!r} is not a precision; use one of "
                              f"{', '.join(repr(p) for p in PRECISIONS)} (a quoted string in gin).")
        if isinstance(self.loggers, str) or not all(isinstance(n, str) for n in self.loggers):
            raise ConfigError(f"experiment.loggers={self.loggers!r} must be a list of registered logger "
                              f"names, e.g. ['tensorboard', 'csv'] (gnn1000 list loggers).")
        self.loggers = list(self.loggers)  # as summary.json writes it
        if isinstance(self.callbacks, str) or not all(isinstance(n, str) for n in self.callbacks):
            raise ConfigError(f"experiment.callbacks={self.callbacks!r} must be a list of registered callback "
                              f"names, e.g. ['my_callback'] (gnn1000 list callbacks).")
        self.callbacks = list(self.callbacks)
        if isinstance(self.compare_step_memory, str) or not all(isinstance(m, str) for m in self.compare_step_memory):
            raise ConfigError(f"experiment.compare_step_memory={self.compare_step_memory!r} must be a list of "
                              f"model names, e.g. ['resgnn'] (gnn1000.variants.VARIANTS; the CLI checks them).")
        self.compare_step_memory = list(self.compare_step_memory)
        for switch in ("deterministic", "compile"):
            if not isinstance(getattr(self, switch), bool):
                raise ConfigError(f"experiment.{switch}={getattr(self, switch)!r} must be True or False.")
        check_number("experiment", "seed", self.seed, low=0, high=2**32 - 1, integer=True)  # numpy's range
        for option in ("dataset", "architecture", "sampler", "device", "optimizer", "scheduler"):
            if not isinstance(getattr(self, option), str) and not callable(getattr(self, option)):
                raise ConfigError(f"experiment.{option}={getattr(self, option)!r} must be a registry name "
                                  f"(a quoted string in gin).")
