"""Thin adapters that give PyG's convolutions one constructor and one call signature.

Composition, not subclassing: PyG generates ``propagate`` per class from its first instance, so
wrapping keeps PyG's own classes untouched.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import GATConv, GCNConv, GENConv, SAGEConv

from gnn1000.errors import ConfigError, check_number, check_positive_ints
from gnn1000.registry import register


class _Adapter(torch.nn.Module):
    conv: torch.nn.Module
    uses_edge_attr = False

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        if self.uses_edge_attr:
            return self.conv(x, edge_index, edge_attr)
        return self.conv(x, edge_index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.conv!r})"


@register("operators", "gen")
class GEN(_Adapter):
    """DeeperGCN's generalized aggregation (softmax / power / max), with edge features."""

    uses_edge_attr = True
    AGGRS = ("softmax", "powermean", "max", "mean", "add")

    def __init__(self, in_channels: int, out_channels: int, *, edge_dim: int | None = None,
                 aggr: str = "softmax", t: float = 1.0, learn_t: bool = True, p: float = 1.0,
                 learn_p: bool = False, msg_norm: bool = False, mlp_layers: int = 1,
                 mlp_norm: str = "layer"):
        super().__init__()
        if aggr not in self.AGGRS:
            raise ConfigError(f"gen.aggr={aggr!r} is not supported; choose one of {', '.join(self.AGGRS)}.")
        check_positive_ints("gen", mlp_layers=mlp_layers)
        check_number("gen", "t", t, low=0, low_open=True)
        check_number("gen", "p", p)
        self.conv = GENConv(in_channels, out_channels, aggr=aggr, t=t, learn_t=learn_t, p=p,
                            learn_p=learn_p, msg_norm=msg_norm, num_layers=mlp_layers,
                            norm=mlp_norm, edge_dim=edge_dim)
        self.uses_edge_attr = edge_dim is not None


@register("operators", "gcn")
class GCN(_Adapter):
    """Kipf and Welling's GCN; ignores edge features, normalises on every (sub)graph it sees."""

    def __init__(self, in_channels: int, out_channels: int, *, edge_dim: int | None = None,
                 improved: bool = False, add_self_loops: bool = True, normalize: bool = True):
        super().__init__()
        self.conv = GCNConv(in_channels, out_channels, improved=improved, cached=False,
                            add_self_loops=add_self_loops, normalize=normalize)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        # PyG gives the self-loops improved's weight 2 only when edge weights are passed: pass ones.
        weight = x.new_ones(edge_index.size(1)) if self.conv.improved else None
        return self.conv(x, edge_index, weight)


@register("operators", "sage")
class SAGE(_Adapter):
    """GraphSAGE; ignores edge features."""

    def __init__(self, in_channels: int, out_channels: int, *, edge_dim: int | None = None,
                 aggr: str = "mean", normalize: bool = False, root_weight: bool = True):
        super().__init__()
        self.conv = SAGEConv(in_channels, out_channels, aggr=aggr, normalize=normalize,
                             root_weight=root_weight)


@register("operators", "gat")
class GAT(_Adapter):
    """GAT with ``heads`` heads concatenated to ``out_channels``; uses edge features when given."""

    def __init__(self, in_channels: int, out_channels: int, *, edge_dim: int | None = None,
                 heads: int = 1, attention_dropout: float = 0.0, negative_slope: float = 0.2,
                 add_self_loops: bool = True):
        super().__init__()
        check_positive_ints("gat", heads=heads)
        check_number("gat", "attention_dropout", attention_dropout, low=0, high=1, high_open=True)
        check_number("gat", "negative_slope", negative_slope, low=0)
        if out_channels % heads:
            raise ConfigError(
                f"gat: out_channels={out_channels} must be divisible by heads={heads} "
                f"(the heads are concatenated); choose heads among "
                f"{[h for h in range(1, out_channels + 1) if out_channels % h == 0][:8]}."
            )
        self.conv = GATConv(in_channels, out_channels // heads, heads=heads, concat=True,
                            dropout=attention_dropout, negative_slope=negative_slope,
                            add_self_loops=add_self_loops, edge_dim=edge_dim)
        self.uses_edge_attr = edge_dim is not None
