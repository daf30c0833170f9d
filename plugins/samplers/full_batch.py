"""The whole graph as one batch: the default for graphs that fit in memory."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch_geometric.data import Data

from gnn1000.registry import register


@register("samplers", "full_batch")
class FullBatch:
    """Yields the graph itself, with ``n_id`` covering every node."""

    def batches(self, graph: Data, train: bool) -> Iterator[Data]:
        if getattr(graph, "n_id", None) is None:
            graph.n_id = torch.arange(graph.num_nodes, device=graph.edge_index.device)
        yield graph

    def num_batches(self, graph: Data, train: bool) -> int:
        return 1

    def __repr__(self) -> str:
        return "FullBatch()"
