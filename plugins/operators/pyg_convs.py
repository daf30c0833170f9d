"""Thin adapters that give PyG's convolutions one constructor and one call signature.

Composition, not subclassing: PyG generates ``propagate`` per class from its first instance, so
wrapping keeps PyG's own classes untouched.
"""

from __future__ import annotations

import contextlib
import math
import weakref

import torch
from torch import Tensor
from torch_geometric.nn import GATConv, GCN2Conv, GCNConv, GENConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from gnn1000.errors import ConfigError, check_number, check_positive_ints
from gnn1000.registry import register

_last_norm: tuple = ()  # (weakref to edge_index, its version, the settings, the normalised graph)
_reuse_norm = True  # normalization_cache(False) turns the reuse off: what bench speed --no-norm-cache measures


@contextlib.contextmanager
def normalization_cache(enabled: bool = True):
    """Within the block, :func:`normalized_graph` reuses the last graph's normalisation (the default)
    or, disabled, normalises again in every layer and backward as PyG's ``cached=False`` does. On
    leaving it the kept graph is dropped, so the next forward pass normalises its graph once again."""
    global _reuse_norm, _last_norm
    saved, _reuse_norm = _reuse_norm, enabled
    try:
        yield
    finally:
        _reuse_norm, _last_norm = saved, ()


@torch.compiler.disable  # eager under torch.compile: a traced cache lookup guards on the tensor's identity, recompiling
def normalized_graph(edge_index: Tensor, num_nodes: int, *, add_self_loops: bool, improved: bool,
                     dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """GCN's D^-1/2 (A + I) D^-1/2 as (edge_index, edge_weight), computed once per graph.

    Every layer of a stack (and its reversible backward) sees the same ``edge_index`` tensor, so the
    last result is kept, keyed by that tensor's identity and version: 128 GCN layers normalise
    once per forward pass instead of 128 times (PyG's ``cached=True`` would keep the first graph
    forever, wrong for the random partitions that change every batch).
    """
    global _last_norm
    key = (edge_index._version, num_nodes, add_self_loops, improved, dtype, edge_index.device)
    if _reuse_norm and _last_norm and _last_norm[0]() is edge_index and _last_norm[1] == key:
        return _last_norm[2]
    weight = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    result = gcn_norm(edge_index, weight, num_nodes, improved, add_self_loops, dtype=dtype)
    _last_norm = (weakref.ref(edge_index), key, result)
    return result


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


class _Normalized(_Adapter):
    """A GCN-style conv fed the graph :func:`normalized_graph` normalised once for every layer."""

    improved = False

    def __init__(self, add_self_loops: bool, normalize: bool):
        super().__init__()
        self.add_self_loops, self.normalize = add_self_loops, normalize

    def graph(self, x: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor | None]:
        if not self.normalize:
            return edge_index, None
        return normalized_graph(edge_index, x.size(0), add_self_loops=self.add_self_loops,
                                improved=self.improved, dtype=x.dtype)


@register("operators", "gcn")
class GCN(_Normalized):
    """Kipf and Welling's GCN; ignores edge features, normalises each (sub)graph once per forward pass."""

    def __init__(self, in_channels: int, out_channels: int, *, edge_dim: int | None = None,
                 improved: bool = False, add_self_loops: bool = True, normalize: bool = True):
        super().__init__(add_self_loops, normalize)
        self.improved = improved  # self-loops of weight 2 (PyG applies it only with edge weights)
        self.conv = GCNConv(in_channels, out_channels, improved=improved, cached=False,
                            add_self_loops=False, normalize=False)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        return self.conv(x, *self.graph(x, edge_index))


@register("operators", "gcn2")
class GCN2(_Normalized):
    """GCNII (Chen et al., ICML 2020): initial residual and identity mapping,
    ``((1 - alpha) Â x + alpha x0) ((1 - beta_l) I + beta_l W)`` with ``beta_l = log(theta / l + 1)``.

    Takes ``x0`` and ``layer`` from the stack (:data:`~gnn1000.nn.resolver.STACK_INPUTS`): ``x0`` is
    the stack's input (its group's slice in RevGNN), ``layer`` the 1-based depth; an equilibrium block
    has no depth and uses ``beta_1``. ``shared_weights=False`` gives x0 its own weight (GCNII*).
    """

    def __init__(self, in_channels: int, out_channels: int, *, edge_dim: int | None = None,
                 alpha: float = 0.1, theta: float = 0.5, shared_weights: bool = True,
                 add_self_loops: bool = True, normalize: bool = True):
        super().__init__(add_self_loops, normalize)
        if in_channels != out_channels:
            raise ConfigError(f"gcn2: in_channels={in_channels} and out_channels={out_channels} must be equal: "
                              f"GCNII maps a representation to one of the same width, as x0 has.")
        check_number("gcn2", "alpha", alpha, low=0, high=1)
        check_number("gcn2", "theta", theta, low=0, low_open=True)
        if not isinstance(shared_weights, bool):
            raise ConfigError(f"gcn2.shared_weights={shared_weights!r} must be True or False.")
        self.theta = float(theta)
        self.conv = GCN2Conv(in_channels, alpha, shared_weights=shared_weights, cached=False,
                             add_self_loops=False, normalize=False)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None, *,
                x0: Tensor | None = None, layer: int | None = None) -> Tensor:
        if x0 is None:
            raise ConfigError("gcn2 needs x0, the stack's initial representation; use it inside a gnn1000 "
                              "stack (RevGNN, ResGNN, DEQGNN) or pass x0= yourself.")
        self.conv.beta = math.log(self.theta / (layer or 1) + 1)  # the layer running now sets it
        return self.conv(x, x0, *self.graph(x, edge_index))


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
