"""The whole graph as one batch: the default for graphs that fit in memory.

Data-parallel ranks (``shard=(rank, world)``) each train on the whole graph with every ``world``-th
training node in their loss, so together they cover the training nodes once; rank 0 alone predicts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch_geometric.data import Data

from gnn1000.registry import register


@register("samplers", "full_batch")
class FullBatch:
    """Yields the graph itself, with ``n_id`` covering every node."""

    def batches(self, graph: Data, train: bool, shard: tuple[int, int] = (0, 1)) -> Iterator[Data]:
        if getattr(graph, "n_id", None) is None:
            graph.n_id = torch.arange(graph.num_nodes, device=graph.edge_index.device)
        rank, world = shard
        if world == 1:
            yield graph
        elif train:
            mine = graph.train_mask.nonzero().view(-1)[rank::world]
            batch = copy.copy(graph)  # shallow: only the mask is this rank's own
            batch.train_mask = torch.zeros_like(graph.train_mask).index_fill_(0, mine, True)
            yield batch
        elif rank == 0:
            yield graph

    def num_batches(self, graph: Data, train: bool) -> int:
        return 1

    def __repr__(self) -> str:
        return "FullBatch()"
