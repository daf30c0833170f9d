"""Random partition (the paper's mini-batching for ogbn-proteins) with multi-view inference.

Every call splits the nodes uniformly at random into parts of (near) equal size and yields each
part's induced subgraph. Training uses ``num_parts`` parts; evaluation uses ``eval_parts`` parts in
each of ``num_views`` independent partitions, and the loop averages each node's logits over every
view (the paper: 10 parts to train, 3 parts x 10 views to test). Randomness comes from torch's global
generator, which checkpoints save, so a resumed run draws the same partitions as an unbroken one.
Data-parallel ranks (``shard=(rank, world)``) draw the same partitions and each takes every
``world``-th part of them, so together they cover exactly the parts one process would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch_geometric.data import Data

from gnn1000.errors import ConfigError, check_positive_ints
from gnn1000.registry import register

from .subgraphs import induced_subgraph


# num_views and eval_parts shape only evaluation: they may change on --resume and in evaluate --bind.
@register("samplers", "random_partition", evaluation_options=("num_views", "eval_parts"))
class RandomPartition:
    """A fresh uniform partition into ``num_parts`` parts per training epoch; ``num_views``
    partitions into ``eval_parts`` parts (default ``num_parts``) for evaluation."""

    def __init__(self, num_parts: int = 10, eval_parts: int | None = None, num_views: int = 1):
        eval_parts = num_parts if eval_parts is None else eval_parts
        check_positive_ints("random_partition", num_parts=num_parts, eval_parts=eval_parts, num_views=num_views)
        self.num_parts, self.eval_parts, self.num_views = num_parts, eval_parts, num_views

    def partition(self, num_nodes: int, num_parts: int) -> list[torch.Tensor]:
        """Node ids of each part, sorted; together they cover every node exactly once."""
        if num_parts > num_nodes:
            raise ConfigError(f"random_partition: {num_parts} parts for a graph of {num_nodes} nodes; "
                              f"use at most {num_nodes}.")
        perm = torch.randperm(num_nodes)
        return [part.sort().values for part in perm.tensor_split(num_parts)]

    def batches(self, graph: Data, train: bool, shard: tuple[int, int] = (0, 1)) -> Iterator[Data]:
        parts, views = (self.num_parts, 1) if train else (self.eval_parts, self.num_views)
        rank, world = shard
        drawn = [nodes for _ in range(views) for nodes in self.partition(graph.num_nodes, parts)]
        for nodes in drawn[rank::world]:
            yield induced_subgraph(graph, nodes.to(graph.edge_index.device))

    def num_batches(self, graph: Data, train: bool) -> int:
        """What :meth:`batches` yields: the progress bar's total."""
        return self.num_parts if train else self.eval_parts * self.num_views

    def __repr__(self) -> str:
        return (f"RandomPartition(num_parts={self.num_parts}, eval_parts={self.eval_parts}, "
                f"num_views={self.num_views})")
