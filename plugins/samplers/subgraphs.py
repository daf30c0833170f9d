"""What the mini-batch samplers share: cutting an induced subgraph out of the graph."""

from __future__ import annotations

import torch
from torch_geometric.data import Data



def induced_subgraph(graph: Data, nodes: torch.Tensor) -> Data:
    """The subgraph on ``nodes`` (sorted ids) with every node and edge attribute, plus ``n_id``."""
    sub = graph.subgraph(nodes)
    sub.n_id = nodes
    return sub
