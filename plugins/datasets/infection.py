"""``infection``: a node task whose answer lies many hops away, from PyG's ``InfectionDataset``.

Each node's label is its shortest-path distance to the nearest infected node, capped at
``max_path_length + 1`` (infected nodes are 0). An L-layer message-passing model sees only its
L-hop ball: every node farther than L from an infection sees the same all-healthy ball (on a
torus every ball is the same graph), so its best possible accuracy is the share of nodes within L
hops plus the largest class share beyond L. :func:`depth_ceiling` computes that from the labels.

The split is by graph (inductive): train, valid and test graphs are different graphs, trained and
scored full-batch over their disjoint union.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data
from torch_geometric.datasets import InfectionDataset
from torch_geometric.datasets.graph_generator import GraphGenerator, GridGraph
from torch_geometric.utils import to_undirected

from gnn1000.data import SPLITS, NodeTaskData, random_split
from gnn1000.errors import ConfigError, check_number
from gnn1000.registry import register
from gnn1000.task import Task


class TorusGraph(GraphGenerator):
    """A ``height`` x ``width`` torus: a grid whose rows and columns wrap around, each node joined to
    its 4 neighbours. No node sits on a border, so every node's L-hop ball is the same graph."""

    def __init__(self, height: int, width: int):
        super().__init__()
        self.height, self.width = height, width

    def __call__(self) -> Data:
        row, col = torch.meshgrid(torch.arange(self.height), torch.arange(self.width), indexing="ij")
        node = row * self.width + col
        right = row * self.width + (col + 1) % self.width
        down = ((row + 1) % self.height) * self.width + col
        edge_index = torch.stack([torch.cat([node.flatten(), node.flatten()]),
                                  torch.cat([right.flatten(), down.flatten()])])
        pos = torch.stack([row.flatten(), col.flatten()], dim=1).float()
        return Data(edge_index=to_undirected(edge_index, num_nodes=self.height * self.width), pos=pos,
                    num_nodes=self.height * self.width)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(height={self.height}, width={self.width})"


GRAPHS = {"torus": TorusGraph, "grid": GridGraph}  # PyG's grid: 8 neighbours and self-loops


@register("datasets", "infection", metric="acc")
def infection(graph: str = "torus", size: int = 24, num_infected: int = 2, max_path_length: int = 16,
              num_graphs: int = 40, split=(0.5, 0.25, 0.25), seed: int = 0) -> NodeTaskData:
    """``num_graphs`` ``size`` x ``size`` graphs (``graph``: 'torus' or 'grid'), each with
    ``num_infected`` infected nodes; classes 0 .. ``max_path_length`` + 1. ``seed`` is the data's own:
    the same arguments always give the same graphs, labels and split, whatever ``experiment.seed`` is."""
    _check(graph, size, num_infected, max_path_length, num_graphs)
    with torch.random.fork_rng(devices=[]):  # PyG draws the infections from torch's global generator
        torch.manual_seed(seed)
        dataset = InfectionDataset(GRAPHS[graph](size, size), num_infected_nodes=num_infected,
                                   max_path_length=max_path_length, num_graphs=num_graphs)
        order = random_split(num_graphs, split, torch.Generator().manual_seed(seed), "infection")
    empty = [name for name in SPLITS if order[name].numel() == 0]
    if empty:
        raise ConfigError(f"infection: num_graphs={num_graphs} with split={tuple(split)} leaves no "
                          f"{' and no '.join(empty)} graph; the split is by graph, so use more graphs.")
    graphs = [Data(x=g.x, edge_index=g.edge_index, y=g.y) for g in dataset]
    union = Batch.from_data_list(graphs)
    graph_of_node = union.batch
    data = Data(x=union.x, edge_index=union.edge_index, y=union.y, graph_id=graph_of_node)
    for name in SPLITS:
        data[f"{name}_mask"] = torch.isin(graph_of_node, order[name])
    task = Task(type="multiclass", num_outputs=max_path_length + 2, metric="acc")
    return NodeTaskData(name="infection", graph=data, task=task, ceiling=depth_ceiling)


def depth_ceiling(data: NodeTaskData | Data, num_layers: int | None, split: str = "test") -> float:
    """The best accuracy an ``num_layers``-layer message-passing model can reach on ``split``: nodes
    within ``num_layers`` hops of an infection can be told apart, the rest only by guessing their
    most common label. None (an equilibrium model, unbounded receptive field) gives 1.0."""
    graph = data.graph if isinstance(data, NodeTaskData) else data
    if split not in SPLITS:
        raise ConfigError(f"depth_ceiling: split={split!r} is not one of {', '.join(SPLITS)}.")
    y = graph.y[graph[f"{split}_mask"]]
    if num_layers is None or y.numel() == 0:
        return 1.0
    far = y[y > num_layers]
    best_guess = int(torch.bincount(far).max()) if far.numel() else 0
    return (int((y <= num_layers).sum()) + best_guess) / y.numel()


def _check(graph, size, num_infected, max_path_length, num_graphs) -> None:
    if graph not in GRAPHS:
        raise ConfigError(f"infection.graph={graph!r} is not supported; choose one of {', '.join(GRAPHS)}.")
    for name, value in dict(size=size, num_infected=num_infected, max_path_length=max_path_length,
                            num_graphs=num_graphs).items():
        check_number("infection", name, value, low=1, integer=True)
    if num_infected > size * size:
        raise ConfigError(f"infection.num_infected={num_infected} exceeds the {size * size} nodes of a "
                          f"{size} x {size} graph; choose at most {size * size}.")
