"""An experiment: a :class:`~gnn1000.trainer.Trainer` writing one run directory, with the callbacks
its settings ask for.

``Experiment(model, data, sampler, settings, run_dir)`` takes explicit objects and knows nothing of
gin: :func:`gnn1000.build.build_experiment` makes them from a gin config for ``gnn1000 train``, every
Ray Tune trial and every Ray Train worker, which run this same loop (they add a reporting callback).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from gnn1000 import checkpoint, logs, recorded
from gnn1000.callbacks import (Callback, EarlyStopping, EpochAwareModel, EpochCost, EpochFunction, Loggers,
                               NaNGuard, Progress, RunFiles, WeightAveraging)
from gnn1000.data import GraphTaskData, NodeTaskData
from gnn1000.errors import Gnn1000Error
from gnn1000.protocols import Sampler
from gnn1000.ranks import Ranks
from gnn1000.registry import resolve
from gnn1000.runners import GraphLevel, NodeLevel, check_graph_sampler  # noqa: F401  (their old home)
from gnn1000.rundir import RunDir, RunSession
from gnn1000.settings import ExperimentConfig
from gnn1000.trainer import Trainer, make_optimizer, make_scheduler, message_passing_depth, pick_device  # noqa: F401

logger = logging.getLogger(__name__)


def default_callbacks(settings: ExperimentConfig, run_files: RunFiles, log: Callable[[str], None],
                      progress: bool) -> list[Callback]:
    """What every run does besides the step loop, as ``settings`` ask: the NaN stop, the model's epoch
    hook, time and memory records, the run directory, loggers, progress; the weights' average
    (``ema_decay``) and early stopping (``patience``) when set."""
    run = run_files.run
    callbacks = [NaNGuard(run), EpochAwareModel(), EpochCost(), run_files,
                 Loggers([resolve("loggers", name) for name in settings.loggers], run.path),  # a typo fails here
                 Progress(log, show=progress)]
    if settings.ema_decay is not None:
        callbacks.append(WeightAveraging(settings.ema_decay))
    if settings.patience is not None:
        callbacks.append(EarlyStopping(settings.patience, log))
    return callbacks


class Experiment(Trainer):
    """One training run in ``run_dir``: a Trainer with the default callbacks and the run's own.

    Args:
        model: The model, ``model(x, edge_index, edge_attr, batch) -> logits``; when it is
            :class:`~gnn1000.protocols.EpochAware` the loop tells it each epoch and records its metrics.
        data: A :class:`~gnn1000.data.NodeTaskData` or :class:`~gnn1000.data.GraphTaskData`.
        sampler: For node-level data, what cuts the graph into batches (``sampler.batches(graph, train)``);
            None for graph-level data.
        settings: Epochs, learning rate, clipping, device... (:class:`~gnn1000.settings.ExperimentConfig`).
        run_dir: Where config, metrics, checkpoints and summary go.
        optimizer: Default: the registered ``settings.optimizer`` over the model's parameters.
        scheduler: Default: the registered ``settings.scheduler``; stepped once per epoch.
        config_text: What ``config.gin`` records (the configuration layer passes the operative gin config);
            empty: what :mod:`gnn1000.recorded` reads back from the objects, so the CLI can rebuild the run.
        callbacks: The run's own :class:`~gnn1000.callbacks.Callback` s (state with a ``state_key``
            travels in the checkpoints); default: the registered ``settings.callbacks``, built without arguments.
        on_epoch: ``on_epoch(record, last_checkpoint)`` after every epoch is on disk.
        log: Where the epoch lines go; default: the logger ``gnn1000.experiment`` at INFO (:mod:`gnn1000.logs`).
        config_source: The config file the run came from; summary.json's ``environment`` records the git
            commit of its repository (:mod:`gnn1000.reproducibility`).
        ranks: This process's place in a data-parallel run (:class:`~gnn1000.ranks.Ranks`, set up by
            ``gnn1000.tune.data_parallel``); default: the process group torch.distributed holds, if any.
            Every rank runs this loop on its share of each epoch's batches; only rank 0's run directory
            is kept, so the caller gives the other ranks a scratch one.

    Seed (``gnn1000.checkpoint.seed_everything``) before building the model for a reproducible run.
    """

    def __init__(self, model: torch.nn.Module, data: NodeTaskData | GraphTaskData, sampler: Sampler | None,
                 settings: ExperimentConfig, run_dir: Path | str, *,
                 optimizer: torch.optim.Optimizer | None = None,
                 scheduler: LRScheduler | ReduceLROnPlateau | None = None, config_text: str = "",
                 callbacks: Iterable[Callback] | None = None, progress: bool = True,
                 on_epoch: Callable[[dict, Path], None] | None = None,
                 log: Callable[[str], None] | None = None, ranks: Ranks | None = None,
                 config_source: Path | str | None = None):
        if log is None:  # the logger 'gnn1000.experiment' (gnn1000.logs: how to route or silence it)
            logs.ensure_default_handler()
            log = logger.info
        if not config_text:  # built in Python: config.gin records what was built, for the CLI
            settings, config_text = recorded.describe(model, data, sampler, settings, log)
        self.run = RunDir(Path(run_dir))
        self.log = log
        self.run_files = RunFiles(self.run, config_text, log, config_source)
        if callbacks is None:
            callbacks = [resolve("callbacks", name)() for name in settings.callbacks]
        extra = [EpochFunction(on_epoch, self.run.last)] if on_epoch is not None else []
        super().__init__(model, data, sampler, settings, optimizer=optimizer, scheduler=scheduler,
                         callbacks=[*default_callbacks(settings, self.run_files, log, progress), *callbacks, *extra],
                         progress=progress, ranks=ranks)

    @property
    def config_text(self) -> str:
        return self.run_files.config_text

    @property
    def averaged(self) -> torch.nn.Module | None:
        """The weights' moving average (``ema_decay``), or None."""
        return next((c.averaged for c in self.callbacks if isinstance(c, WeightAveraging)), None)

    def fit(self, resume: bool = False) -> dict:
        """Train to ``epochs`` (continuing from the last checkpoint if ``resume``); return the summary.
        The run directory is held (:class:`~gnn1000.rundir.RunSession`) for the fit, or longer where
        the caller holds it already."""
        with RunSession(self.run, new=not resume):
            if resume:
                self.run_files.resume(self)
            else:
                self.run_files.start()
            return super().fit()

    def load_weights(self, path: Path) -> None:
        """The weights a checkpoint scored: best.pt keeps them as its model; last.pt keeps the trained
        weights and, with ``ema_decay``, their average, which evaluation scores."""
        state = checkpoint.load(path, map_location=self.device)
        self.run.check_belongs(state, path)
        averaged = checkpoint.callback_state_of(state).get(WeightAveraging.state_key)
        if self.averaged is not None and averaged is not None:
            checkpoint.load_model(self.averaged, averaged, path)
        else:
            checkpoint.load_model(self.evaluated, state["model"], path)


__all__ = ["ExperimentConfig", "Experiment", "Trainer", "Callback", "RunDir", "pick_device", "Gnn1000Error"]
