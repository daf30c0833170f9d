"""The shapes in which dataset plugins hand data to the experiment loop: one graph whose nodes are
predicted (:class:`NodeTaskData`), or many graphs each predicted whole (:class:`GraphTaskData`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch_geometric.data import Data, Dataset

from gnn1000.errors import ConfigError
from gnn1000.task import Task

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Encoders:
    """Embeddings for categorical input features (OGB's atom and bond ids): the dataset names the
    factories, the experiment puts them in front of any architecture, which then sees ``dim`` channels."""

    node: Callable[[int], torch.nn.Module] | None = None
    edge: Callable[[int], torch.nn.Module] | None = None
    dim: int = 64


class _Sizes:
    """Input and output sizes a model is built with: the raw data's, or the encoders' width."""

    encoders: Encoders
    task: Task

    def _raw(self) -> tuple[int, torch.Tensor | None]:
        """(node feature count, the edge features of one graph)."""
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        return self.encoders.dim if self.encoders.node else self._raw()[0]

    @property
    def edge_dim(self) -> int | None:
        attr = self._raw()[1]
        if attr is None:
            return None
        if self.encoders.edge:
            return self.encoders.dim
        return 1 if attr.dim() == 1 else attr.size(-1)

    @property
    def num_outputs(self) -> int:
        return self.task.num_outputs


@dataclass
class NodeTaskData(_Sizes):
    """One graph whose nodes are predicted; ``graph`` carries ``train_mask``/``valid_mask``/``test_mask``."""

    name: str
    graph: Data
    task: Task
    level: str = "node"
    encoders: Encoders = field(default_factory=Encoders)
    #: ``ceiling(data, num_layers, split)``: the best score a model of that depth can reach, for
    #: tasks where that follows from the labels (see :func:`depth_ceiling`); None for the others.
    ceiling: Callable[[NodeTaskData, int | None, str], float] | None = None
    source: tuple[str, dict] | None = field(default=None, repr=False, compare=False)  # see load_dataset

    def _raw(self) -> tuple[int, torch.Tensor | None]:
        return self.graph.num_node_features, self.graph.edge_attr


@dataclass
class GraphTaskData(_Sizes):
    """Many graphs, each predicted whole: a PyG dataset, its split (indices per split name) and the
    pooling (``readout``) that turns node states into one vector per graph."""

    name: str
    dataset: Dataset
    split: dict[str, torch.Tensor]
    task: Task
    readout: str = "mean"
    level: str = "graph"
    encoders: Encoders = field(default_factory=Encoders)
    source: tuple[str, dict] | None = field(default=None, repr=False, compare=False)  # see load_dataset

    def _raw(self) -> tuple[int, torch.Tensor | None]:
        return self.dataset.num_node_features, self.dataset[0].edge_attr


def depth_ceiling(data: NodeTaskData | GraphTaskData, num_layers: int | None, split: str = "test") -> float | None:
    """The best ``split`` score a ``num_layers``-layer message-passing model can reach on ``data``
    (None for an unbounded receptive field, such as an equilibrium model's), or None when the
    dataset does not define one. The ``infection`` task defines it from its labels."""
    ceiling = getattr(data, "ceiling", None)
    return None if ceiling is None else ceiling(data, num_layers, split)


def load_dataset(name: str, **options) -> NodeTaskData | GraphTaskData:
    """The registered dataset ``name`` built with ``options``; the data remembers both (``source``),
    so a run built in Python records them in its config.gin and the CLI can rebuild the same data."""
    from gnn1000.registry import resolve

    data = resolve("datasets", name)(**options)
    data.source = (name, dict(options))
    return data


def random_split(num_items: int, fractions, generator: torch.Generator, owner: str) -> dict[str, torch.Tensor]:
    """Indices of a random train / valid / test split of ``num_items`` by three fractions."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"{owner}.split={tuple(fractions)} must be three positive fractions summing to 1.")
    perm = torch.randperm(num_items, generator=generator)
    bounds = torch.tensor(fractions).cumsum(0).mul(num_items).round().long().tolist()
    return {"train": perm[:bounds[0]], "valid": perm[bounds[0]:bounds[1]], "test": perm[bounds[1]:]}

