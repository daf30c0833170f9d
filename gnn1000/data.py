"""The shapes in which dataset plugins hand data to the experiment loop: one graph whose nodes are
predicted (:class:`NodeTaskData`), or many graphs each predicted whole (:class:`GraphTaskData`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch_geometric.data import Data, Dataset

from gnn1000.task import Task

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Encoders:
    """Embeddings for categorical input features (OGB's atom and bond ids): the dataset names the
    factories, the experiment puts them in front of any architecture, which then sees ``dim`` channels."""

    node: Callable[[int], torch.nn.Module] | None = None
    edge: Callable[[int], torch.nn.Module] | None = None
    dim: int = 64


def _edge_dim(edge_attr: torch.Tensor | None) -> int | None:
    return None if edge_attr is None else (1 if edge_attr.dim() == 1 else edge_attr.size(-1))


@dataclass
class NodeTaskData:
    """One graph whose nodes are predicted; ``graph`` carries ``train_mask``/``valid_mask``/``test_mask``."""

    name: str
    graph: Data
    task: Task
    level: str = "node"
    encoders: Encoders = field(default_factory=Encoders)

    @property
    def num_features(self) -> int:
        return self.encoders.dim if self.encoders.node else self.graph.num_node_features

    @property
    def edge_dim(self) -> int | None:
        if self.graph.edge_attr is not None and self.encoders.edge:
            return self.encoders.dim
        return _edge_dim(self.graph.edge_attr)

    @property
    def num_outputs(self) -> int:
        return self.task.num_outputs


@dataclass
class GraphTaskData:
    """Many graphs, each predicted whole: a PyG dataset, its split (indices per split name) and the
    pooling (``readout``) that turns node states into one vector per graph."""

    name: str
    dataset: Dataset
    split: dict[str, torch.Tensor]
    task: Task
    readout: str = "mean"
    level: str = "graph"
    encoders: Encoders = field(default_factory=Encoders)

    @property
    def num_features(self) -> int:
        return self.encoders.dim if self.encoders.node else self.dataset.num_node_features

    @property
    def edge_dim(self) -> int | None:
        attr = self.dataset[0].edge_attr
        if attr is not None and self.encoders.edge:
            return self.encoders.dim
        return _edge_dim(attr)

    @property
    def num_outputs(self) -> int:
        return self.task.num_outputs
