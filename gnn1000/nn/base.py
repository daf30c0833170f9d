"""The shell every deep GNN shares: encoder -> (input and edge dropout) -> stack -> output head.

In the spirit of PyG's ``BasicGNN``: :class:`DeepGNN` owns the size and dropout checks, the input
encoder, DropEdge, the output head with its readout, ``reset_parameters``, ``__repr__`` and the
record of its constructor arguments; a subclass (``ResGNN``, ``RevGNN``, ``DEQGNN``, or a
third-party architecture) builds and runs only its stack of blocks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gnn1000.nn.blocks import OutputHead, check_dropout, check_sizes, drop_edges
from gnn1000.nn.resolver import ModuleSpec, reset


class DeepGNN(torch.nn.Module):
    """Encoder -> :meth:`build_stack`'s blocks -> output head; subclasses implement the stack.

    A subclass declares its own options in its ``__init__`` signature (so gin and ``help()`` see
    them), checks them, and passes every one on to ``super().__init__(..., **stack_options)`` (that
    is how a run records them: see :attr:`arguments`), which
    builds the encoder, then calls :meth:`build_stack` with the shared options and
    ``stack_options``, then builds the head: parameters are created in that order, so a seed gives
    the same weights whatever the subclass. The forward pass drops input features and edges, runs
    :meth:`run_stack` on the encoded nodes, and applies the head.

    Args:
        in_channels: Width of the input node features.
        hidden_channels: Width of the node states.
        out_channels: Number of outputs per node (per graph with ``readout``).
        num_layers: Depth of the stack.
        operator: The graph convolution: a registry name, a class such as
            ``torch_geometric.nn.SAGEConv``, or a callable ``(in, out, **kwargs)``.
        norm: The normalisation: a registry name, a class or a callable ``(channels, **kwargs)``.
        dropout: Dropout probability in the stack and the head.
        edge_dim: Width of the edge features, or None.
        operator_kwargs: Extra constructor arguments of the operator.
        norm_kwargs: Extra constructor arguments of the norm.
        readout: None for node outputs, else 'mean', 'sum' or 'max' pooling per graph.
        input_dropout: Dropout on the raw features, before the encoder.
        edge_dropout: DropEdge: the fraction of undirected edges dropped in each training forward
            pass (the same graph in every layer).
        **stack_options: The subclass's own options, passed to :meth:`build_stack`.

    :attr:`arguments` holds the arguments the model was built with, defaults included (the shared
    ones and ``stack_options``), so a run built in Python can record and rebuild it. Shapes: ``x`` (N, in_channels), ``edge_index`` (2, E),
    ``edge_attr`` (E, edge_dim), ``batch`` (N,) -> (N, out_channels), or (num_graphs, out_channels)
    with ``readout``.
    """

    #: The name options are reported under in errors (``<config_name>.dropout=...``); by default
    #: the class name in lower case.
    config_name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("config_name"):
            cls.config_name = cls.__name__.lower()

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, num_layers: int, *,
                 operator: ModuleSpec = "gen", norm: ModuleSpec = "layernorm", dropout: float = 0.0,
                 edge_dim: int | None = None, operator_kwargs: dict | None = None, norm_kwargs: dict | None = None,
                 readout: str | None = None, input_dropout: float = 0.0, edge_dropout: float = 0.0,
                 **stack_options: Any):
        super().__init__()
        name = self.config_name
        # What the CLI needs to build this model again (gnn1000.recorded writes it into config.gin).
        self.arguments = dict(in_channels=in_channels, hidden_channels=hidden_channels, out_channels=out_channels,
                              num_layers=num_layers, operator=operator, norm=norm, dropout=dropout,
                              edge_dim=edge_dim, operator_kwargs=operator_kwargs, norm_kwargs=norm_kwargs,
                              readout=readout, input_dropout=input_dropout, edge_dropout=edge_dropout,
                              **stack_options)
        check_sizes(name, in_channels, hidden_channels, out_channels, num_layers)
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.num_layers = num_layers
        self.dropout = check_dropout(dropout, "dropout", name)
        self.input_dropout = check_dropout(input_dropout, "input_dropout", name)  # on the raw features
        self.edge_dropout = check_dropout(edge_dropout, "edge_dropout", name)  # DropEdge, once per forward pass
        self.encoder = torch.nn.Linear(in_channels, hidden_channels)
        self.build_stack(hidden_channels, num_layers, operator=operator, norm=norm, dropout=self.dropout,
                         edge_dim=edge_dim, operator_kwargs=operator_kwargs, norm_kwargs=norm_kwargs,
                         **stack_options)
        self.head = OutputHead(hidden_channels, out_channels, norm=norm, dropout=dropout, readout=readout,
                               norm_kwargs=norm_kwargs)

    # -- what a subclass implements ---------------------------------------------------------------

    def build_stack(self, hidden_channels: int, num_layers: int, *, operator: ModuleSpec, norm: ModuleSpec,
                    dropout: float, edge_dim: int | None, operator_kwargs: dict | None,
                    norm_kwargs: dict | None, **stack_options: Any) -> None:
        """Create the stack's modules (as attributes) from the shared options and the subclass's own."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_stack")

    def run_stack(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None, batch: Tensor | None) -> Tensor:
        """The encoded node states (N, hidden_channels) after the stack, on the graph left by DropEdge."""
        raise NotImplementedError(f"{type(self).__name__} must implement run_stack")

    def reset_stack(self) -> None:
        """Fresh weights for the stack: by default every module besides the encoder and the head."""
        for name, child in self.named_children():
            if name not in ("encoder", "head"):
                reset(child)

    def repr_options(self) -> dict[str, Any]:
        """The options ``repr`` shows after the sizes and depth."""
        return {}

    # -- the shell --------------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        reset(self.encoder)
        self.reset_stack()
        self.head.reset_parameters()

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in {"num_layers": self.num_layers, **self.repr_options()}.items())
        return f"{type(self).__name__}({self.in_channels}, {self.hidden_channels}, {self.out_channels}{options})"

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None) -> Tensor:
        h = self.encoder(F.dropout(x, self.input_dropout, self.training))
        edge_index, edge_attr = drop_edges(edge_index, edge_attr, self.edge_dropout, self.training)
        return self.head(self.run_stack(h, edge_index, edge_attr, batch), batch)
