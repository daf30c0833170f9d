"""Pieces every architecture shares: the pre-activation block body, the encoder and the output head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

from gnn1000.errors import ConfigError, check_positive_ints
from gnn1000.registry import resolve

READOUTS = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


def build_operator(operator, in_channels: int, out_channels: int, edge_dim: int | None) -> torch.nn.Module:
    return resolve("operators", operator)(in_channels, out_channels, edge_dim=edge_dim)


def build_norm(norm, channels: int) -> torch.nn.Module:
    return resolve("norms", norm)(channels)


def check_dropout(dropout: float) -> float:
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout={dropout} is out of range; it must be in [0, 1).")
    return float(dropout)


def shared_dropout_mask(like: Tensor, p: float, training: bool) -> Tensor | None:
    """One dropout mask (already scaled by 1/(1-p)) for every layer or iterate: reversible stacks
    and equilibrium solves need each block to be the same function every time it runs."""
    if not training or p == 0:
        return None
    return torch.empty_like(like).bernoulli_(1 - p).div_(1 - p)


class PreActBlock(torch.nn.Module):
    """Norm -> ReLU -> Dropout -> Conv (DeeperGCN's res+ body, the paper's f_i).

    ``dropout_mask`` lets a reversible stack apply one mask in every layer, which its inverse needs.
    """

    def __init__(self, in_channels: int, out_channels: int, *, operator="gen", norm="layernorm",
                 dropout: float = 0.0, edge_dim: int | None = None):
        super().__init__()
        self.norm = build_norm(norm, in_channels)
        self.conv = build_operator(operator, in_channels, out_channels, edge_dim)
        self.dropout = check_dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | None = None) -> Tensor:
        h = F.relu(self.norm(x, batch))
        if dropout_mask is not None:
            h = h * dropout_mask
        else:
            h = F.dropout(h, self.dropout, self.training)
        return self.conv(h, edge_index, edge_attr)


class OutputHead(torch.nn.Module):
    """Norm -> ReLU -> Dropout -> (pool per graph) -> Linear, after the last block."""

    def __init__(self, hidden_channels: int, out_channels: int, *, norm="layernorm",
                 dropout: float = 0.0, readout: str | None = None):
        super().__init__()
        if readout is not None and readout not in READOUTS:
            raise ConfigError(f"readout={readout!r} is not supported; choose None or one of {', '.join(READOUTS)}.")
        self.norm = build_norm(norm, hidden_channels)
        self.dropout = check_dropout(dropout)
        self.readout = readout
        self.lin = torch.nn.Linear(hidden_channels, out_channels)

    def forward(self, h: Tensor, batch: Tensor | None = None) -> Tensor:
        h = F.relu(self.norm(h, batch))
        h = F.dropout(h, self.dropout, self.training)
        if self.readout is not None:
            if batch is None:
                batch = h.new_zeros(h.size(0), dtype=torch.long)
            h = READOUTS[self.readout](h, batch)
        return self.lin(h)


def check_sizes(name: str, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int) -> None:
    check_positive_ints(name, in_channels=in_channels, hidden_channels=hidden_channels,
                        out_channels=out_channels, num_layers=num_layers)


@contextmanager
def preserved_buffers(module: torch.nn.Module) -> Iterator[None]:
    """Put every buffer back on exit (BatchNorm's running statistics, its batch counter).

    A forward recomputed for the backward pass must not count the training step a second time.
    """
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
