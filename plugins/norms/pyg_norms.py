"""PyG's normalisation layers behind one signature: ``Norm(channels)``, ``norm(x, batch=None)``."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric import nn as pyg_nn

from gnn1000.registry import register


@register("norms", "layernorm")
class LayerNorm(pyg_nn.LayerNorm):
    """Per-node LayerNorm, the paper's default (PyG's ``mode='node'``)."""

    def __init__(self, channels: int, *, eps: float = 1e-5, affine: bool = True):
        super().__init__(channels, eps=eps, affine=affine, mode="node")

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        return super().forward(x)


@register("norms", "batchnorm")
class BatchNorm(pyg_nn.BatchNorm):
    """BatchNorm over the nodes of the (mini-)batch."""

    def __init__(self, channels: int, *, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__(channels, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, allow_single_element=True)

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        return super().forward(x)


@register("norms", "graphnorm")
class GraphNorm(pyg_nn.GraphNorm):
    """GraphNorm (Cai et al.), normalising each graph of the batch separately."""

    def __init__(self, channels: int, *, eps: float = 1e-5):
        super().__init__(channels, eps=eps)

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        return super().forward(x, batch)


@register("norms", "identity")
class Identity(torch.nn.Module):
    """No normalisation."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        return x

    def __repr__(self) -> str:
        return f"Identity({self.channels})"
