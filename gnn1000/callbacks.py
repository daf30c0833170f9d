"""Callbacks: everything a training run does besides the step loop, one job per class.

The :class:`~gnn1000.trainer.Trainer` calls each callback's hooks at fixed points of a fit, in the
order of their ``order`` (stable: callbacks of one order run in the order they were given).
A callback keeps its own state; when it names a ``state_key`` its :meth:`Callback.state_dict`
travels in every checkpoint and :meth:`Callback.load_state_dict` gets it back on resume, so a
kill loses none of it: the state is taken when the run directory commits the epoch (``order``
``COMMIT``), so what a callback of a lower order (the default) changed in that epoch is in it. Third-party callbacks are registered under the kind ``callbacks``
(entry-point group ``gnn1000.callbacks``) and chosen with ``experiment.callbacks = ['name']``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from gnn1000 import checkpoint, guard, memory, reproducibility, resume, safefs
from gnn1000.errors import ConfigError
from gnn1000.protocols import EpochAware

if TYPE_CHECKING:
    from gnn1000.rundir import RunDir

# ``order`` of the built-in callbacks: what checks or amends a step or record runs first, the run
# directory commits the epoch after every callback that changes state, reporters read it after that.
FIRST, AMEND, DEFAULT, COMMIT, SHOW, REPORT = -200, -100, 0, 100, 150, 200


class Callback:
    """A no-op at every hook; subclasses override the hooks they need. Every hook gets the
    :class:`~gnn1000.trainer.Trainer` first (its model, optimizer, epoch, best and history).

    A callback raising in a hook stops the fit (the exception goes through :meth:`on_exception`
    of every callback). ``on_exception`` may raise another exception instead, which the fit then
    raises (the NaN stop turns a float32 overflow into its own message that way).
    """

    order: int = DEFAULT
    state_key: str | None = None  # where this callback's state_dict() is kept in a checkpoint; None: nowhere

    def setup(self, trainer) -> None:
        """Once, when the trainer is built (the model is on its device)."""

    def on_fit_start(self, trainer) -> None:
        """Before the first epoch of this fit (a resumed trainer already holds the restored state)."""

    def on_epoch_start(self, trainer) -> None:
        """Before epoch ``trainer.epoch`` (1-based) trains."""

    def on_after_optimizer_step(self, trainer, step: int, loss: torch.Tensor, norm: torch.Tensor) -> None:
        """After each optimizer step: the step's loss and gradient norm (0 for a step a float16 scaler skipped)."""

    def on_evaluate_end(self, trainer, predictions: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """After evaluation predicted every split, before the predictions are scored: split -> (logits, labels)."""

    def on_epoch_end(self, trainer, record: dict) -> None:
        """After an epoch: ``record`` is its metrics (a callback may add entries) and already in ``trainer.history``."""

    def on_fit_end(self, trainer, summary: dict) -> None:
        """After the last epoch, with the run's summary (a callback may add entries)."""

    def on_exception(self, trainer, exc: BaseException) -> None:
        """The fit failed with ``exc``: release what the callback holds."""

    def evaluated_model(self) -> torch.nn.Module | None:
        """A model evaluation scores instead of the trained one (the weights' moving average); None: the trained one."""
        return None

    def state_dict(self) -> Any:
        """What this callback needs to continue after a resume (saved under ``state_key``)."""
        return None

    def load_state_dict(self, state: Any) -> None:
        """Continue from what :meth:`state_dict` returned; not called for a checkpoint without it."""


class NaNGuard(Callback):
    """The NaN stop (:mod:`gnn1000.guard`): every step and every prediction checked before anything
    else uses it; the error names a finite checkpoint of ``run`` and how to go on."""

    order = FIRST

    def __init__(self, run: RunDir):
        self.run = run

    def on_after_optimizer_step(self, trainer, step, loss, norm):
        guard.check_step(self.run, trainer.model, loss, norm, trainer.epoch, step, trainer.cfg.lr)

    def on_evaluate_end(self, trainer, predictions):
        for split, (logits, _) in predictions.items():  # on every rank: all stop
            guard.check_outputs(self.run, split, logits, trainer.epoch, trainer.cfg.lr)

    def on_exception(self, trainer, exc):
        if isinstance(exc, guard.UpdateOverflow):
            raise guard.stop(self.run, "optimizer update", "too large for float32", trainer.epoch, exc.step,
                             trainer.cfg.lr)


class WeightAveraging(Callback):
    """Polyak averaging: full-batch runs on small graphs (Cora's 140 labels) swing several points of
    validation accuracy between epochs; the exponential moving average of the weights (updated after
    every step) is scored and kept instead. Buffers (BatchNorm statistics, the DEQ's epoch) are
    copied from the trained model, not averaged."""

    order = AMEND
    state_key = "averaged"  # the key checkpoints had before callbacks: evaluate and older runs read it

    def __init__(self, decay: float):
        self.decay = decay
        self.averaged: AveragedModel | None = None

    def setup(self, trainer):
        self.averaged = AveragedModel(trainer.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay))

    def on_after_optimizer_step(self, trainer, step, loss, norm):
        self.averaged.update_parameters(trainer.model)  # after the NaN guard: never averages a non-finite step

    def evaluated_model(self):
        return self.averaged.module

    def state_dict(self):
        return self.averaged.state_dict()

    def load_state_dict(self, state):
        self.averaged.load_state_dict(state)  # the model's own weights were checked against it just before


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without a better validation score. It reads the best record
    (which the checkpoint carries), so a resumed run knows it too and keeps no state of its own."""

    def __init__(self, patience: int, log):
        self.patience = patience
        self.log = log

    def _check(self, trainer) -> None:
        if trainer.best is not None and trainer.epoch - trainer.best["epoch"] >= self.patience:
            trainer.should_stop = True

    def on_fit_start(self, trainer):
        self._check(trainer)

    def on_epoch_end(self, trainer, record):
        self._check(trainer)

    def on_fit_end(self, trainer, summary):
        if trainer.should_stop:
            self.log(f"stopped early after epoch {trainer.epoch}: no better valid {trainer.metric} for "
                     f"{self.patience} epochs (best at epoch {trainer.best['epoch']})")


class EpochAwareModel(Callback):
    """Tells an :class:`~gnn1000.protocols.EpochAware` model each epoch (DEQ's warm-up) and puts the
    metrics it gathered (solver statistics) into the epoch's record; other models are left alone."""

    order = AMEND

    def on_epoch_start(self, trainer):
        if isinstance(trainer.model, EpochAware):
            trainer.model.set_epoch(trainer.epoch)

    def on_epoch_end(self, trainer, record):
        if isinstance(trainer.model, EpochAware):
            record.update(trainer.model.pop_metrics())


class EpochCost(Callback):
    """``seconds`` and ``step_memory_mb`` (the peak above what was held before the epoch) of every epoch."""

    order = AMEND

    def __init__(self):
        self.before = self.start = 0.0

    def on_epoch_start(self, trainer):
        self.before = memory.current_mb(trainer.device)
        memory.reset_peak(trainer.device)
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer, record):
        record["seconds"] = time.perf_counter() - self.start
        record["step_memory_mb"] = memory.used_mb(trainer.device, self.before)


class Progress(Callback):
    """The epoch bar (off with ``progress=False``; on a terminal only otherwise) and one log line per epoch."""

    order = SHOW

    def __init__(self, log, show: bool = True):
        self.log = log
        self.show = show
        self.bar = None

    def on_fit_start(self, trainer):
        self.bar = tqdm(total=trainer.cfg.epochs, initial=trainer.epoch, desc="training", unit="epoch",
                        dynamic_ncols=True, disable=None if self.show else True)

    def on_epoch_end(self, trainer, record):
        m = trainer.metric
        self.bar.update()
        self.bar.set_postfix({"loss": f"{record['loss']:.4f}", f"valid {m}": f"{record[f'valid_{m}']:.4f}"},
                             refresh=False)
        cost = (f" | {record['seconds']:.1f}s | {memory.LABEL[trainer.device.type]} {record['step_memory_mb']:.0f} MB"
                if "seconds" in record else "")
        self.log(f"epoch {trainer.epoch:>4}/{trainer.cfg.epochs} | loss {record['loss']:.4f} | "
                 f"train {m} {record[f'train_{m}']:.4f} | valid {m} {record[f'valid_{m}']:.4f} | "
                 f"test {m} {record[f'test_{m}']:.4f}{cost}")

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_fit_end(self, trainer, summary):
        self._close()

    def on_exception(self, trainer, exc):
        self._close()


class Loggers(Callback):
    """The registered loggers (``experiment.loggers``): ``Logger(run_path, history)`` made when the
    fit starts (so a resumed run's logger sees what it already did), ``log(record)`` every epoch."""

    order = SHOW

    def __init__(self, classes: list, run_path):
        self.classes = classes
        self.run_path = run_path
        self.loggers: list = []

    def on_fit_start(self, trainer):
        self.loggers = []
        for logger in self.classes:
            self.loggers.append(logger(self.run_path, trainer.history))

    def on_epoch_end(self, trainer, record):
        for logger in self.loggers:
            logger.log(record)

    def _close(self) -> None:
        for logger in self.loggers:
            logger.close()
        self.loggers = []

    def on_fit_end(self, trainer, summary):
        self._close()

    def on_exception(self, trainer, exc):
        self._close()


class EpochFunction(Callback):
    """``fn(record, last_checkpoint)`` after every epoch is on disk (``Experiment(on_epoch=...)``)."""

    order = REPORT

    def __init__(self, fn, last):
        self.fn = fn
        self.last = last

    def on_epoch_end(self, trainer, record):
        self.fn(record, self.last)


class RunFiles(Callback):
    """The run directory's records: ``config.gin`` and ``run-id`` when a run starts, after every epoch
    ``last.pt`` (the commit: weights, optimizer, RNG, records and every callback's state), ``best.pt``
    and a line of ``metrics.jsonl``, and ``summary.json`` at the end. :meth:`resume` continues a run
    from its newest intact checkpoint. Locking the directory is :class:`gnn1000.rundir.RunSession`'s."""

    order = COMMIT

    def __init__(self, run: RunDir, config_text: str, log, config_source=None):
        self.run = run
        self.config_text = config_text
        self.log = log
        self.config_source = config_source
        self.run_id: str | None = None

    def write_config(self) -> None:
        safefs.write_atomic(self.run.config,
                            (resume.config_header(self.run.read_resumes()) + self.config_text).encode())

    def start(self) -> None:
        """A new run: its identity, operative config and an empty metrics.jsonl."""
        self.run_id = self.run.new_identity()
        self.write_config()
        self.run.write_metrics([])

    def resume(self, trainer) -> None:
        """Continue from the newest intact checkpoint with the settings bound now (checked by
        :func:`gnn1000.resume.check_bindings`), rebuild metrics.jsonl from the checkpoint's history,
        and record what changed."""
        try:
            state, used = checkpoint.load_latest(self.run.last, log=self.log)
        except FileNotFoundError:
            raise ConfigError(f"Cannot resume {self.run.path}: it has no checkpoint yet ({self.run.last}); "
                              f"no epoch finished. Start it again with --overwrite.") from None
        self.run.check_belongs(state, used)
        self.run_id = self.run.identity()
        resume.check_epochs(trainer.cfg.epochs, state["epoch"], self.run.path)
        trainer.restore(state, source=used)
        self._reconcile_best(trainer)
        resume.apply_to_optimizer(trainer.optimizer, trainer.scheduler, trainer.cfg.lr, trainer.cfg.weight_decay)
        on_disk = self.run.read_metrics()  # warns about a torn last line before it is rewritten
        if not trainer.history:  # a checkpoint from before records travelled with it
            trainer.history = [r for r in on_disk if r["epoch"] <= trainer.epoch]
        self.run.write_metrics(trainer.history)
        changes = resume.changed(self.run.config.read_text(), self.config_text, str(self.run.config))
        if changes:
            self.run.record_resume(resume.resume_entry(trainer.epoch, changes, used.name))
        self.write_config()  # config.gin says what the run does from here on
        self.log(f"resumed {self.run.path} after epoch {trainer.epoch}"
                 + (f"; changed: {', '.join(f'{k} {a!r} -> {b!r}' for k, (a, b) in changes.items())}"
                    if changes else ""))

    def on_epoch_end(self, trainer, record):
        checkpoint.save(self.run.last, {**trainer.state_dict(), "run_id": self.run_id})  # the record is committed here...
        if trainer.best is record:  # ...before best.pt: a kill between the two leaves a best.pt the resume rebuilds
            self.save_best(trainer)
        self.run.append_metrics(record)  # ...and mirrored here; resume rebuilds it from the checkpoint

    def save_best(self, trainer) -> None:
        checkpoint.save(self.run.best, {"epoch": trainer.epoch, "run_id": self.run_id,
                                        "model": trainer.evaluated.state_dict()}, keep_previous=False)

    def _reconcile_best(self, trainer) -> None:
        """After a restore: when the records' best epoch is the restored one but best.pt is not from it
        (a kill after last.pt, before best.pt), best.pt is rewritten from the restored weights."""
        if trainer.best is None or trainer.best["epoch"] != trainer.epoch:
            return
        if checkpoint.recorded_epoch(self.run.best) != trainer.epoch:
            self.save_best(trainer)
            self.log(f"best.pt did not hold epoch {trainer.epoch}, the best one the records name; rewritten "
                     f"from the checkpoint of that epoch")

    def on_fit_end(self, trainer, summary):
        summary["environment"] = reproducibility.environment(self.config_source)
        # default=repr: resolve() lets a config hold a class or factory instead of a registry name
        safefs.write_atomic(self.run.summary, (json.dumps(summary, indent=2, default=repr) + "\n").encode())
