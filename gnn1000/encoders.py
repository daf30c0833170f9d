"""Put a dataset's categorical-feature embeddings in front of an architecture.

Architectures take float features (``Arch(in_channels, ...)``); OGB's molecules carry atom and bond
category ids instead. Rather than teach every architecture about them, the experiment wraps the
model: ``Encoded`` embeds ``x`` and ``edge_attr`` with the factories the dataset names
(:class:`gnn1000.data.Encoders`) and calls the architecture on the embeddings.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnn1000.data import Encoders
from gnn1000.nn.resolver import reset
from gnn1000.protocols import EpochAware


class Encoded(torch.nn.Module):
    """``model(node_encoder(x), edge_index, edge_encoder(edge_attr), batch)``.

    Forwards the :class:`~gnn1000.protocols.EpochAware` calls to the model (no-ops when it has none),
    so the loop never looks behind the wrapper.
    """

    def __init__(self, model: torch.nn.Module, encoders: Encoders):
        super().__init__()
        self.node_encoder = encoders.node(encoders.dim) if encoders.node else None
        self.edge_encoder = encoders.edge(encoders.dim) if encoders.edge else None
        self.model = model

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None) -> Tensor:
        if self.node_encoder is not None:
            x = self.node_encoder(x)
        if self.edge_encoder is not None and edge_attr is not None:
            edge_attr = self.edge_encoder(edge_attr)
        return self.model(x, edge_index, edge_attr, batch)

    @property
    def num_layers(self) -> int | None:
        """The architecture's depth (the encoders add none)."""
        return getattr(self.model, "num_layers", None)

    @property
    def warming_up(self) -> bool:
        """Whether the architecture is still its warm-up stand-in (see :class:`~gnn1000.protocols.EpochAware`)."""
        return bool(getattr(self.model, "warming_up", False))

    def set_epoch(self, epoch: int) -> None:
        if isinstance(self.model, EpochAware):
            self.model.set_epoch(epoch)

    def pop_metrics(self) -> dict[str, float]:
        return self.model.pop_metrics() if isinstance(self.model, EpochAware) else {}

    def reset_parameters(self) -> None:
        for module in (self.node_encoder, self.edge_encoder, self.model):
            if module is not None:
                reset(module)


class NodeIdEmbedding(torch.nn.Module):
    """A learnable vector per node, for graphs without node features: ``x`` holds node ids."""

    def __init__(self, num_nodes: int, dim: int):
        super().__init__()
        self.embedding = torch.nn.Embedding(num_nodes, dim)
        # Small, so an unlabelled node's own untrained vector does not drown what its neighbours carry.
        torch.nn.init.normal_(self.embedding.weight, std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding(x.view(-1))


def wrap(model: torch.nn.Module, encoders: Encoders | None) -> torch.nn.Module:
    """The model itself when the dataset needs no encoder, else the model behind its encoders."""
    return Encoded(model, encoders) if encoders and (encoders.node or encoders.edge) else model
