"""The step loop: train an epoch, evaluate, count epochs; everything else is a callback.

``Trainer(model, data, sampler, settings, callbacks=[...])`` owns the optimizer steps (with the
precision's autocast and gradient scaler), the evaluation, the epoch counter, the scheduler, the
best and every epoch's record, and, under data parallelism, DDP's even steps over the ranks. What a
run does around that (checkpoints and the run directory, the NaN stop, the weights' average, early
stopping, progress, loggers, Ray's reports) are :class:`~gnn1000.callbacks.Callback` s;
:class:`gnn1000.experiment.Experiment` is a Trainer with the default ones and a run directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from functools import partial

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from gnn1000 import checkpoint, compilation, guard, logs, memory, precision, reproducibility
from gnn1000.callbacks import Callback
from gnn1000.data import GraphTaskData, NodeTaskData, depth_ceiling
from gnn1000.errors import ConfigError
from gnn1000.protocols import Sampler
from gnn1000.ranks import Ranks
from gnn1000.registry import resolve
from gnn1000.runners import bar, make_runner
from gnn1000.settings import ExperimentConfig

def pick_device(name: str) -> torch.device:
    """'auto' takes CUDA when present; anything else must name a device this machine has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"experiment.device={name!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"experiment.device={name!r} but CUDA is not available here; use 'auto' or 'cpu'.")
    return device


def make_optimizer(factory, model: torch.nn.Module, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """An optimizer from a registered factory (or gin's reference to one) over ``model``'s parameters."""
    return factory(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(factory, optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, task):
    """A learning-rate schedule from a registered factory (or gin's reference to one), or None."""
    return factory(optimizer, epochs=cfg.epochs, mode=task.mode)


def message_passing_depth(model: torch.nn.Module) -> int | None:
    """How many hops a model sees: its ``hops`` where it says (RevGNN: layers x groups; None for an
    equilibrium model, whose receptive field is unbounded), else its ``num_layers``."""
    return model.hops if hasattr(model, "hops") else getattr(model, "num_layers", None)


class Trainer:
    """The step loop over ``model`` and ``data``, with ``callbacks`` at its hooks.

    Args:
        model: ``model(x, edge_index, edge_attr, batch) -> logits``.
        data: A :class:`~gnn1000.data.NodeTaskData` or :class:`~gnn1000.data.GraphTaskData`.
        sampler: For node-level data, what cuts the graph into batches (:class:`~gnn1000.protocols.Sampler`);
            None for graph-level data (:mod:`gnn1000.runners`).
        settings: Epochs, learning rate, clipping, precision, device... (:class:`~gnn1000.settings.ExperimentConfig`).
        optimizer: Default: the registered ``settings.optimizer`` over the model's parameters.
        scheduler: Default: the registered ``settings.scheduler``; stepped once per epoch.
        callbacks: :class:`~gnn1000.callbacks.Callback` s, run in the order of their ``order``.
        progress: Show the step bars (on a terminal); False: never.
        ranks: This process's place in a data-parallel run (:class:`~gnn1000.ranks.Ranks`); default: the
            process group torch.distributed holds, if any. Every rank runs this loop on its share of
            each epoch's batches.
    """

    def __init__(self, model: torch.nn.Module, data: NodeTaskData | GraphTaskData, sampler: Sampler | None,
                 settings: ExperimentConfig, *, optimizer: torch.optim.Optimizer | None = None,
                 scheduler: LRScheduler | ReduceLROnPlateau | None = None, callbacks: Iterable[Callback] = (),
                 progress: bool = True, ranks: Ranks | None = None):
        self.cfg = settings
        self.ranks = ranks if ranks is not None else Ranks.current()  # the process group, if there is one
        self.progress = progress
        self.device = pick_device(self.cfg.device)
        self.data = data
        self.task = data.task
        self.metric = self.task.metric
        self.runner = make_runner(data, sampler, self.cfg, self.device, self.ranks)
        self.runner.quiet = None if progress else True
        self.model = model.to(self.device)
        self.trained = self._data_parallel(self.model)  # what training steps call; self.model is saved
        self.trained = compilation.compiled(self.trained, self.cfg.compile)  # experiment.compile (gnn1000.compilation)
        self.optimizer = optimizer if optimizer is not None else make_optimizer(resolve("optimizers", self.cfg.optimizer), self.model, self.cfg)
        self.scheduler = scheduler if scheduler is not None else make_scheduler(
            resolve("schedulers", self.cfg.scheduler), self.optimizer, self.cfg, self.task)
        self.scaler = precision.scaler(self.device, self.cfg.precision)
        self.epoch = 0
        self.best: dict | None = None
        self.best_is_stand_in = False  # the best record so far came from a stand-in model (see run_epoch)
        self.history: list[dict] = []
        self.should_stop = False  # a callback asks the fit to end after this epoch (early stopping)
        self.callbacks = sorted(callbacks, key=lambda callback: callback.order)
        keys = [c.state_key for c in self.callbacks if c.state_key is not None]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"Two callbacks keep their state under one key ({', '.join(keys)}); "
                              f"give each callback class its own state_key.")
        for callback in self.callbacks:
            callback.setup(self)

    def _data_parallel(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model in DDP when several ranks train it (gradients averaged in backward), else itself."""
        if not self.ranks.parallel:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # static_graph: parameters an operator leaves unused (RevGNN's edge encoder under gcn) are found
        # once, in the first step, instead of find_unused_parameters' search in every step; it also
        # lets reentrant checkpointing and the reversible stack's own backward run under DDP.
        cuda = self.device.type == "cuda"
        index = self.device.index if self.device.index is not None or not cuda else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index] if cuda else None, static_graph=True)

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def _same_draws(self) -> None:
        """Every rank continues from rank 0's random state, so all draw the same partitions and
        orders and each takes its share of one draw (dropout had consumed different amounts)."""
        if self.ranks.parallel:
            torch.set_rng_state(self.ranks.from_main(torch.get_rng_state()))

    @property
    def evaluated(self) -> torch.nn.Module:
        """What evaluation scores and the best checkpoint keeps: a callback's model (the weights'
        moving average) where one offers it, else the trained model."""
        return next((m for m in (c.evaluated_model() for c in self.callbacks) if m is not None), self.model)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- one epoch -----------------------------------------------------------------------------

    def _forward(self, batch, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Logits in float32 whatever ``precision`` the model computed in (losses and scores want it)."""
        model = model if model is not None else self.model  # not 'model or': a compiled model has no truth value
        with precision.autocast(self.device, self.cfg.precision):
            out = model(batch.x, batch.edge_index, batch.edge_attr, getattr(batch, "batch", None))
        return out.float()

    def _steps(self):
        """(batch, mask, weight, rows) per optimizer step, the same number of steps on every rank.

        ``weight`` scales this rank's mean loss so that DDP's average over ranks is the gradient of
        the mean loss over the union of the ranks' rows, as one process stepping on them would get:
        world * n_rank / n_all. A rank out of batches (uneven shares) steps on its last batch with
        weight 0, as DDP needs every rank in every gradient all-reduce.
        """
        batches, last = iter(self.runner.train_batches()), None
        while True:
            item = next(batches, None)
            rows = int(item[1].sum()) if item is not None else 0
            total_rows, have = self.ranks.sum(torch.tensor([float(rows), float(item is not None)])).tolist()
            if not have:
                return
            if not total_rows:
                continue  # no rank has a training row in this step: every rank skips it
            if rows:
                last = item
                yield item[0], item[1], self.ranks.world * rows / total_rows, rows
            elif last is None:
                raise ConfigError(f"Sampler {self.cfg.sampler!r} gave rank {self.ranks.rank} of {self.ranks.world} "
                                  f"nothing to train on in the first step of epoch {self.epoch}: an epoch needs at "
                                  f"least as many batches as there are workers. Use fewer --workers or more parts.")
            else:
                yield last[0], last[1], 0.0, 0

    def train_epoch(self) -> float:
        """One epoch of optimizer steps; the mean training loss over every rank's rows."""
        self.model.train()
        self._same_draws()
        total, count = 0.0, 0
        steps = bar(self._steps(), self.runner.num_batches(True), f"epoch {self.epoch}",
                    disable=None if self.progress else True)
        for step, (batch, mask, weight, n) in enumerate(steps):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.task.loss(self._forward(batch, self.trained)[mask], batch.y[mask])
            self.scaler.scale(loss * weight if self.ranks.parallel else loss).backward()
            self.scaler.unscale_(self.optimizer)  # clipping sees the true gradients
            norm = guard.grad_norm(self.model.parameters(), self.cfg.grad_clip)
            guard.optimizer_step(self.optimizer, step, self.scaler)
            self.scaler.update()
            if self.scaler.is_enabled() and not torch.isfinite(norm):
                norm = torch.zeros(())  # float16 overflow: the scaler skipped this step and lowered its scale
            self._call("on_after_optimizer_step", step, loss, norm)
            total += loss.item() * n
            count += n
            if count:
                steps.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        total, count = self.ranks.sum(torch.tensor([total, float(count)], dtype=torch.float64)).tolist()
        if count == 0:
            raise ConfigError(f"Sampler {self.cfg.sampler!r} yielded nothing to train on in epoch {self.epoch}.")
        return total / count

    @torch.no_grad()
    def predict(self) -> torch.Tensor:
        """Logits for every node (averaged over every batch and view the sampler puts it in), or
        for every graph of a graph-level dataset."""
        self.evaluated.eval()
        self._same_draws()
        return self.runner.predict(partial(self._forward, model=self.evaluated))

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Every split's score; under data parallelism the ranks predict their shares, every rank
        holds the gathered predictions, and rank 0 scores them for all."""
        self.evaluated.eval()
        self._same_draws()
        predictions = self.runner.split_predictions(partial(self._forward, model=self.evaluated))
        self._call("on_evaluate_end", predictions)
        scores = {}
        if self.ranks.is_main:
            scores = {f"{split}_{self.metric}": self.task.score(logits, y) for split, (logits, y) in predictions.items()}
        return self.ranks.from_main(scores)

    def _is_better(self, record: dict, stand_in: bool) -> bool:
        if self.best is None or (self.best_is_stand_in and not stand_in):
            return True
        if stand_in and not self.best_is_stand_in:
            return False
        key = f"valid_{self.metric}"
        if self.task.higher_is_better:
            return record[key] > self.best[key]
        return record[key] < self.best[key]

    def _step_scheduler(self, record: dict) -> None:
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(record[f"valid_{self.metric}"])
        elif self.scheduler is not None:
            self.scheduler.step()

    def run_epoch(self) -> dict:
        """Train and evaluate epoch ``epoch``; its record (also the best, if it is) joins the history."""
        loss = self.train_epoch()
        record = {"epoch": self.epoch, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"], **self.evaluate()}
        self._step_scheduler(record)
        # A model that is still warming up (DEQ's unrolled stand-in) is not the model being trained:
        # once the real one has run an epoch, only its epochs can be the best.
        stand_in = bool(getattr(self.model, "warming_up", False))
        if self._is_better(record, stand_in):
            self.best, self.best_is_stand_in = record, stand_in
        self.history.append(record)
        return record

    # -- the fit ------------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train from epoch ``epoch`` to ``epochs`` (or until a callback sets ``should_stop``); the summary."""
        # log lines above the progress bars, not through them; the deterministic switch for this fit only
        with logs.tqdm_safe(), reproducibility.deterministic(self.cfg.deterministic, self.device):
            try:
                self._call("on_fit_start")
                while self.epoch < self.cfg.epochs and not self.should_stop:
                    self.epoch += 1
                    self._call("on_epoch_start")
                    self._call("on_epoch_end", self.run_epoch())
            except BaseException as exc:
                self._failed(exc)
                raise
            summary = self.summary()
            self._call("on_fit_end", summary)
        return summary

    def _failed(self, exc: BaseException) -> None:
        """Every callback hears of ``exc``; the first that raises another exception has it raised instead."""
        replacement = None
        for callback in self.callbacks:
            try:
                callback.on_exception(self, exc)
            except BaseException as other:  # noqa: BLE001  raised below, after every callback was told
                replacement = replacement or other
        if replacement is not None:
            raise replacement from None

    def state_dict(self) -> dict:
        """What a checkpoint keeps to continue this fit: weights, optimizer, schedule, scaler, RNG,
        records, and the state of each callback with a ``state_key`` (:meth:`restore` reads it back)."""
        state = {"epoch": self.epoch, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "rng": checkpoint.rng_state(),
                 "best": self.best, "best_is_stand_in": self.best_is_stand_in,
                 "history": self.history,  # records committed with the weights
                 "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                 "scaler": self.scaler.state_dict()}
        return {**state, **checkpoint.callback_states(
            {c.state_key: c.state_dict() for c in self.callbacks if c.state_key is not None})}

    def restore(self, state: dict, source="the checkpoint") -> None:
        """Continue from a checkpoint's state (loaded on the CPU: RNG states must stay there). A
        callback whose state the checkpoint lacks (it is older than the callback) starts afresh."""
        checkpoint.load_model(self.model, state["model"], source)
        saved = checkpoint.callback_state_of(state)
        for callback in self.callbacks:
            if callback.state_key is not None and saved.get(callback.state_key) is not None:
                callback.load_state_dict(saved[callback.state_key])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        self.epoch = state["epoch"]
        self.best = state["best"]
        self.best_is_stand_in = bool(state.get("best_is_stand_in", False))
        self.history = list(state.get("history") or [])

    def summary(self) -> dict:
        """What the fit reached: final and best records, cost, and the settings it ran with."""
        history = self.history
        summary = {
            "dataset": self.cfg.dataset, "dataset_name": self.data.name, "architecture": self.cfg.architecture,
            "metric": self.metric, "epochs": self.epoch, "device": str(self.device),
            "num_parameters": self.num_parameters, "num_layers": getattr(self.model, "num_layers", None),
            "final": history[-1] if history else None,
            "best": self.best,
            "test_at_best_valid": self.best[f"test_{self.metric}"] if self.best else None,
            "step_memory_mb": max((r["step_memory_mb"] for r in history if "step_memory_mb" in r), default=None),
            "memory_kind": memory.KIND[self.device.type],
            "precision": self.cfg.precision,
            "stopped_early": self.should_stop,
            "stopped_at_epoch": self.epoch if self.should_stop else None,
            "train_seconds": sum(r.get("seconds", 0.0) for r in history),
            "config": asdict(self.cfg),
        }
        hops = message_passing_depth(self.model)
        ceiling = depth_ceiling(self.data, hops)
        if ceiling is not None:  # the best test score a model of this depth (and a 3-layer one) can reach
            summary["hops"] = hops
            summary["depth_ceiling"] = ceiling
            summary["shallow_ceiling"] = depth_ceiling(self.data, 3)
        return summary
