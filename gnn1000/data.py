"""The shape in which dataset plugins hand a graph to the experiment loop."""

from __future__ import annotations

from dataclasses import dataclass

from torch_geometric.data import Data

from gnn1000.task import Task

SPLITS = ("train", "valid", "test")


@dataclass
class NodeTaskData:
    """One graph whose nodes are predicted; ``graph`` carries ``train_mask``/``valid_mask``/``test_mask``."""

    name: str
    graph: Data
    task: Task
    level: str = "node"

    @property
    def num_features(self) -> int:
        return self.graph.num_node_features

    @property
    def edge_dim(self) -> int | None:
        attr = self.graph.edge_attr
        return None if attr is None else (1 if attr.dim() == 1 else attr.size(-1))

    @property
    def num_outputs(self) -> int:
        return self.task.num_outputs
