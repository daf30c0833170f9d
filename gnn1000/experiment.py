"""The experiment loop: train, evaluate, keep the best model, checkpoint every epoch, resume.

``gnn1000 train`` and every Ray Tune trial run this same loop; Tune only passes ``on_epoch``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import gin
import torch
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from gnn1000 import checkpoint, dataroot, encoders, guard, memory, resume  # noqa: F401  dataroot: gin 'data.*'
from gnn1000.data import SPLITS, GraphTaskData, NodeTaskData
from gnn1000.errors import ConfigError, Gnn1000Error, check_number, check_positive_ints, plugin_error
from gnn1000.rundir import RunDir
from gnn1000.registry import gin_name, resolve


@gin.configurable("experiment")
@dataclass
class ExperimentConfig:
    """What to train and how; every field is a gin binding ``experiment.<field>``."""

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

    def __post_init__(self):
        check_positive_ints("experiment", epochs=self.epochs, batch_size=self.batch_size)
        check_number("experiment", "graphs_per_epoch", self.graphs_per_epoch, low=1, integer=True, allow_none=True)
        check_number("experiment", "lr", self.lr, low=0, low_open=True)
        check_number("experiment", "weight_decay", self.weight_decay, low=0)
        check_number("experiment", "grad_clip", self.grad_clip, low=0, low_open=True, allow_none=True)
        check_number("experiment", "seed", self.seed, low=0, high=2**32 - 1, integer=True)  # numpy's range
        for option in ("dataset", "architecture", "sampler", "device"):
            if not isinstance(getattr(self, option), str) and not callable(getattr(self, option)):
                raise ConfigError(f"experiment.{option}={getattr(self, option)!r} must be a registry name "
                                  f"(a quoted string in gin).")


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


def build_model(architecture: str, data) -> torch.nn.Module:
    """The architecture sized for ``data``; graph-level data adds its ``readout``, and categorical
    inputs get the dataset's encoders in front (see :mod:`gnn1000.encoders`)."""
    cls = resolve("architectures", architecture)
    graph_level = getattr(data, "level", "node") == "graph"
    kwargs = {"readout": data.readout} if graph_level else {}
    try:
        model = cls(in_channels=data.num_features, out_channels=data.num_outputs,
                    edge_dim=data.edge_dim, **kwargs)
    except Gnn1000Error:
        raise
    except TypeError as exc:
        if "readout" in str(exc) and "unexpected keyword" in str(exc):
            raise ConfigError(
                f"Architecture {architecture!r} has no 'readout' option, which graph-level dataset "
                f"{data.name!r} needs to pool node states per graph (OutputHead(readout=...))."
            ) from exc
        if "required" not in str(exc) or "In call to configurable" in str(exc).split("required")[0]:
            raise plugin_error(f"architecture {architecture!r}", exc) from exc
        raise ConfigError(
            f"Architecture {architecture!r} needs more settings: {exc}. Bind them in gin, "
            f"for example '{gin_name(architecture)}.hidden_channels = 64' and "
            f"'{gin_name(architecture)}.num_layers = 7'."
        ) from exc
    except Exception as exc:  # a plugin's own error: its message first, not gin's call chain
        raise plugin_error(f"architecture {architecture!r}", exc) from exc
    return encoders.wrap(model, getattr(data, "encoders", None))


class NodeLevel:
    """Predicting the nodes of one graph: the sampler plugin cuts it into batches, and a node's
    logits are averaged over every batch (and view) it appears in."""

    def __init__(self, data: NodeTaskData, cfg: ExperimentConfig, device: torch.device):
        self.graph = data.graph.to(device)
        self.sampler = resolve("samplers", cfg.sampler)()

    def train_batches(self):
        """(batch, mask of the batch's rows that train)."""
        for batch in self.sampler.batches(self.graph, train=True):
            yield batch, batch.train_mask

    def predict(self, forward) -> torch.Tensor:
        sums = counts = None
        for batch in self.sampler.batches(self.graph, train=False):
            out = forward(batch)
            if sums is None:
                sums = out.new_zeros(self.graph.num_nodes, out.size(-1))
                counts = out.new_zeros(self.graph.num_nodes)
            sums.index_add_(0, batch.n_id, out)
            counts.index_add_(0, batch.n_id, torch.ones_like(batch.n_id, dtype=out.dtype))
        return sums / counts.clamp(min=1).unsqueeze(-1)

    def split_predictions(self, forward) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(logits, labels) of every split."""
        logits = self.predict(forward)
        return {split: (logits[self.graph[f"{split}_mask"]], self.graph.y[self.graph[f"{split}_mask"]])
                for split in SPLITS}


class GraphLevel:
    """Predicting whole graphs: PyG's DataLoader batches them, and ``batch.batch`` tells GraphNorm
    and the readout which graph each node belongs to. With ``graphs_per_epoch`` an epoch trains on
    that many random training graphs, and the train score covers the first that many of the split."""

    def __init__(self, data: GraphTaskData, cfg: ExperimentConfig, device: torch.device):
        if cfg.sampler != "full_batch":
            raise ConfigError(f"experiment.sampler={cfg.sampler!r}: graph-level dataset {data.name!r} is "
                              f"batched by PyG's DataLoader (experiment.batch_size); keep 'full_batch'.")
        self.dataset, self.split, self.device = data.dataset, data.split, device
        self.batch_size, self.limit = cfg.batch_size, cfg.graphs_per_epoch

    def _loader(self, index: torch.Tensor):
        for batch in DataLoader(self.dataset[index], batch_size=self.batch_size):
            yield batch.to(self.device)

    def train_batches(self):
        index = self.split["train"]
        index = index[torch.randperm(index.numel())[:self.limit]]
        for batch in self._loader(index):
            yield batch, torch.ones(batch.num_graphs, dtype=torch.bool, device=self.device)

    def _predict(self, forward, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs, ys = [], []
        for batch in self._loader(index):
            outs.append(forward(batch))
            ys.append(batch.y)
        return torch.cat(outs), torch.cat(ys)

    def predict(self, forward) -> torch.Tensor:
        return self._predict(forward, torch.arange(len(self.dataset)))[0]

    def split_predictions(self, forward) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {split: self._predict(forward, self.split[split][:self.limit] if split == "train"
                                     else self.split[split])
                for split in SPLITS}


class Experiment:
    """One training run in ``run_dir``; ``on_epoch(record, last_checkpoint)`` sees every epoch."""

    def __init__(self, run_dir: Path | str, config: ExperimentConfig | None = None, *,
                 progress: bool = True, on_epoch: Callable[[dict, Path], None] | None = None,
                 log: Callable[[str], None] = tqdm.write):
        self.cfg = config if config is not None else ExperimentConfig()
        self.run = RunDir(Path(run_dir))
        self.progress = progress
        self.on_epoch = on_epoch
        self.log = log
        checkpoint.seed_everything(self.cfg.seed)
        self.device = pick_device(self.cfg.device)
        self.data = resolve("datasets", self.cfg.dataset)()
        self.task = self.data.task
        self.runner = (NodeLevel if self.data.level == "node" else GraphLevel)(self.data, self.cfg, self.device)
        self.model = build_model(self.cfg.architecture, self.data).to(self.device)
        # the architecture itself, behind any input encoders: pop_metrics and solver stats live there
        self.architecture = self.model.model if isinstance(self.model, encoders.Encoded) else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr,
                                          weight_decay=self.cfg.weight_decay)
        self.metric = self.task.metric
        self.epoch = 0
        self.best: dict | None = None
        self.history: list[dict] = []

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- one epoch -----------------------------------------------------------------------------

    def _forward(self, batch) -> torch.Tensor:
        return self.model(batch.x, batch.edge_index, batch.edge_attr, getattr(batch, "batch", None))

    def train_epoch(self) -> float:
        self.model.train()
        total, count = 0.0, 0
        batches = self.runner.train_batches()
        for step, (batch, mask) in enumerate(tqdm(batches, desc=f"epoch {self.epoch}", leave=False,
                                                  disable=None if self.progress else True)):  # None: off when not a TTY
            n = int(mask.sum())
            if n == 0:
                continue
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.task.loss(self._forward(batch)[mask], batch.y[mask])
            loss.backward()
            norm = guard.grad_norm(self.model.parameters(), self.cfg.grad_clip)
            guard.optimizer_step(self.optimizer, self.run, self.epoch, step, self.cfg.lr)
            # before anything else (evaluation, a checkpoint) sees the step
            guard.check_step(self.run, self.model, loss, norm, self.epoch, step, self.cfg.lr)
            total += loss.item() * n
            count += n
        if count == 0:
            raise ConfigError(f"Sampler {self.cfg.sampler!r} yielded nothing to train on in epoch {self.epoch}.")
        return total / count

    @torch.no_grad()
    def predict(self) -> torch.Tensor:
        """Logits for every node (averaged over every batch and view the sampler puts it in), or
        for every graph of a graph-level dataset."""
        self.model.eval()
        return self.runner.predict(self._forward)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        scores = {}
        for split, (logits, y) in self.runner.split_predictions(self._forward).items():
            guard.check_outputs(self.run, split, logits, self.epoch, self.cfg.lr)
            scores[f"{split}_{self.metric}"] = self.task.score(logits, y)
        return scores

    # -- the loop ------------------------------------------------------------------------------

    def _is_better(self, record: dict) -> bool:
        if self.best is None:
            return True
        key = f"valid_{self.metric}"
        if self.task.higher_is_better:
            return record[key] > self.best[key]
        return record[key] < self.best[key]

    def _state(self) -> dict:
        return {"epoch": self.epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": checkpoint.rng_state(),
                "best": self.best, "history": self.history}  # records committed with the weights

    def resume_from(self, path: Path) -> None:
        self.restore(checkpoint.load(path))  # on the CPU: RNG states must stay there

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"])
        self.epoch = state["epoch"]
        self.best = state["best"]
        self.history = list(state.get("history") or [])

    def load_weights(self, path: Path) -> None:
        self.model.load_state_dict(checkpoint.load(path, map_location=self.device)["model"])

    def write_config(self) -> None:
        from gnn1000.config import operative_config

        self.run.path.mkdir(parents=True, exist_ok=True)
        tmp = self.run.config.with_name(".config.gin.tmp")
        tmp.write_text(resume.config_header(self.run.read_resumes()) + operative_config())
        tmp.replace(self.run.config)

    def fit(self, resume: bool = False) -> dict:
        """Train to ``epochs`` (continuing from the last checkpoint if ``resume``); return the summary."""
        if resume:
            self._resume()
        else:
            self.run.claim()  # locked for this process's life; refuses a folder another run took
            self.write_config()
            self.run.write_metrics([])
        try:
            while self.epoch < self.cfg.epochs:
                self.epoch += 1
                record = self._run_epoch()
                if self.on_epoch is not None:
                    self.on_epoch(record, self.run.last)
        except ConfigError:
            if not resume:
                self.run.discard_unstarted()  # a setting that fails in epoch 1 leaves no half run
            raise
        return self.write_summary()

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
        resume.check_epochs(self.cfg.epochs, state["epoch"], self.run.path)
        self.restore(state)
        resume.apply_to_optimizer(self.optimizer, self.cfg.lr, self.cfg.weight_decay)
        on_disk = self.run.read_metrics()  # warns about a torn last line before it is rewritten
        if not self.history:  # a checkpoint from before records travelled with it
            self.history = [r for r in on_disk if r["epoch"] <= self.epoch]
        self.run.write_metrics(self.history)
        from gnn1000.config import operative_config

        changes = resume.changed(self.run.config.read_text(), operative_config(), str(self.run.config))
        if changes:
            self.run.record_resume(resume.resume_entry(self.epoch, changes, used.name))
        self.write_config()  # config.gin says what the run does from here on
        self.log(f"resumed {self.run.path} after epoch {self.epoch}"
                 + (f"; changed: {', '.join(f'{k} {a!r} -> {b!r}' for k, (a, b) in changes.items())}"
                    if changes else ""))

    def _run_epoch(self) -> dict:
        memory.reset_peak(self.device)
        start = time.perf_counter()
        set_epoch = getattr(self.architecture, "set_epoch", None)
        if callable(set_epoch):  # models whose behaviour depends on the epoch (DEQ warm-up)
            set_epoch(self.epoch)
        loss = self.train_epoch()
        record = {"epoch": self.epoch, "loss": loss, **self.evaluate()}
        pop_metrics = getattr(self.architecture, "pop_metrics", None)
        if callable(pop_metrics):
            record.update(pop_metrics())
        record["seconds"] = time.perf_counter() - start
        record["peak_memory_mb"] = memory.peak_mb(self.device)
        if self._is_better(record):
            self.best = record
            checkpoint.save(self.run.best, {"epoch": self.epoch, "model": self.model.state_dict()},
                            keep_previous=False)
        self.history.append(record)
        checkpoint.save(self.run.last, self._state())  # the record is committed here...
        self.run.append_metrics(record)  # ...and mirrored here; resume rebuilds it from the checkpoint
        m = self.metric
        self.log(f"epoch {self.epoch:>4}/{self.cfg.epochs} | loss {loss:.4f} | "
                 f"train {m} {record[f'train_{m}']:.4f} | valid {m} {record[f'valid_{m}']:.4f} | "
                 f"test {m} {record[f'test_{m}']:.4f} | {record['seconds']:.1f}s | "
                 f"peak {record['peak_memory_mb']:.0f} MB")
        return record

    def write_summary(self) -> dict:
        history = self.history
        summary = {
            "dataset": self.cfg.dataset, "architecture": self.cfg.architecture,
            "metric": self.metric, "epochs": self.epoch, "device": str(self.device),
            "num_parameters": self.num_parameters,
            "final": history[-1] if history else None,
            "best": self.best,
            "test_at_best_valid": self.best[f"test_{self.metric}"] if self.best else None,
            "peak_memory_mb": max((r["peak_memory_mb"] for r in history), default=None),
            "train_seconds": sum(r["seconds"] for r in history),
            "config": asdict(self.cfg),
        }
        # default=repr: resolve() lets a config hold a class or factory instead of a registry name
        self.run.summary.write_text(json.dumps(summary, indent=2, default=repr) + "\n")
        return summary


def load_run(run_dir: Path | str, **kwargs) -> Experiment:
    """Rebuild the experiment of an existing run directory from its operative config."""
    from gnn1000 import config as gin_config

    run = RunDir.existing(run_dir)
    gin_config.load(run.config)
    return Experiment(run.path, **kwargs)


__all__ = ["ExperimentConfig", "Experiment", "RunDir", "load_run", "pick_device", "Gnn1000Error"]
