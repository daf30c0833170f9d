"""PyG's own benchmark datasets: Planetoid citation graphs (Cora, CiteSeer, PubMed) and TU graph
classification sets, read from ``<root>/planetoid/<Name>`` and ``<root>/tu/<Name>``."""

from __future__ import annotations

import torch
from torch_geometric.transforms import Constant, NormalizeFeatures

from gnn1000.data import GraphTaskData, NodeTaskData, random_split
from gnn1000.dataroot import data_root, load_or_rebuild, missing_dataset, weights_only_loads, writable_root
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
        return load_or_rebuild(kwargs["name"], lambda at: loader(str(at), **kwargs), root, family, folder, expected)
    try:
        with weights_only_loads():  # a processed file that appeared meanwhile is never unpickled
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


@register("datasets", "cora", metric="acc")
def cora(split: str = "public", normalize_features: bool = True) -> NodeTaskData:
    """2,708 papers, 7 classes; public split 140 / 500 / 1,000."""
    return planetoid("Cora", split, normalize_features)


@register("datasets", "citeseer", metric="acc")
def citeseer(split: str = "public", normalize_features: bool = True) -> NodeTaskData:
    """3,327 papers, 6 classes; public split 120 / 500 / 1,000."""
    return planetoid("CiteSeer", split, normalize_features)


@register("datasets", "pubmed", metric="acc")
def pubmed(split: str = "public", normalize_features: bool = True) -> NodeTaskData:
    """19,717 papers, 3 classes; public split 60 / 500 / 1,000."""
    return planetoid("PubMed", split, normalize_features)


def stratified_fold(labels: torch.Tensor, folds: int, fold: int, seed: int) -> dict[str, torch.Tensor]:
    """Fold ``fold`` of a stratified ``folds``-fold split: that fold tests, the next one validates,
    the rest train. The folds depend only on the labels and ``seed``, so every model sees the same."""
    from sklearn.model_selection import StratifiedKFold

    if not isinstance(folds, int) or folds < 3:
        raise ConfigError(f"tu.folds={folds!r} must be an integer >= 3 (one fold tests, one validates).")
    if not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"tu.fold={fold!r} must be an integer in [0, tu.folds={folds}).")
    y = labels.view(-1).numpy()
    if min(torch.bincount(labels.view(-1)).tolist()) < folds:
        raise ConfigError(f"tu.folds={folds}: a class has fewer than {folds} graphs; use fewer folds.")
    parts = [torch.as_tensor(test) for _, test in
             StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(y.reshape(-1, 1), y)]
    valid = (fold + 1) % folds
    train = torch.cat([p for k, p in enumerate(parts) if k not in (fold, valid)]).sort().values
    return {"train": train, "valid": parts[valid].sort().values, "test": parts[fold].sort().values}


def standardize_attributes(dataset, count: int, train: torch.Tensor) -> None:
    """Scale the first ``count`` node features (TU's continuous attributes) to zero mean and unit
    variance over the training graphs' nodes, in place, for every graph."""
    if count == 0:
        return
    x, slices = dataset._data.x, dataset.slices["x"]
    rows = torch.cat([torch.arange(slices[g], slices[g + 1]) for g in train.tolist()])
    mean, std = x[rows, :count].mean(0), x[rows, :count].std(0)
    x[:, :count] = (x[:, :count] - mean) / torch.where(std > 0, std, torch.ones_like(std))


@register("datasets", "tu", metric="acc")
def tu(name: str | None = None, split: tuple = (0.8, 0.1, 0.1), seed: int = 0,
       readout: str = "mean", folds: int | None = None, fold: int = 0, standardize: bool = True) -> GraphTaskData:
    """A TU graph classification set (``tu.name = 'MUTAG'``), accuracy. With ``folds`` (10 in the
    literature) fold ``fold`` of the stratified ``folds``-fold split; otherwise split at random by
    ``seed``. Continuous node attributes are standardized on the training graphs; graphs without
    node features get a constant one."""
    from torch_geometric.datasets import TUDataset

    if not name:
        raise ConfigError("The 'tu' dataset needs a name: bind tu.name = 'MUTAG' (or another TU dataset).")
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"tu.name={name!r} is not a TU dataset name (a name such as 'MUTAG', no path): it "
                          f"names a folder under the data root and a file on the TU download server.")
    expected = [f"raw/{name}_{f}.txt" for f in ("A", "graph_indicator", "graph_labels")]
    dataset = _open(TUDataset, "tu", name, expected, name=name, use_node_attr=True)
    if folds is not None:
        index = stratified_fold(dataset._data.y, folds, fold, seed)
    else:
        index = random_split(len(dataset), split, torch.Generator().manual_seed(seed), "tu")
    if dataset.num_node_features == 0:
        dataset.transform = Constant(value=1.0)
    elif standardize:
        standardize_attributes(dataset, dataset.num_node_attributes, index["train"])
    task = Task("multiclass", dataset.num_classes, "acc")
    return GraphTaskData(name=name, dataset=dataset, split=index, task=task, readout=readout)
