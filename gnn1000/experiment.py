"""The experiment loop: train, evaluate, keep the best model, checkpoint every epoch, resume.

``Experiment(model, data, sampler, settings, run_dir)`` takes explicit objects and knows nothing of
gin: :func:`gnn1000.build.build_experiment` makes them from a gin config for ``gnn1000 train`` and
every Ray Tune trial, which run this same loop (Tune only passes ``on_epoch``).
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm
from torch_geometric.loader import DataLoader

from gnn1000 import checkpoint, guard, logs, memory, precision, recorded, reproducibility, resume, safefs
from gnn1000.data import SPLITS, GraphTaskData, NodeTaskData, depth_ceiling
from gnn1000.errors import ConfigError, Gnn1000Error
from gnn1000.protocols import EpochAware, Sampler
from gnn1000.ranks import Ranks
from gnn1000.registry import resolve
from gnn1000.rundir import RunDir
from gnn1000.settings import ExperimentConfig

logger = logging.getLogger(__name__)


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


class NodeLevel:
    """Predicting the nodes of one graph: the sampler plugin cuts it into batches, and a node's
    logits are averaged over every batch (and view) it appears in. Under data parallelism each rank
    takes its share of the batches (``shard``), and the per-node sums are added up over ranks."""

    def __init__(self, data: NodeTaskData, sampler: Sampler, device: torch.device, ranks: Ranks):
        self.graph = data.graph.to(device)
        self.sampler = sampler
        self.ranks = ranks
        self.quiet: bool | None = None  # progress bars: None shows them on a terminal only
        # a third-party sampler without ``shard`` is sharded here, after it built every batch
        self.shards = "shard" in inspect.signature(sampler.batches).parameters

    def num_batches(self, train: bool) -> int | None:
        count = getattr(self.sampler, "num_batches", None)  # optional in the sampler protocol
        return count(self.graph, train) if count is not None else None

    def _batches(self, train: bool):
        if self.shards:
            return self.sampler.batches(self.graph, train=train, shard=(self.ranks.rank, self.ranks.world))
        return itertools.islice(self.sampler.batches(self.graph, train=train), self.ranks.rank, None,
                                self.ranks.world)

    def train_batches(self):
        """(batch, mask of the batch's rows that train), this rank's share."""
        for batch in self._batches(train=True):
            yield batch, batch.train_mask

    def predict(self, forward) -> torch.Tensor:
        sums = counts = None
        for batch in _bar(self._batches(train=False), self.num_batches(False), "evaluating", self.quiet):
            out = forward(batch)
            if sums is None:
                sums = out.new_zeros(self.graph.num_nodes, out.size(-1))
                counts = out.new_zeros(self.graph.num_nodes)
            sums.index_add_(0, batch.n_id, out)
            counts.index_add_(0, batch.n_id, torch.ones_like(batch.n_id, dtype=out.dtype))
        if self.ranks.parallel:  # a rank may have had no batch: the shape comes from a rank that had one
            width = max(self.ranks.gather(None if sums is None else sums.size(-1)), key=lambda w: w or 0)
            if sums is None:
                sums = torch.zeros(self.graph.num_nodes, width, device=self.graph.x.device)
                counts = torch.zeros(self.graph.num_nodes, device=self.graph.x.device)
            self.ranks.sum(sums)
            self.ranks.sum(counts)
        return sums / counts.clamp(min=1).unsqueeze(-1)

    def split_predictions(self, forward) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(logits, labels) of every split."""
        logits = self.predict(forward)
        return {split: (logits[self.graph[f"{split}_mask"]], self.graph.y[self.graph[f"{split}_mask"]])
                for split in SPLITS}


class GraphLevel:
    """Predicting whole graphs: PyG's DataLoader batches them, and ``batch.batch`` tells GraphNorm
    and the readout which graph each node belongs to. With ``graphs_per_epoch`` an epoch trains on
    that many random training graphs, and the train score covers the first that many of the split.
    Under data parallelism rank r takes mini-batches r, r + world, ... of the epoch's order."""

    def __init__(self, data: GraphTaskData, cfg: ExperimentConfig, device: torch.device, ranks: Ranks):
        self.dataset, self.split, self.device = data.dataset, data.split, device
        self.batch_size, self.limit = cfg.batch_size, cfg.graphs_per_epoch
        self.ranks = ranks
        self.quiet: bool | None = None  # progress bars: None shows them on a terminal only

    def _mine(self, index: torch.Tensor) -> list[torch.Tensor]:
        """This rank's mini-batches (graph ids) of ``index``, cut as one process would cut them."""
        return self.ranks.mine(list(index.split(self.batch_size)))

    def _loader(self, chunks: list[torch.Tensor]):
        for chunk in chunks:
            yield next(iter(DataLoader(self.dataset[chunk], batch_size=chunk.numel()))).to(self.device)

    def num_batches(self, train: bool) -> int:
        count = self.split["train"].numel() if self.limit is None else min(self.limit, self.split["train"].numel())
        return -(-count // self.batch_size)

    def train_batches(self):
        index = self.split["train"]
        index = index[torch.randperm(index.numel())[:self.limit]]
        for batch in self._loader(self._mine(index)):
            yield batch, torch.ones(batch.num_graphs, dtype=torch.bool, device=self.device)

    def _predict(self, forward, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        chunks = self._mine(index)
        outs, ys = [], []
        for batch in _bar(self._loader(chunks), len(chunks), "evaluating", self.quiet):
            outs.append(forward(batch))
            ys.append(batch.y)
        if self.ranks.parallel:  # back in the order of index: chunk i was rank i % world's (i // world)-th
            shares = self.ranks.gather([(o.cpu(), y.cpu()) for o, y in zip(outs, ys)])
            ordered = [shares[i % self.ranks.world][i // self.ranks.world]
                       for i in range(sum(len(share) for share in shares))]
            outs, ys = [o.to(self.device) for o, _ in ordered], [y.to(self.device) for _, y in ordered]
        return torch.cat(outs), torch.cat(ys)

    def predict(self, forward) -> torch.Tensor:
        return self._predict(forward, torch.arange(len(self.dataset)))[0]

    def split_predictions(self, forward) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {split: self._predict(forward, self.split[split][:self.limit] if split == "train"
                                     else self.split[split])
                for split in SPLITS}


def _bar(iterable, total: int | None, desc: str, disable: bool | None = None):
    """tqdm with a total (so an ETA); disable=None: quiet when output is not a terminal."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True)


def message_passing_depth(model: torch.nn.Module) -> int | None:
    """How many hops a model sees: its ``hops`` where it says (RevGNN: layers x groups; None for an
    equilibrium model, whose receptive field is unbounded), else its ``num_layers``."""
    return model.hops if hasattr(model, "hops") else getattr(model, "num_layers", None)


def check_graph_sampler(data, sampler: str) -> None:
    """Graph-level datasets are batched by PyG's DataLoader, not by a sampler plugin."""
    if getattr(data, "level", "node") == "graph" and sampler != "full_batch":
        raise ConfigError(f"experiment.sampler={sampler!r}: graph-level dataset {data.name!r} is "
                          f"batched by PyG's DataLoader (experiment.batch_size); keep 'full_batch'.")


def make_optimizer(factory, model: torch.nn.Module, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """An optimizer from a registered factory (or gin's reference to one) over ``model``'s parameters."""
    return factory(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(factory, optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, task):
    """A learning-rate schedule from a registered factory (or gin's reference to one), or None."""
    return factory(optimizer, epochs=cfg.epochs, mode=task.mode)


class Experiment:
    """One training run in ``run_dir``; ``on_epoch(record, last_checkpoint)`` sees every epoch.

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
                 progress: bool = True, on_epoch: Callable[[dict, Path], None] | None = None,
                 log: Callable[[str], None] | None = None, ranks: Ranks | None = None,
                 config_source: Path | str | None = None):
        if log is None:  # the logger 'gnn1000.experiment' (gnn1000.logs: how to route or silence it)
            logs.ensure_default_handler()
            log = logger.info
        if not config_text:  # built in Python: config.gin records what was built, for the CLI
            settings, config_text = recorded.describe(model, data, sampler, settings, log)
        self.cfg = settings
        self.ranks = ranks if ranks is not None else Ranks.current()
        self.run = RunDir(Path(run_dir))
        self.config_text = config_text
        self.config_source = config_source
        self.progress = progress
        self.on_epoch = on_epoch
        self.log = log
        self.device = pick_device(self.cfg.device)
        self.data = data
        self.task = self.data.task
        if self.data.level == "node":
            self.runner = NodeLevel(self.data, sampler, self.device, self.ranks)
        else:
            check_graph_sampler(self.data, self.cfg.sampler)
            self.runner = GraphLevel(self.data, self.cfg, self.device, self.ranks)
        self.runner.quiet = None if self.progress else True
        self.model = model.to(self.device)
        self.trained = self._data_parallel(self.model)  # what training steps call; self.model is saved
        # Polyak averaging: full-batch runs on small graphs (Cora's 140 labels) swing several points of
        # validation accuracy between epochs; the average is scored and kept instead. Buffers (BatchNorm
        # statistics, the DEQ's epoch) are copied from the trained model, not averaged.
        self.averaged = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.ema_decay))
                         if self.cfg.ema_decay is not None else None)
        if optimizer is None:
            optimizer = make_optimizer(resolve("optimizers", self.cfg.optimizer), self.model, self.cfg)
        self.optimizer = optimizer
        if scheduler is None:
            scheduler = make_scheduler(resolve("schedulers", self.cfg.scheduler), self.optimizer, self.cfg, self.task)
        self.scheduler = scheduler
        self.scaler = precision.scaler(self.device, self.cfg.precision)
        self.logger_classes = [resolve("loggers", name) for name in self.cfg.loggers]  # a typo fails here
        self.loggers: list = []
        self.metric = self.task.metric
        self.epoch = 0
        self.run_id: str | None = None  # set when the run starts or resumes (RunDir.new_identity)
        self.best: dict | None = None
        self.history: list[dict] = []

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

    def _same_draws(self) -> None:
        """Every rank continues from rank 0's random state, so all draw the same partitions and
        orders and each takes its share of one draw (dropout had consumed different amounts)."""
        if self.ranks.parallel:
            torch.set_rng_state(self.ranks.from_main(torch.get_rng_state()))

    @property
    def evaluated(self) -> torch.nn.Module:
        """What evaluation scores and the best checkpoint keeps: the weights' moving average when
        ``ema_decay`` is set, else the trained model."""
        return self.averaged.module if self.averaged is not None else self.model

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- one epoch -----------------------------------------------------------------------------

    def _forward(self, batch, model: torch.nn.Module | None = None) -> torch.Tensor:
        """Logits in float32 whatever ``precision`` the model computed in (losses and scores want it)."""
        with precision.autocast(self.device, self.cfg.precision):
            out = (model or self.model)(batch.x, batch.edge_index, batch.edge_attr, getattr(batch, "batch", None))
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
        self.model.train()
        self._same_draws()
        total, count = 0.0, 0
        bar = _bar(self._steps(), self.runner.num_batches(True), f"epoch {self.epoch}",
                   disable=None if self.progress else True)
        for step, (batch, mask, weight, n) in enumerate(bar):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.task.loss(self._forward(batch, self.trained)[mask], batch.y[mask])
            self.scaler.scale(loss * weight if self.ranks.parallel else loss).backward()
            self.scaler.unscale_(self.optimizer)  # clipping sees the true gradients
            norm = guard.grad_norm(self.model.parameters(), self.cfg.grad_clip)
            guard.optimizer_step(self.optimizer, self.run, self.epoch, step, self.cfg.lr, self.scaler)
            self.scaler.update()
            if self.scaler.is_enabled() and not torch.isfinite(norm):
                norm = torch.zeros(())  # float16 overflow: the scaler skipped this step and lowered its scale
            # before anything else (evaluation, a checkpoint) sees the step
            guard.check_step(self.run, self.model, loss, norm, self.epoch, step, self.cfg.lr)
            if self.averaged is not None:
                self.averaged.update_parameters(self.model)  # after the guard: never averages a non-finite step
            total += loss.item() * n
            count += n
            if count:
                bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
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
        scores = {}
        for split, (logits, y) in self.runner.split_predictions(partial(self._forward, model=self.evaluated)).items():
            guard.check_outputs(self.run, split, logits, self.epoch, self.cfg.lr)  # on every rank: all stop
            if self.ranks.is_main:
                scores[f"{split}_{self.metric}"] = self.task.score(logits, y)
        return self.ranks.from_main(scores)

    # -- the loop ------------------------------------------------------------------------------

    def _is_better(self, record: dict) -> bool:
        if self.best is None:
            return True
        key = f"valid_{self.metric}"
        if self.task.higher_is_better:
            return record[key] > self.best[key]
        return record[key] < self.best[key]

    def _state(self) -> dict:
        return {"epoch": self.epoch, "run_id": self.run_id, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": checkpoint.rng_state(),
                "best": self.best, "history": self.history,  # records committed with the weights
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(),
                "averaged": self.averaged.state_dict() if self.averaged is not None else None}

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's state (loaded on the CPU: RNG states must stay there)."""
        checkpoint.load_model(self.model, state["model"], self.run.last)
        if self.averaged is not None:
            checkpoint.load_model(self.averaged, state["averaged"], self.run.last)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        self.epoch = state["epoch"]
        self.best = state["best"]
        self.history = list(state.get("history") or [])

    def load_weights(self, path: Path) -> None:
        """The weights a checkpoint scored: best.pt keeps them as its model; last.pt keeps the trained
        weights and, with ``ema_decay``, their average, which evaluation scores."""
        state = checkpoint.load(path, map_location=self.device)
        self.run.check_belongs(state, path)
        if self.averaged is not None and state.get("averaged") is not None:
            checkpoint.load_model(self.averaged, state["averaged"], path)
        else:
            checkpoint.load_model(self.evaluated, state["model"], path)

    def write_config(self) -> None:
        safefs.write_atomic(self.run.config,
                            (resume.config_header(self.run.read_resumes()) + self.config_text).encode())

    def fit(self, resume: bool = False) -> dict:
        """Train to ``epochs`` (continuing from the last checkpoint if ``resume``); return the summary."""
        # log lines above the progress bars, not through them; the deterministic switch for this run only
        with logs.tqdm_safe(), reproducibility.deterministic(self.cfg.deterministic, self.device):
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict:
        if resume:
            self._resume()
        else:
            self.run.claim()  # locked for this process's life; refuses a folder another run took
            self.run_id = self.run.new_identity()
            self.write_config()
            self.run.write_metrics([])
        bar = tqdm(total=self.cfg.epochs, initial=self.epoch, desc="training", unit="epoch", dynamic_ncols=True,
                   disable=None if self.progress else True)
        try:
            self.loggers = [logger(self.run.path, self.history) for logger in self.logger_classes]
            while self.epoch < self.cfg.epochs and not self.stopped_early:
                self.epoch += 1
                record = self._run_epoch()
                bar.update()
                bar.set_postfix({"loss": f"{record['loss']:.4f}",
                                 f"valid {self.metric}": f"{record[f'valid_{self.metric}']:.4f}"}, refresh=False)
                if self.on_epoch is not None:
                    self.on_epoch(record, self.run.last)
        except ConfigError:
            if not resume:
                self.run.discard_unstarted()  # a setting that fails in epoch 1 leaves no half run
            raise
        finally:
            bar.close()
            for logger in self.loggers:
                logger.close()
        if self.stopped_early:
            self.log(f"stopped early after epoch {self.epoch}: no better valid {self.metric} for "
                     f"{self.cfg.patience} epochs (best at epoch {self.best['epoch']})")
        return self.write_summary()

    @property
    def stopped_early(self) -> bool:
        """``patience`` epochs have passed without a better validation score (read from the best
        record, so a resumed run knows it too)."""
        return (self.cfg.patience is not None and self.best is not None
                and self.epoch - self.best["epoch"] >= self.cfg.patience)

    def _resume(self) -> None:
        """Continue from the newest intact checkpoint with the settings bound now (checked by
        :func:`gnn1000.resume.check_bindings`), rebuild metrics.jsonl from the checkpoint's history,
        and record what changed."""
        self.run.lock()
        try:
            state, used = checkpoint.load_latest(self.run.last, log=self.log)
        except FileNotFoundError:
            raise ConfigError(f"Cannot resume {self.run.path}: it has no checkpoint yet ({self.run.last}); "
                              f"no epoch finished. Start it again with --overwrite.") from None
        self.run.check_belongs(state, used)
        self.run_id = self.run.identity()
        resume.check_epochs(self.cfg.epochs, state["epoch"], self.run.path)
        self.restore(state)
        self._reconcile_best()
        resume.apply_to_optimizer(self.optimizer, self.scheduler, self.cfg.lr, self.cfg.weight_decay)
        on_disk = self.run.read_metrics()  # warns about a torn last line before it is rewritten
        if not self.history:  # a checkpoint from before records travelled with it
            self.history = [r for r in on_disk if r["epoch"] <= self.epoch]
        self.run.write_metrics(self.history)
        changes = resume.changed(self.run.config.read_text(), self.config_text, str(self.run.config))
        if changes:
            self.run.record_resume(resume.resume_entry(self.epoch, changes, used.name))
        self.write_config()  # config.gin says what the run does from here on
        self.log(f"resumed {self.run.path} after epoch {self.epoch}"
                 + (f"; changed: {', '.join(f'{k} {a!r} -> {b!r}' for k, (a, b) in changes.items())}"
                    if changes else ""))

    def _run_epoch(self) -> dict:
        before = memory.current_mb(self.device)
        memory.reset_peak(self.device)
        start = time.perf_counter()
        if isinstance(self.model, EpochAware):  # models whose behaviour depends on the epoch (DEQ warm-up)
            self.model.set_epoch(self.epoch)
        loss = self.train_epoch()
        record = {"epoch": self.epoch, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"], **self.evaluate()}
        if isinstance(self.model, EpochAware):
            record.update(self.model.pop_metrics())
        self._step_scheduler(record)
        record["seconds"] = time.perf_counter() - start
        record["step_memory_mb"] = memory.used_mb(self.device, before)
        better = self._is_better(record)
        if better:
            self.best = record
        self.history.append(record)
        checkpoint.save(self.run.last, self._state())  # the record is committed here...
        if better:  # ...before best.pt: a kill between the two leaves a best.pt the resume rebuilds
            self._save_best()
        self.run.append_metrics(record)  # ...and mirrored here; resume rebuilds it from the checkpoint
        for logger in self.loggers:
            logger.log(record)
        m = self.metric
        self.log(f"epoch {self.epoch:>4}/{self.cfg.epochs} | loss {loss:.4f} | "
                 f"train {m} {record[f'train_{m}']:.4f} | valid {m} {record[f'valid_{m}']:.4f} | "
                 f"test {m} {record[f'test_{m}']:.4f} | {record['seconds']:.1f}s | "
                 f"{memory.LABEL[self.device.type]} {record['step_memory_mb']:.0f} MB")
        return record

    def _save_best(self) -> None:
        checkpoint.save(self.run.best, {"epoch": self.epoch, "run_id": self.run_id,
                                        "model": self.evaluated.state_dict()}, keep_previous=False)

    def _reconcile_best(self) -> None:
        """After a restore: when the records' best epoch is the restored one but best.pt is not from it
        (a kill after last.pt, before best.pt), best.pt is rewritten from the restored weights."""
        if self.best is None or self.best["epoch"] != self.epoch:
            return
        if checkpoint.recorded_epoch(self.run.best) != self.epoch:
            self._save_best()
            self.log(f"best.pt did not hold epoch {self.epoch}, the best one the records name; rewritten "
                     f"from the checkpoint of that epoch")

    def _step_scheduler(self, record: dict) -> None:
        if isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step(record[f"valid_{self.metric}"])
        elif self.scheduler is not None:
            self.scheduler.step()

    def write_summary(self) -> dict:
        history = self.history
        summary = {
            "dataset": self.cfg.dataset, "dataset_name": self.data.name, "architecture": self.cfg.architecture,
            "metric": self.metric, "epochs": self.epoch, "device": str(self.device),
            "num_parameters": self.num_parameters, "num_layers": getattr(self.model, "num_layers", None),
            "final": history[-1] if history else None,
            "best": self.best,
            "test_at_best_valid": self.best[f"test_{self.metric}"] if self.best else None,
            "step_memory_mb": max((r["step_memory_mb"] for r in history), default=None),
            "memory_kind": memory.KIND[self.device.type],
            "precision": self.cfg.precision,
            "stopped_early": self.stopped_early,
            "stopped_at_epoch": self.epoch if self.stopped_early else None,
            "train_seconds": sum(r["seconds"] for r in history),
            "config": asdict(self.cfg),
            "environment": reproducibility.environment(self.config_source),
        }
        hops = message_passing_depth(self.model)
        ceiling = depth_ceiling(self.data, hops)
        if ceiling is not None:  # the best test score a model of this depth (and a 3-layer one) can reach
            summary["hops"] = hops
            summary["depth_ceiling"] = ceiling
            summary["shallow_ceiling"] = depth_ceiling(self.data, 3)
        # default=repr: resolve() lets a config hold a class or factory instead of a registry name
        safefs.write_atomic(self.run.summary, (json.dumps(summary, indent=2, default=repr) + "\n").encode())
        return summary


__all__ = ["ExperimentConfig", "Experiment", "RunDir", "pick_device", "Gnn1000Error"]
