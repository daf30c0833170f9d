"""ClusterGCN-style mini-batches: METIS clusters, several per step, with the edges between them.

The graph is partitioned once with METIS into ``num_parts`` clusters. Each training epoch shuffles
the clusters and joins ``clusters_per_batch`` of them into one batch, the induced subgraph of their
union, so edges between the chosen clusters come back (Chiang et al., 2019). Evaluation walks the
clusters in a fixed order. Shuffling draws from torch's global generator (checkpointed).
Data-parallel ranks (``shard=(rank, world)``) shuffle alike and each takes every ``world``-th batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch_geometric.data import Data
from tqdm.auto import tqdm
from torch_geometric.utils import remove_self_loops, to_undirected

from gnn1000.errors import ConfigError, check_positive_ints
from gnn1000.extras import require
from gnn1000.registry import register

from .subgraphs import induced_subgraph


def metis_parts(edge_index: torch.Tensor, num_nodes: int, num_parts: int) -> torch.Tensor:
    """The METIS cluster id of every node."""
    # METIS through pymetis: PyG's ClusterData needs torch-sparse or pyg-lib, which have no wheels here.
    require("pymetis", "metis", "The 'cluster' sampler (METIS partitioning)")
    import pymetis

    edge_index, _ = remove_self_loops(to_undirected(edge_index.cpu(), num_nodes=num_nodes))
    row, col = edge_index.numpy()  # to_undirected sorts by row: a CSR adjacency
    starts = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=num_nodes))])
    partition = pymetis.part_graph(num_parts, pymetis.CSRAdjacency(starts, col))
    return torch.as_tensor(np.asarray(partition.vertex_part), dtype=torch.long)


@register("samplers", "cluster")
class Cluster:
    """METIS into ``num_parts`` clusters once per graph; batches of ``clusters_per_batch`` clusters."""

    def __init__(self, num_parts: int = 50, clusters_per_batch: int = 5):
        check_positive_ints("cluster", num_parts=num_parts, clusters_per_batch=clusters_per_batch)
        if clusters_per_batch > num_parts:
            raise ConfigError(f"cluster.clusters_per_batch={clusters_per_batch} exceeds "
                              f"cluster.num_parts={num_parts}.")
        self.num_parts, self.clusters_per_batch = num_parts, clusters_per_batch
        self._clusters: tuple[tuple, list[torch.Tensor]] | None = None

    def clusters(self, graph: Data) -> list[torch.Tensor]:
        """Node ids of each non-empty cluster, computed once per graph."""
        key = (id(graph), graph.num_nodes, graph.edge_index.size(1))
        if self._clusters is None or self._clusters[0] != key:
            if self.num_parts > graph.num_nodes:
                raise ConfigError(f"cluster: {self.num_parts} parts for a graph of {graph.num_nodes} "
                                  f"nodes; use at most {graph.num_nodes}.")
            with tqdm(total=1, desc=f"METIS: {self.num_parts} parts of {graph.num_nodes:,} nodes",
                      leave=False, disable=None) as bar:  # disable=None: quiet when not a terminal
                parts = metis_parts(graph.edge_index, graph.num_nodes, self.num_parts)
                bar.update()
            members = [(parts == p).nonzero().view(-1) for p in range(self.num_parts)]
            self._clusters = (key, [m for m in members if m.numel()])
        return self._clusters[1]

    def batches(self, graph: Data, train: bool, shard: tuple[int, int] = (0, 1)) -> Iterator[Data]:
        clusters = self.clusters(graph)
        order = torch.randperm(len(clusters)) if train else torch.arange(len(clusters))
        rank, world = shard
        for group in order.split(self.clusters_per_batch)[rank::world]:
            nodes = torch.cat([clusters[i] for i in group.tolist()]).sort().values
            yield induced_subgraph(graph, nodes.to(graph.edge_index.device))

    def num_batches(self, graph: Data, train: bool) -> int:
        """What :meth:`batches` yields: the progress bar's total."""
        return -(-len(self.clusters(graph)) // self.clusters_per_batch)

    def __repr__(self) -> str:
        return f"Cluster(num_parts={self.num_parts}, clusters_per_batch={self.clusters_per_batch})"
