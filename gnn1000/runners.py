"""How an epoch's batches are made and predictions gathered: one :class:`Runner` per kind of task.

A runner hides what a node-level task (one graph cut into subgraphs by a sampler plugin) and a
graph-level task (many graphs, batched by PyG's DataLoader) do differently, so the trainer's step
loop is the same for both and for every rank of a data-parallel run.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from gnn1000.data import SPLITS, GraphTaskData, NodeTaskData
from gnn1000.errors import ConfigError
from gnn1000.protocols import CountedSampler, Sampler
from gnn1000.ranks import Ranks
from gnn1000.settings import ExperimentConfig


class Runner(Protocol):
    """What the trainer asks of a batching strategy.

    ``quiet`` switches its progress bars (None: shown on a terminal only). Every rank of a
    data-parallel run calls these methods; each yields or predicts this rank's share, and the
    predictions come back gathered, the same on every rank.
    """

    quiet: bool | None

    def num_batches(self, train: bool) -> int | None:
        """Batches in an epoch (for the progress bar's total); None when unknown."""

    def train_batches(self) -> Iterator[tuple[Data, torch.Tensor]]:
        """(batch, mask of the rows the loss is taken over), this rank's share of one epoch."""

    def predict(self, forward: Callable[[Data], torch.Tensor]) -> torch.Tensor:
        """Logits for every node (or graph) of the dataset."""

    def split_predictions(self, forward: Callable[[Data], torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(logits, labels) of every split."""


class NodeLevel:
    """Predicting the nodes of one graph: the sampler plugin cuts it into batches, and a node's
    logits are averaged over every batch (and view) it appears in. Under data parallelism each rank
    takes its share of the batches (``shard``), and the per-node sums are added up over ranks."""

    def __init__(self, data: NodeTaskData, sampler: Sampler, device: torch.device, ranks: Ranks):
        self.graph = data.graph.to(device)
        self.sampler = sampler
        self.ranks = ranks
        self.quiet: bool | None = None  # progress bars: None shows them on a terminal only
        # a third-party sampler without ``shard`` (protocols.ShardedSampler) is sharded here, after it built every batch
        self.shards = "shard" in inspect.signature(sampler.batches).parameters

    def num_batches(self, train: bool) -> int | None:
        if isinstance(self.sampler, CountedSampler):  # optional in the sampler protocol
            return self.sampler.num_batches(self.graph, train)
        return None

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
        for batch in bar(self._batches(train=False), self.num_batches(False), "evaluating", self.quiet):
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
        for batch in bar(self._loader(chunks), len(chunks), "evaluating", self.quiet):
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


def bar(iterable, total: int | None, desc: str, disable: bool | None = None):
    """tqdm with a total (so an ETA); disable=None: quiet when output is not a terminal."""
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True)


def check_graph_sampler(data, sampler: str) -> None:
    """Graph-level datasets are batched by PyG's DataLoader, not by a sampler plugin: only the
    settings' default sampler may be named."""
    default = ExperimentConfig.sampler
    if getattr(data, "level", "node") == "graph" and sampler != default:
        raise ConfigError(f"experiment.sampler={sampler!r}: graph-level dataset {data.name!r} is "
                          f"batched by PyG's DataLoader (experiment.batch_size); keep {default!r}.")


def make_runner(data: NodeTaskData | GraphTaskData, sampler: Sampler | None, cfg: ExperimentConfig,
                device: torch.device, ranks: Ranks) -> Runner:
    """The runner for ``data``'s level: node-level data is cut by ``sampler``, graph-level data batched."""
    if data.level == "node":
        return NodeLevel(data, sampler, device, ranks)
    check_graph_sampler(data, cfg.sampler)
    return GraphLevel(data, cfg, device, ranks)
