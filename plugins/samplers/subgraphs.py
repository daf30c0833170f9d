"""What the mini-batch samplers share: cutting an induced subgraph out of the graph."""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from gnn1000.errors import ConfigError


def induced_subgraph(graph: Data, nodes: torch.Tensor) -> Data:
    """The subgraph on ``nodes`` (sorted ids) with every node and edge attribute, plus ``n_id``."""
    sub = graph.subgraph(nodes)
    sub.n_id = nodes
    return sub


def check_positive(name: str, **values: int) -> None:
    for arg, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name}.{arg}={value!r} must be a positive integer.")
