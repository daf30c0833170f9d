"""Pieces every architecture shares: the pre-activation block body, the encoder and the output head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import global_add_pool, global_max_pool, global_mean_pool

from gnn1000.errors import ConfigError, check_positive_ints
from gnn1000.nn.resolver import ModuleSpec, build_norm, build_operator, pick_stack_inputs, reset, stack_inputs

READOUTS = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


def check_dropout(dropout: float, name: str = "dropout", owner: str = "") -> float:
    """``dropout`` as a float in [0, 1); the error names the option (``owner.name``) and the value."""
    key = f"{owner}.{name}" if owner else name
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
        hint = " (write it without quotes in gin)" if isinstance(dropout, str) else ""
        raise ConfigError(f"{key}={dropout!r} is not a number; it must be a number in [0, 1){hint}.")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{key}={dropout} is out of range; it must be in [0, 1).")
    return float(dropout)


def drop_edges(edge_index: Tensor, edge_attr: Tensor | None, p: float,
               training: bool) -> tuple[Tensor, Tensor | None]:
    """DropEdge (Rong et al., ICLR 2020): drop a fraction ``p`` of the undirected edges, both directions
    together, once per forward pass, so every layer (and a reversible or implicit backward) sees the
    same graph; each kept edge keeps its own features."""
    if not training or p == 0 or edge_index.size(1) == 0:
        return edge_index, edge_attr
    # Not PyG's dropout_edge(force_undirected=True): it gives (v, u) the features of (u, v).
    lo, hi = edge_index.min(0).values, edge_index.max(0).values
    pairs, pair = torch.unique(lo * (hi.max() + 1) + hi, return_inverse=True)
    keep = torch.rand(pairs.numel(), device=edge_index.device)[pair] >= p
    return edge_index[:, keep], None if edge_attr is None else edge_attr[keep]


def shared_dropout_mask(like: Tensor, p: float, training: bool) -> Tensor | None:
    """One dropout mask (already scaled by 1/(1-p)) for every layer or iterate: reversible stacks
    and equilibrium solves need each block to be the same function every time it runs."""
    if not training or p == 0:
        return None
    return torch.empty_like(like).bernoulli_(1 - p).div_(1 - p)


class LayerDropoutMasks:
    """A fresh dropout mask per layer, regenerated on demand from one seed instead of stored.

    A reversible backward must apply the mask each layer's forward used; keeping L masks would make
    activation memory grow with depth, so layer ``i``'s mask is drawn from its own generator seeded
    with ``seed + i`` (as torch.utils.checkpoint replays RNG state) and drawn again when needed.
    The seed comes from torch's global generator, so ``torch.manual_seed`` makes a run repeatable.

    >>> masks = LayerDropoutMasks(torch.ones(4, 6), p=0.5)
    >>> torch.equal(masks(3), masks(3)), torch.equal(masks(0), masks(1))
    (True, False)
    """

    def __init__(self, like: Tensor, p: float, seed: int | None = None):
        self.shape, self.dtype, self.device, self.p = like.shape, like.dtype, like.device, p
        self.seed = int(torch.randint(0, 2**62, ())) if seed is None else seed

    def __call__(self, layer: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.seed + layer)
        mask = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        return mask.bernoulli_(1 - self.p, generator=generator).div_(1 - self.p)


def layer_dropout_mask(masks: Tensor | LayerDropoutMasks | None, layer: int) -> Tensor | None:
    """Layer ``layer``'s mask: the shared one, the one drawn for that layer, or None."""
    return masks(layer) if isinstance(masks, LayerDropoutMasks) else masks


def check_branch_scale(branch_scale: float | None) -> float | None:
    if branch_scale is not None and not (isinstance(branch_scale, (int, float)) and branch_scale > 0):
        raise ConfigError(f"branch_scale={branch_scale!r} must be None (no scale) or a number > 0, "
                          f"the initial value of the learnable per-channel scale of each block's output.")
    return None if branch_scale is None else float(branch_scale)


class PreActBlock(torch.nn.Module):
    """Norm -> ReLU -> Dropout -> Conv (DeeperGCN's res+ body, the paper's f_i).

    Args:
        in_channels: Width of the input node features.
        out_channels: Width of the output.
        operator: The graph convolution: a registry name (``gnn1000 list operators``), a class such
            as ``torch_geometric.nn.GCNConv``, or a callable ``(in_channels, out_channels, **kwargs)``.
        norm: The normalisation: a registry name, a class or a callable ``(channels, **kwargs)``.
        dropout: Dropout probability before the conv, in [0, 1).
        edge_dim: Width of the edge features, or None; passed only to operators that take it.
        operator_kwargs: Extra constructor arguments of the operator.
        norm_kwargs: Extra constructor arguments of the norm.
        branch_scale: None, or the initial value of a learnable per-channel scale on the output
            (LayerScale, Touvron et al. 2021): a small value starts each residual or reversible block
            near the identity, which deep stacks train better from; coupling stays invertible.

    Shapes: ``x`` (N, in_channels), ``edge_index`` (2, E), ``edge_attr`` (E, edge_dim),
    ``batch`` (N,) -> (N, out_channels). ``dropout_mask`` (N, in_channels) lets a reversible stack
    apply a mask it can replay in its backward pass (shared by every layer, or drawn per layer).
    ``x0`` (N, in_channels) and ``layer`` reach operators that take them
    (:data:`~gnn1000.nn.resolver.STACK_INPUTS`); :attr:`needs_x0` says whether this one does.

    >>> block = PreActBlock(8, 8, operator="gcn")
    >>> block(torch.randn(4, 8), torch.tensor([[0, 1, 2], [1, 2, 3]])).shape
    torch.Size([4, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, *, operator: ModuleSpec = "gen",
                 norm: ModuleSpec = "layernorm", dropout: float = 0.0, edge_dim: int | None = None,
                 operator_kwargs: dict | None = None, norm_kwargs: dict | None = None,
                 branch_scale: float | None = None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm = build_norm(norm, in_channels, norm_kwargs)
        self.conv = build_operator(operator, in_channels, out_channels, edge_dim, operator_kwargs)
        self.conv_inputs = stack_inputs(self.conv)
        self.dropout = check_dropout(dropout)
        self.branch_scale = check_branch_scale(branch_scale)
        self.scale = None
        if branch_scale is not None:
            self.scale = torch.nn.Parameter(torch.full((out_channels,), float(branch_scale)))

    def reset_parameters(self) -> None:
        reset(self.norm)
        reset(self.conv)
        if self.scale is not None:
            with torch.no_grad():
                self.scale.fill_(self.branch_scale)

    @property
    def needs_x0(self) -> bool:
        return "x0" in self.conv_inputs

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, dropout_mask: Tensor | None = None,
                x0: Tensor | None = None, layer: int | None = None) -> Tensor:
        h = F.relu(self.norm(x, batch))
        if dropout_mask is not None:
            h = h * dropout_mask
        else:
            h = F.dropout(h, self.dropout, self.training)
        h = self.conv(h, edge_index, edge_attr, **pick_stack_inputs(self.conv_inputs, x0, layer))
        return h if self.scale is None else h * self.scale

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, conv={self.conv!r})"


class OutputHead(torch.nn.Module):
    """Norm -> ReLU -> Dropout -> (pool per graph) -> Linear, after the last block.

    Args:
        hidden_channels: Width of the node states.
        out_channels: Number of outputs per node (or per graph with ``readout``).
        norm: As in :class:`PreActBlock`.
        dropout: Dropout probability before the linear layer.
        readout: None for node outputs, or how to pool nodes per graph: 'mean', 'sum' or 'max'.
        norm_kwargs: Extra constructor arguments of the norm.
    """

    def __init__(self, hidden_channels: int, out_channels: int, *, norm: ModuleSpec = "layernorm",
                 dropout: float = 0.0, readout: str | None = None, norm_kwargs: dict | None = None):
        super().__init__()
        if readout is not None and readout not in READOUTS:
            raise ConfigError(f"readout={readout!r} is not supported; choose None or one of {', '.join(READOUTS)}.")
        self.norm = build_norm(norm, hidden_channels, norm_kwargs)
        self.dropout = check_dropout(dropout)
        self.readout = readout
        self.lin = torch.nn.Linear(hidden_channels, out_channels)

    def reset_parameters(self) -> None:
        reset(self.norm)
        self.lin.reset_parameters()

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


# A lower bound on what one block costs beyond its weights: the modules' Python objects.
_BLOCK_OVERHEAD_BYTES = 4096


def check_depth_fits(name: str, num_layers: int, width: int, blocks_per_layer: int = 1) -> None:
    """Refuse, before building anything, a stack whose blocks alone cannot fit in this machine's memory:
    building 10^9 layers would otherwise grow memory for hours without a word. The estimate is a
    lower bound (one width x width weight and the module objects per block)."""
    import os

    try:
        physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    needed = num_layers * blocks_per_layer * (4 * width * width + _BLOCK_OVERHEAD_BYTES)
    if needed > physical:
        raise ConfigError(f"{name}.num_layers={num_layers:,} with blocks {width} channels wide needs at least "
                          f"{needed / 2**30:,.1f} GiB for its blocks alone, more than this machine's "
                          f"{physical / 2**30:,.1f} GiB of memory. Use fewer layers, or weight_tied=True "
                          f"(one block's weights for every layer).")


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
