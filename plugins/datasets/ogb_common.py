"""What every OGB dataset plugin shares: opening a dataset through OGB's own loader (offline when its
files are under the data root, downloading otherwise), and deriving the task from OGB's metadata."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import torch
from torch_geometric.utils import index_to_mask

from gnn1000.dataroot import data_root, load_or_rebuild, missing_dataset, weights_only_loads, writable_root
from gnn1000.errors import ConfigError, CorruptFileError
from gnn1000.task import METRICS, Task

FAMILY = "ogb"


def allow_pyg_classes_in_torch_load() -> None:
    """torch >= 2.6 loads weights only by default; OGB's processed files hold PyG data classes."""
    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import GlobalStorage

    torch.serialization.add_safe_globals([DataEdgeAttr, DataTensorAttr, GlobalStorage])


def ogb_master(level: str) -> pd.DataFrame:
    """OGB's table of the datasets it lists, for ``level`` 'node' or 'graph'."""
    import ogb.graphproppred
    import ogb.nodeproppred

    package = ogb.nodeproppred if level == "node" else ogb.graphproppred
    return pd.read_csv(os.path.join(os.path.dirname(package.__file__), "master.csv"), index_col=0,
                       keep_default_na=False)


def ogb_level(name: str) -> str:
    """'node' or 'graph' for a name OGB lists; a clear error for anything else."""
    for level in ("node", "graph"):
        if name in ogb_master(level):
            return level
    listed = sorted([*ogb_master("node"), *ogb_master("graph")])
    raise ConfigError(f"{name!r} is not an OGB node or graph property prediction dataset; "
                      f"OGB lists {', '.join(listed)}. For other data in OGB's layout, register a "
                      f"dataset plugin that calls gnn1000.plugins.datasets.ogb_common.open_ogb with a "
                      f"meta_dict, as 'blogcatalog' does.")


def ogb_metric(name: str | None = None, **_bindings) -> str:
    """The metric OGB's own table lists for ``name`` ('rocauc', 'acc', ...), with no dataset opened:
    a search learns what to optimize from it (``register(..., metric=...)``)."""
    if not name:
        raise ConfigError("The 'ogb' dataset needs a name: bind ogb.name = '<official OGB name>', e.g. 'ogbn-mag'.")
    return ogb_master(ogb_level(name))[name]["eval metric"]


def expected_files(meta: dict, level: str) -> list[str]:
    """The files OGB's loader reads, relative to the dataset's folder."""
    raw = ["edge.csv.gz", "num-node-list.csv.gz", "num-edge-list.csv.gz",
           "node-label.csv.gz" if level == "node" else "graph-label.csv.gz"]
    if meta.get("has_node_attr") == "True":
        raw.append("node-feat.csv.gz")
    if meta.get("has_edge_attr") == "True":
        raw.append("edge-feat.csv.gz")
    split = [f"split/{meta['split']}/{s}.csv.gz" for s in ("train", "valid", "test")]
    return [f"RELEASE_v{meta['version']}.txt", *(f"raw/{f}" for f in raw), *split]


def open_ogb(name: str, level: str, meta_dict: dict | None = None, **loader_kwargs):
    """OGB's ``Pyg{Node,Graph}PropPredDataset`` for ``name``, read from ``<root>/ogb/<folder>``.

    With ``meta_dict`` (OGB's format for datasets it does not list) ``meta_dict['dir_path']`` is
    the folder's name under ``<root>/ogb``.
    """
    from ogb.graphproppred import PygGraphPropPredDataset
    from ogb.nodeproppred import PygNodePropPredDataset

    allow_pyg_classes_in_torch_load()
    loader = PygNodePropPredDataset if level == "node" else PygGraphPropPredDataset
    meta = dict(meta_dict) if meta_dict else dict(ogb_master(level)[name])
    folder = meta["dir_path"] if meta_dict else "_".join(name.split("-"))
    expected = expected_files(meta, level)
    on_disk = all((data_root() / FAMILY / folder / f).exists() for f in expected)
    release = data_root() / FAMILY / folder / expected[0]
    if release.parent.is_dir() and not release.exists():  # OGB would stop and ask on stdin
        raise ConfigError(f"{name}: {release.parent} exists but has no {release.name}, so OGB would ask "
                          f"whether to delete and re-download it. Add the file if the folder holds "
                          f"OGB's version-{meta['version']} release, or remove the folder.")
    root = writable_root(FAMILY, folder)

    def load(at: Path):  # at: the data root's ogb/ folder, or the cache's
        where = {"meta_dict": {**meta, "dir_path": str(at / folder)}} if meta_dict else {"root": str(at)}
        return loader(name, **loader_kwargs, **where)

    if on_disk or (root / folder / expected[0]).exists():  # present: a failure is a damaged file
        dataset = load_or_rebuild(name, load, root, FAMILY, folder, expected)
    else:
        try:  # not on disk: OGB downloads it into the root (or the cache when the root is read-only)
            with weights_only_loads():  # a processed file that appeared meanwhile is never unpickled
                dataset = load(root)
        except Exception as exc:  # OGB passes on whatever urllib, zipfile or input() raise
            raise missing_dataset(name, FAMILY, folder, expected, exc) from exc
    check_counts(name, dataset, root / folder, meta, level)
    return dataset


def check_counts(name: str, dataset, folder, meta: dict, level: str) -> None:
    """The loaded graph(s) against OGB's own count files, which a short but valid edge file
    (a partial download) would otherwise pass unnoticed."""
    raw = folder / "raw"
    try:
        nodes = int(pd.read_csv(raw / "num-node-list.csv.gz", header=None).values.sum())
        edges = int(pd.read_csv(raw / "num-edge-list.csv.gz", header=None).values.sum())
    except (OSError, EOFError, ValueError):
        return  # load_or_rebuild has read them already; a processed-only copy has none
    data = dataset[0] if level == "node" else dataset._data
    factor = 2 if str(meta.get("add_inverse_edge")) == "True" else 1
    found_edges = data.edge_index.size(1)
    found_nodes = data.num_nodes if level == "node" else (data.x.size(0) if data.x is not None else nodes)
    if found_edges != edges * factor or found_nodes != nodes:
        shutil.rmtree(folder / "processed", ignore_errors=True)  # built from the short files
        raise CorruptFileError(
            f"Dataset {name!r}: {raw} holds {found_nodes:,} nodes and {found_edges // factor:,} edges, but "
            f"OGB's count files (num-node-list.csv.gz, num-edge-list.csv.gz) say {nodes:,} and {edges:,}: "
            f"raw/edge.csv.gz (or another raw file) is incomplete, e.g. a partial download. Replace it "
            f"with the complete file from the OGB release and run again.")


def task_from_meta(name: str, meta, evaluator: bool) -> Task:
    """Loss and metric from OGB's metadata; ``evaluator``: score with OGB's Evaluator for ``name``."""
    task_type, metric = meta["task type"], meta["eval metric"]
    num_tasks, num_classes = int(meta["num tasks"]), int(meta["num classes"])
    if metric not in METRICS:
        raise ConfigError(f"{name}: OGB's metric {metric!r} is not supported; supported: {', '.join(METRICS)}.")
    ogb_name = name if evaluator else None
    if task_type == "multiclass classification":
        return Task("multiclass", num_classes, metric, ogb_name)
    if task_type == "binary classification":
        return Task("multilabel" if num_tasks > 1 else "binary", num_tasks, metric, ogb_name)
    if task_type == "regression":
        return Task("regression", num_tasks, metric, ogb_name)
    raise ConfigError(f"{name}: OGB task type {task_type!r} is not supported; supported: multiclass "
                      f"classification, binary classification, regression.")


def split_masks(graph, split: dict[str, torch.Tensor]) -> None:
    """OGB's split indices as ``train_mask``/``valid_mask``/``test_mask`` on ``graph``."""
    for key, index in split.items():
        graph[f"{key}_mask"] = index_to_mask(index, size=graph.num_nodes)
