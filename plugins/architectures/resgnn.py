"""ResGNN: the pre-activation residual baseline (DeeperGCN "res+"), X_{l+1} = X_l + f_l(X_l)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from gnn1000.registry import register

from .blocks import OutputHead, PreActBlock, check_dropout, check_sizes, preserved_buffers


@register("architectures", "resgnn")
class ResGNN(torch.nn.Module):
    """Residual GNN; ``weight_tied`` reuses one block, ``checkpoint`` recomputes each block in backward."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int, *,
                 operator="gen", norm="layernorm", dropout: float = 0.0, edge_dim: int | None = None,
                 weight_tied: bool = False, checkpoint: bool = False, readout: str | None = None,
                 input_dropout: float = 0.0):
        super().__init__()
        check_sizes("resgnn", in_channels, hidden_channels, out_channels, num_layers)
        self.num_layers = num_layers
        self.weight_tied = weight_tied
        self.checkpoint = checkpoint
        self.input_dropout = check_dropout(input_dropout)  # on the raw features, before the encoder
        self.encoder = torch.nn.Linear(in_channels, hidden_channels)
        self.blocks = torch.nn.ModuleList(
            PreActBlock(hidden_channels, hidden_channels, operator=operator, norm=norm,
                        dropout=dropout, edge_dim=edge_dim)
            for _ in range(1 if weight_tied else num_layers)
        )
        self.head = OutputHead(hidden_channels, out_channels, norm=norm, dropout=dropout, readout=readout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None) -> Tensor:
        h = self.encoder(F.dropout(x, self.input_dropout, self.training))
        for layer in range(self.num_layers):
            block = self.blocks[0 if self.weight_tied else layer]
            if self.checkpoint and torch.is_grad_enabled():
                # The recomputation in backward must not update BatchNorm's running statistics again.
                h = h + activation_checkpoint(block, h, edge_index, edge_attr, batch, use_reentrant=False,
                                              context_fn=lambda b=block: (nullcontext(), preserved_buffers(b)))
            else:
                h = h + block(h, edge_index, edge_attr, batch)
        return self.head(h, batch)
