"""RevGNN: grouped reversible GNN (Li et al. 2021), activation memory constant in depth."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import GATConv

from gnn1000.errors import ConfigError, check_bools
from gnn1000.nn.base import DeepGNN
from gnn1000.nn.blocks import LayerDropoutMasks, PreActBlock, check_depth_fits, shared_dropout_mask
from gnn1000.nn.resolver import ModuleSpec
from gnn1000.nn.reversible import GroupedCoupling, ReversibleStack
from gnn1000.registry import register


def check_groups(hidden_channels: int, num_groups: int) -> None:
    if not isinstance(num_groups, int) or num_groups < 2:
        raise ConfigError(f"revgnn: num_groups={num_groups!r} must be an integer >= 2.")
    if hidden_channels % num_groups:
        divisors = [c for c in range(2, hidden_channels + 1) if hidden_channels % c == 0][:8]
        raise ConfigError(
            f"revgnn: hidden_channels={hidden_channels} is not divisible by num_groups={num_groups}; "
            f"each group gets hidden_channels / num_groups channels. Choose num_groups among {divisors} "
            f"or change hidden_channels."
        )


def _check_deterministic(blocks: torch.nn.Module) -> None:
    """Randomness inside a block would differ between the forward and its reconstruction."""
    for name, module in blocks.named_modules():
        p = getattr(module, "dropout", 0.0) if isinstance(module, GATConv) else (
            module.p if isinstance(module, torch.nn.Dropout) else 0.0)
        if p > 0:
            raise ConfigError(
                f"revgnn: {name} ({type(module).__name__}) drops out with p={p} inside a reversible block, "
                f"so the backward pass could not reconstruct its input. Set that dropout to 0 and use "
                f"revgnn.dropout (masks the reversible backward can replay) instead."
            )


@register("architectures", "revgnn")
class RevGNN(DeepGNN):
    """Encoder -> ``num_layers`` grouped reversible blocks -> output head (Li et al. 2021).

    Args:
        in_channels: Width of the input node features.
        hidden_channels: Width D of the node states; divisible by ``num_groups``.
        out_channels: Number of outputs per node (per graph with ``readout``).
        num_layers: Number of reversible blocks L; activation memory does not grow with it.
        operator: The graph convolution of each group: a registry name ('gen', 'gcn', 'sage', 'gat'),
            a class such as ``torch_geometric.nn.GCNConv``, or a callable ``(in, out, **kwargs)``.
        norm: The normalisation: a registry name ('layernorm', 'batchnorm', 'graphnorm',
            'identity'), a class or a callable ``(channels, **kwargs)``.
        dropout: Dropout probability inside the blocks and in the head.
        dropout_masks: 'shared' (default) uses one mask for every layer, as the paper's code does;
            'per_layer' draws a fresh mask in every layer, regenerated from one seed in the backward
            pass, so memory stays flat in depth.
        edge_dim: Width of the edge features, or None; they are encoded to D and split per group.
        operator_kwargs: Extra constructor arguments of the operator (e.g. ``{"heads": 2}``).
        norm_kwargs: Extra constructor arguments of the norm (e.g. ``{"eps": 1e-6}``).
        branch_scale: None, or the initial value of a learnable per-channel scale on each f_i's
            output (LayerScale): a small value starts deep stacks near the identity.
        input_dropout: Dropout on the raw features, before the encoder.
        edge_dropout: DropEdge: the fraction of undirected edges dropped in each training
            forward pass (the same graph in every layer).
        num_groups: Number of groups C the channels are split into (>= 2).
        weight_tied: Share one block's weights across all layers (WT-RevGNN).
        reversible: False runs the same weights through plain autograd (the gradient reference).
        stream_dtype: The residual stream's dtype: 'float64' keeps the reconstruction exact over
            1000 layers; None uses the model's own dtype, as the paper's code does.
        readout: None for node outputs, else 'mean', 'sum' or 'max' pooling per graph.

    Shapes: ``x`` (N, in_channels), ``edge_index`` (2, E), ``edge_attr`` (E, edge_dim),
    ``batch`` (N,) -> (N, out_channels), or (num_graphs, out_channels) with ``readout``.

    >>> model = RevGNN(8, 16, 3, num_layers=4, operator="gcn")
    >>> model(torch.randn(5, 8), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])).shape
    torch.Size([5, 3])
    """

    STREAM_DTYPES = {"float64": torch.float64, "float32": torch.float32, None: None}
    DROPOUT_MASKS = ("per_layer", "shared")

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int, *,
                 operator: ModuleSpec = "gen", norm: ModuleSpec = "layernorm", dropout: float = 0.0,
                 edge_dim: int | None = None, operator_kwargs: dict | None = None,
                 norm_kwargs: dict | None = None, num_groups: int = 2, weight_tied: bool = False,
                 reversible: bool = True, stream_dtype: str | None = "float64", readout: str | None = None,
                 input_dropout: float = 0.0, dropout_masks: str = "shared", branch_scale: float | None = None,
                 edge_dropout: float = 0.0):
        check_bools("revgnn", weight_tied=weight_tied, reversible=reversible)
        check_groups(hidden_channels, num_groups)
        if stream_dtype not in self.STREAM_DTYPES:
            raise ConfigError(f"revgnn: stream_dtype={stream_dtype!r} is not supported; choose 'float64', "
                              f"'float32' or None (the model's dtype).")
        if dropout_masks not in self.DROPOUT_MASKS:
            raise ConfigError(f"revgnn: dropout_masks={dropout_masks!r} is not supported; choose 'per_layer' "
                              f"(a fresh mask in every layer) or 'shared' (one mask for every layer).")
        super().__init__(in_channels, hidden_channels, out_channels, num_layers, operator=operator, norm=norm,
                         dropout=dropout, edge_dim=edge_dim, operator_kwargs=operator_kwargs,
                         norm_kwargs=norm_kwargs, readout=readout, input_dropout=input_dropout,
                         edge_dropout=edge_dropout, num_groups=num_groups, weight_tied=weight_tied,
                         reversible=reversible, stream_dtype=stream_dtype, branch_scale=branch_scale,
                         dropout_masks=dropout_masks)

    def build_stack(self, hidden_channels, num_layers, *, edge_dim, num_groups, weight_tied, reversible,
                    stream_dtype, branch_scale, dropout_masks, **shared):
        self.dropout_masks = dropout_masks
        group_channels = hidden_channels // num_groups
        if not weight_tied:
            check_depth_fits("revgnn", num_layers, group_channels, num_groups)
        # Edge features are encoded once to hidden_channels and split per group, as in the paper's code.
        self.edge_encoder = torch.nn.Linear(edge_dim, hidden_channels) if edge_dim is not None else None

        def make_block() -> GroupedCoupling:
            return GroupedCoupling([
                PreActBlock(group_channels, group_channels, edge_dim=group_channels if edge_dim is not None else None,
                            branch_scale=branch_scale, **shared)
                for _ in range(num_groups)
            ])

        self.stack = ReversibleStack([make_block() for _ in range(1 if weight_tied else num_layers)],
                                     num_layers, reversible=reversible,
                                     stream_dtype=self.STREAM_DTYPES[stream_dtype])
        _check_deterministic(self.stack)

    def repr_options(self) -> dict:
        return {"num_groups": self.stack.num_groups, "weight_tied": self.stack.weight_tied,
                "reversible": self.reversible}

    @property
    def hops(self) -> int:
        """The receptive field in hops: group i's conv runs on group i-1's output, so one layer of C
        groups reaches C hops (one per operator application)."""
        return self.stack.num_layers * self.stack.num_groups

    @property
    def reversible(self) -> bool:
        return self.stack.reversible

    @reversible.setter
    def reversible(self, value: bool) -> None:
        self.stack.reversible = value

    def run_stack(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None, batch: Tensor | None) -> Tensor:
        edge = self.edge_encoder(edge_attr) if self.edge_encoder is not None and edge_attr is not None else None
        # Masks the reversible backward can apply again: one shared, or one per layer replayed from a seed.
        if self.training and self.dropout > 0 and self.dropout_masks == "per_layer":
            mask = LayerDropoutMasks(h, self.dropout)
        else:
            mask = shared_dropout_mask(h, self.dropout, self.training)
        return self.stack(h, edge_index, edge, batch, mask)
