"""What the experiment loop asks of a model beyond ``model(x, edge_index, edge_attr, batch)``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from torch_geometric.data import Data


@runtime_checkable
class EpochAware(Protocol):
    """A model whose behaviour or monitoring follows the training epochs (e.g. DEQ-GNN's warm-up).

    The loop calls ``set_epoch(epoch)`` (1-based) before each training epoch, as a
    ``DistributedSampler``'s, and merges ``pop_metrics()`` into that epoch's metrics record.
    Models without either method need neither. A model may also say ``warming_up`` (a bool): while it
    is true, the epoch trains a stand-in (DEQ-GNN's unrolled warm-up), and once an epoch of the model
    itself has run, only the model's own epochs can be the best checkpoint.
    """

    def set_epoch(self, epoch: int) -> None:
        """The (1-based) training epoch that starts now."""

    def pop_metrics(self) -> dict[str, float]:
        """Metrics gathered since the last call (for example solver statistics); resets them."""


class Sampler(Protocol):
    """Cuts one graph into the subgraphs an epoch trains on (or predicts over).

    Two optional parts, probed for by :class:`gnn1000.runners.NodeLevel` (a sampler without them works):

    - a keyword ``shard=(rank, world)`` of ``batches``: yield only that rank's share of the epoch's
      batches, so a data-parallel rank never builds the others' (without it every rank builds every
      batch and keeps batches rank, rank + world, ...); see :class:`ShardedSampler`;
    - ``num_batches(graph, train)``: how many batches an epoch has, for the progress bar's total and
      ETA; see :class:`CountedSampler`.
    """

    def batches(self, graph: Data, train: bool) -> Iterable[Data]:
        """Subgraphs with ``n_id`` (their nodes' ids in ``graph``) and the graph's masks and labels."""


class ShardedSampler(Sampler, Protocol):
    """A :class:`Sampler` that builds only one data-parallel rank's share of an epoch."""

    def batches(self, graph: Data, train: bool, shard: tuple[int, int] = (0, 1)) -> Iterable[Data]:
        """Rank ``rank``'s share of the batches when ``shard`` is ``(rank, world)``; (0, 1): every batch."""


@runtime_checkable
class CountedSampler(Sampler, Protocol):
    """A :class:`Sampler` that says how many batches an epoch has."""

    def num_batches(self, graph: Data, train: bool) -> int:
        """The number of batches ``batches(graph, train)`` yields (over all ranks)."""
