"""What the benchmarks measure: one training step of each model on one random graph.

Shared by ``gnn1000 bench memory``, ``gnn1000 bench speed``, ``gnn1000 bench paper`` and
``tests/benchmarks`` so that all of them time and size the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GroupAddRev

from gnn1000 import precision
from gnn1000.errors import ConfigError
from gnn1000.precision import PRECISIONS
from gnn1000.nn.blocks import OutputHead, PreActBlock, shared_dropout_mask
from gnn1000.plugins.architectures.deq import DEQGNN
from gnn1000.plugins.architectures.resgnn import ResGNN
from gnn1000.plugins.architectures.revgnn import RevGNN, check_groups

IN_CHANNELS, EDGE_DIM, OUT_CHANNELS = 8, 8, 112  # ogbn-proteins' sizes


def add_workload_options(parser) -> None:
    """The random graph and model width every point is measured on (``gnn1000 bench memory|speed``)."""
    parser.add_argument("--nodes", type=int, default=Workload.nodes, help="nodes of the random graph")
    parser.add_argument("--edges", type=int, default=Workload.edges, help="edges of the random graph")
    parser.add_argument("--channels", type=int, default=Workload.channels, help="hidden channels of every model")
    parser.add_argument("--groups", type=int, default=Workload.groups,
                        help="channel groups of the reversible models (must divide --channels)")


@dataclass
class Workload:
    nodes: int = 2000
    edges: int = 100_000
    channels: int = 80
    groups: int = 2
    dropout: float = 0.1
    operator: str = "gen"
    norm: str = "layernorm"
    seed: int = 0
    precision: str = "32"  # experiment.precision: '32', 'bf16' or '16' (autocast)


class GroupAddRevGNN(torch.nn.Module):
    """PyG's ``GroupAddRev`` (one autograd function per block) around RevGNN's own block bodies."""

    def __init__(self, w: Workload, num_layers: int):
        super().__init__()
        check_groups(w.channels, w.groups)
        group = w.channels // w.groups
        self.dropout = w.dropout
        self.encoder = torch.nn.Linear(IN_CHANNELS, w.channels)
        self.edge_encoder = torch.nn.Linear(EDGE_DIM, w.channels)
        self.layers = torch.nn.ModuleList(
            GroupAddRev(PreActBlock(group, group, operator=w.operator, norm=w.norm, dropout=w.dropout,
                                    edge_dim=group), num_groups=w.groups)
            for _ in range(num_layers)
        )
        self.head = OutputHead(w.channels, OUT_CHANNELS, norm=w.norm, dropout=w.dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None) -> Tensor:
        h = self.encoder(x)
        edge = self.edge_encoder(edge_attr)
        mask = shared_dropout_mask(h, self.dropout, self.training)
        for layer in self.layers:
            h = layer(h, edge_index, edge, batch, mask)  # GroupAddRev splits edge and mask per group
        return self.head(h, batch)


def _resgnn(w, layers, **opts):
    return ResGNN(IN_CHANNELS, w.channels, OUT_CHANNELS, layers, operator=w.operator, norm=w.norm,
                  dropout=w.dropout, edge_dim=EDGE_DIM, **opts)


def _revgnn(w, layers, **opts):
    return RevGNN(IN_CHANNELS, w.channels, OUT_CHANNELS, layers, operator=w.operator, norm=w.norm,
                  dropout=w.dropout, edge_dim=EDGE_DIM, num_groups=w.groups, **opts)


def _deq(w, iterations):
    """DEQ-GNN whose 'depth' is its iteration limit: tolerance 0 makes both solves run every iteration."""
    return DEQGNN(IN_CHANNELS, w.channels, OUT_CHANNELS, 1, operator=w.operator, norm=w.norm, dropout=w.dropout,
                  edge_dim=EDGE_DIM, fwd_tol=0.0, bwd_tol=0.0, fwd_max_iter=iterations, bwd_max_iter=iterations)


MODELS = {
    "resgnn": lambda w, n: _resgnn(w, n),
    "resgnn-checkpoint": lambda w, n: _resgnn(w, n, checkpoint=True),
    "revgnn": lambda w, n: _revgnn(w, n),
    "wt-revgnn": lambda w, n: _revgnn(w, n, weight_tied=True),
    "groupaddrev": lambda w, n: GroupAddRevGNN(w, n),
    "deq": _deq,  # n is the solvers' iteration limit, not a layer count
}
BASELINE = "resgnn"
LAYERED = [m for m in MODELS if m != "deq"]  # what depth means for: the memory and speed benchmarks' defaults


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}.")
    return name


def check_models(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ConfigError(f"unknown benchmark model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}.")
    return names


def check_args(command: str, args, sizes: tuple[str, ...], lists: tuple[str, ...] = ()) -> None:
    """A benchmark's numeric options and device, before any model is built: a size that is not a
    positive integer, or a device this machine lacks, is one paragraph naming the option."""
    from gnn1000.experiment import pick_device

    for name in sizes:
        value = getattr(args, name)
        if value < 1:
            raise ConfigError(f"gnn1000 bench {command} --{name.replace('_', '-')} {value}: must be a positive integer.")
    for name in lists:
        bad = [v for v in getattr(args, name) if v < 1]
        if bad:
            raise ConfigError(f"gnn1000 bench {command} --{name} {bad[0]}: every value must be a positive integer.")
    try:
        pick_device(args.device)
    except ConfigError as exc:
        raise ConfigError(f"gnn1000 bench {command} --device {args.device}: "
                          f"{str(exc).replace('experiment.device=', '').replace('use ', 'use --device ')}") from None


def make_graph(w: Workload, device: torch.device) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(w.seed)
    graph = {
        "x": torch.randn(w.nodes, IN_CHANNELS, generator=gen),
        "edge_index": torch.randint(w.nodes, (2, w.edges), generator=gen),
        "edge_attr": torch.rand(w.edges, EDGE_DIM, generator=gen),
        "y": torch.randint(2, (w.nodes, OUT_CHANNELS), generator=gen).float(),
    }
    return {k: v.to(device) for k, v in graph.items()}


class Trainer:
    """A model, its optimizer and the graph: ``step()`` is one full training step."""

    def __init__(self, model_name: str, num_layers: int, w: Workload, device: torch.device):
        torch.manual_seed(w.seed)
        self.model = MODELS[model_name](w, num_layers).to(device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.graph = make_graph(w, device)
        self.device, self.precision = device, check_precision(w.precision)

    def prime_optimizer(self) -> None:
        """Create the optimizer's state without a training step: a step on zero gradients moves nothing."""
        for p in self.model.parameters():
            p.grad = torch.zeros_like(p)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> float:
        g = self.graph
        self.optimizer.zero_grad(set_to_none=True)
        with precision.autocast(self.device, self.precision):  # as the experiment loop runs it
            out = self.model(g["x"], g["edge_index"], g["edge_attr"])
        loss = F.binary_cross_entropy_with_logits(out.float(), g["y"])
        loss.backward()
        self.optimizer.step()
        return loss.item()
