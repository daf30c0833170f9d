"""ResGNN: the pre-activation residual baseline (DeeperGCN "res+"), X_{l+1} = X_l + f_l(X_l), or the
plain stack X_{l+1} = f_l(X_l) that GCNII uses."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from gnn1000.errors import check_bools
from gnn1000.nn.base import DeepGNN
from gnn1000.nn.blocks import PreActBlock, check_depth_fits, preserved_buffers
from gnn1000.nn.resolver import ModuleSpec
from gnn1000.registry import register


@register("architectures", "resgnn")
class ResGNN(DeepGNN):
    """Residual GNN (DeeperGCN res+): encoder -> ``num_layers`` pre-activation blocks -> output head.

    Args:
        in_channels: Width of the input node features.
        hidden_channels: Width of the node states.
        out_channels: Number of outputs per node (per graph with ``readout``).
        num_layers: Number of residual blocks; activation memory grows linearly with it.
        operator: The graph convolution: a registry name, a class such as
            ``torch_geometric.nn.SAGEConv``, or a callable ``(in, out, **kwargs)``.
        norm: The normalisation: a registry name, a class or a callable ``(channels, **kwargs)``.
        dropout: Dropout probability in each block and the head.
        edge_dim: Width of the edge features, or None; passed to operators that take it.
        operator_kwargs: Extra constructor arguments of the operator.
        norm_kwargs: Extra constructor arguments of the norm.
        branch_scale: None, or the initial value of a learnable per-channel scale on each block's
            output (LayerScale): a small value starts deep stacks near the identity.
        input_dropout: Dropout on the raw features, before the encoder.
        edge_dropout: DropEdge: the fraction of undirected edges dropped in each training
            forward pass (the same graph in every layer).
        weight_tied: Reuse one block's weights in every layer (WT-ResGNN).
        checkpoint: Recompute each block in the backward pass (torch.utils.checkpoint).
        readout: None for node outputs, else 'mean', 'sum' or 'max' pooling per graph.
        residual: False for the plain stack X_{l+1} = f_l(X_l): GCNII's (its operator keeps the
            identity inside, through x0 and beta_l), where a residual sum doubles the signal per layer.

    Shapes: ``x`` (N, in_channels), ``edge_index`` (2, E), ``edge_attr`` (E, edge_dim),
    ``batch`` (N,) -> (N, out_channels), or (num_graphs, out_channels) with ``readout``.

    >>> model = ResGNN(8, 16, 3, num_layers=2, operator="sage")
    >>> model(torch.randn(5, 8), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])).shape
    torch.Size([5, 3])
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int, *,
                 operator: ModuleSpec = "gen", norm: ModuleSpec = "layernorm", dropout: float = 0.0,
                 edge_dim: int | None = None, operator_kwargs: dict | None = None,
                 norm_kwargs: dict | None = None, weight_tied: bool = False, checkpoint: bool = False,
                 readout: str | None = None, input_dropout: float = 0.0, branch_scale: float | None = None,
                 edge_dropout: float = 0.0, residual: bool = True):
        check_bools("resgnn", weight_tied=weight_tied, checkpoint=checkpoint, residual=residual)
        super().__init__(in_channels, hidden_channels, out_channels, num_layers, operator=operator, norm=norm,
                         dropout=dropout, edge_dim=edge_dim, operator_kwargs=operator_kwargs,
                         norm_kwargs=norm_kwargs, readout=readout, input_dropout=input_dropout,
                         edge_dropout=edge_dropout, weight_tied=weight_tied, checkpoint=checkpoint,
                         branch_scale=branch_scale, residual=residual)

    def build_stack(self, hidden_channels, num_layers, *, weight_tied, checkpoint, branch_scale, residual,
                    **shared):
        if not weight_tied:
            check_depth_fits("resgnn", num_layers, hidden_channels)
        self.weight_tied = weight_tied
        self.checkpoint = checkpoint
        self.residual = residual
        self.blocks = torch.nn.ModuleList(
            PreActBlock(hidden_channels, hidden_channels, branch_scale=branch_scale, **shared)
            for _ in range(1 if weight_tied else num_layers)
        )

    def repr_options(self) -> dict:
        return {"weight_tied": self.weight_tied}

    def run_stack(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None, batch: Tensor | None) -> Tensor:
        x0 = h if self.blocks[0].needs_x0 else None  # initial-residual operators (GCNII) see the encoded input
        for layer in range(self.num_layers):
            block = self.blocks[0 if self.weight_tied else layer]
            if self.checkpoint and torch.is_grad_enabled():
                # The recomputation in backward must not update BatchNorm's running statistics again.
                out = activation_checkpoint(block, h, edge_index, edge_attr, batch, None, x0, layer + 1,
                                            use_reentrant=False,
                                            context_fn=lambda b=block: (nullcontext(), preserved_buffers(b)))
            else:
                out = block(h, edge_index, edge_attr, batch, x0=x0, layer=layer + 1)
            h = h + out if self.residual else out
        return h
