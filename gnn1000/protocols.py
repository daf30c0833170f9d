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
    Models without either method need neither.
    """

    def set_epoch(self, epoch: int) -> None:
        """The (1-based) training epoch that starts now."""

    def pop_metrics(self) -> dict[str, float]:
        """Metrics gathered since the last call (for example solver statistics); resets them."""


class Sampler(Protocol):
    """Cuts one graph into the subgraphs an epoch trains on (or predicts over)."""

    def batches(self, graph: Data, train: bool) -> Iterable[Data]:
        """Subgraphs with ``n_id`` (their nodes' ids in ``graph``) and the graph's masks and labels."""
