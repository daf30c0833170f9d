"""PyG's own benchmark datasets: Planetoid citation graphs (Cora, CiteSeer, PubMed) and TU graph
classification sets, read from ``<root>/planetoid/<Name>`` and ``<root>/tu/<Name>``."""

from __future__ import annotations

import torch
from torch_geometric.transforms import Constant, NormalizeFeatures

from gnn1000.data import GraphTaskData, NodeTaskData, random_split
from gnn1000.dataroot import data_root, load_or_rebuild, missing_dataset, writable_root
from gnn1000.errors import ConfigError
from gnn1000.registry import register
from gnn1000.task import Task

PLANETOID = ("Cora", "CiteSeer", "PubMed")
PLANETOID_RAW = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def _open(loader, family: str, folder: str, expected: list[str], **kwargs):
    """PyG's loader on the data root (a writable copy of it); downloads when the files are absent."""
    on_disk = all((data_root() / family / folder / f).exists() for f in expected)
    root = writable_root(family, folder)
    if on_disk:
        return load_or_rebuild(kwargs["name"], lambda: loader(str(root), **kwargs), root / folder, expected)
    try:
        return loader(str(root), **kwargs)
    except Exception as exc:  # PyG passes on whatever urllib or fsspec raise
        raise missing_dataset(kwargs["name"], family, folder, expected, exc) from exc


def planetoid(name: str, split: str = "public", normalize_features: bool = True) -> NodeTaskData:
    """One Planetoid graph, multi-class accuracy; ``split`` is PyG's ('public', 'full', ...)."""
    from torch_geometric.datasets import Planetoid

    match = {n.lower(): n for n in PLANETOID}.get(name.lower())
    if match is None:
        raise ConfigError(f"Planetoid dataset {name!r} does not exist; choose one of {', '.join(PLANETOID)}.")
    expected = [f"raw/ind.{match.lower()}.{f}" for f in PLANETOID_RAW]
    dataset = _open(Planetoid, "planetoid", match, expected, name=match, split=split,
                    transform=NormalizeFeatures() if normalize_features else None)
    graph = dataset[0]
    graph.valid_mask = graph.val_mask
    del graph.val_mask
    task = Task("multiclass", dataset.num_classes, "acc")
    return NodeTaskData(name=match, graph=graph, task=task)


@register("datasets", "cora")
def cora(split: str = "public", normalize_features: bool = True) -> NodeTaskData:
    """2,708 papers, 7 classes; public split 140 / 500 / 1,000."""
    return planetoid("Cora", split, normalize_features)


@register("datasets", "citeseer")
def citeseer(split: str = "public", normalize_features: bool = True) -> NodeTaskData:
    """3,327 papers, 6 classes; public split 120 / 500 / 1,000."""
    return planetoid("CiteSeer", split, normalize_features)


@register("datasets", "pubmed")
def pubmed(split: str = "public", normalize_features: bool = True) -> NodeTaskData:
    """19,717 papers, 3 classes; public split 60 / 500 / 1,000."""
    return planetoid("PubMed", split, normalize_features)


@register("datasets", "tu")
def tu(name: str | None = None, split: tuple = (0.8, 0.1, 0.1), seed: int = 0,
       readout: str = "mean") -> GraphTaskData:
    """A TU graph classification set (``tu.name = 'MUTAG'``), accuracy, split at random by ``seed``;
    graphs without node features get a constant one."""
    from torch_geometric.datasets import TUDataset

    if not name:
        raise ConfigError("The 'tu' dataset needs a name: bind tu.name = 'MUTAG' (or another TU dataset).")
    expected = [f"raw/{name}_{f}.txt" for f in ("A", "graph_indicator", "graph_labels")]
    dataset = _open(TUDataset, "tu", name, expected, name=name, use_node_attr=True)
    if dataset.num_node_features == 0:
        dataset.transform = Constant(value=1.0)
    index = random_split(len(dataset), split, torch.Generator().manual_seed(seed), "tu")
    task = Task("multiclass", dataset.num_classes, "acc")
    return GraphTaskData(name=name, dataset=dataset, split=index, task=task, readout=readout)
