"""PairNorm behind gnn1000's norm contract: ``Norm(channels, **options)``, called as ``norm(x, batch=None)``."""

from __future__ import annotations

from torch_geometric import nn as pyg_nn

from gnn1000.errors import check_bools, check_number


class PairNorm(pyg_nn.PairNorm):
    """PairNorm (Zhao and Akoglu, ICLR 2020): centres the node representations and rescales them so
    that their total pairwise distance stays constant, against the over-smoothing that makes the
    nodes of a deep GNN alike. Parameter-free; with ``batch`` each graph is normalised on its own.

    PyG's PairNorm needs no width; gnn1000 hands every norm its ``channels``, kept here for ``repr``.
    """

    def __init__(self, channels: int, *, scale: float = 1.0, scale_individually: bool = False,
                 eps: float = 1e-5):
        check_number("pairnorm", "scale", scale, low=0, low_open=True)
        check_number("pairnorm", "eps", eps, low=0, low_open=True)
        check_bools("pairnorm", scale_individually=scale_individually)
        super().__init__(scale=scale, scale_individually=scale_individually, eps=eps)
        self.channels = channels

    def __repr__(self) -> str:
        return f"PairNorm({self.channels}, scale={self.scale})"
