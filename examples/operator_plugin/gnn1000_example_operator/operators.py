"""GATv2 behind gnn1000's operator contract: ``Op(in_channels, out_channels, *, edge_dim=None, **options)``,
called as ``op(x, edge_index, edge_attr=None)``."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import GATv2Conv

from gnn1000.errors import ConfigError, check_bools, check_number, check_positive_ints


class GATv2(torch.nn.Module):
    """GATv2 (Brody et al., ICLR 2022): scores neighbours after the nonlinearity, so which neighbour
    ranks first can depend on the node that attends ("dynamic" attention, which GAT's cannot).

    ``heads`` heads are concatenated to ``out_channels``, so a stack keeps its width whatever the
    number of heads; edge features enter the attention when the model has them (``edge_dim``).
    """

    def __init__(self, in_channels: int, out_channels: int, *, edge_dim: int | None = None, heads: int = 1,
                 attention_dropout: float = 0.0, negative_slope: float = 0.2, share_weights: bool = False,
                 add_self_loops: bool = True):
        super().__init__()
        check_positive_ints("gatv2", heads=heads)
        check_number("gatv2", "attention_dropout", attention_dropout, low=0, high=1, high_open=True)
        check_number("gatv2", "negative_slope", negative_slope, low=0)
        check_bools("gatv2", share_weights=share_weights, add_self_loops=add_self_loops)
        if out_channels % heads:
            divisors = [h for h in range(1, out_channels + 1) if out_channels % h == 0]
            raise ConfigError(f"gatv2: out_channels={out_channels} must be divisible by heads={heads}, because "
                              f"the heads are concatenated; choose heads among {divisors}.")
        self.conv = GATv2Conv(in_channels, out_channels // heads, heads=heads, concat=True,
                              dropout=attention_dropout, negative_slope=negative_slope,
                              add_self_loops=add_self_loops, edge_dim=edge_dim, share_weights=share_weights)

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        # GATv2Conv refuses edge features it was not built for: a model without edge_dim ignores them.
        return self.conv(x, edge_index, edge_attr if self.conv.edge_dim is not None else None)

    def __repr__(self) -> str:
        return f"GATv2({self.conv!r})"
