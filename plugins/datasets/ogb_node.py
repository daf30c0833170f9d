"""OGB node property prediction: ogbn-proteins, ogbn-arxiv, ogbn-products, and data in OGB's node
layout that OGB does not list (BlogCatalog), all through ``PygNodePropPredDataset``."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch_geometric.transforms import ToUndirected
from torch_geometric.utils import scatter

from gnn1000.data import Encoders, NodeTaskData
from gnn1000.errors import ConfigError
from gnn1000.registry import register

from .features import derive_node_features
from .ogb_common import ogb_metric, open_ogb, split_masks, task_from_meta

AGGRS = ("sum", "mean")

BLOGCATALOG_META = {
    "dir_path": "blogcatalog", "version": 1, "download_name": "blogcatalog", "url": "",
    "num tasks": 39, "num classes": 2, "task type": "binary classification", "eval metric": "rocauc",
    "add_inverse_edge": "True", "has_node_attr": "False", "has_edge_attr": "False", "split": "random",
    "additional node files": "None", "additional edge files": "None", "is hetero": "False",
    "binary": "False",
}


def ogb_node_data(name: str, meta_dict: dict | None = None, *, undirected: bool = False,
                  node_features: str = "embedding", embedding_dim: int = 64) -> NodeTaskData:
    """Any OGB node dataset: graph, split masks and task; featureless graphs get derived features."""
    dataset = open_ogb(name, "node", meta_dict)
    graph = dataset[0]
    if undirected:
        graph = ToUndirected()(graph)
    encoders = Encoders()
    if graph.x is None and name != "ogbn-proteins":  # proteins derives its own, from edge features
        graph.x, encoders = derive_node_features(graph, node_features, embedding_dim)
    split_masks(graph, dataset.get_idx_split())
    task = task_from_meta(name, dataset.meta_info, evaluator=meta_dict is None)
    return NodeTaskData(name=name, graph=graph, task=task, encoders=encoders)


@register("datasets", "ogbn-proteins", metric=partial(ogb_metric, "ogbn-proteins"))
def ogbn_proteins(node_feature_aggr: str = "sum") -> NodeTaskData:
    """112 binary tasks, ROC-AUC. Node features: the 8-dim features of each node's edges, aggregated
    (``sum`` as the paper's code does, or ``mean``), plus a one-hot of the node's species."""
    if node_feature_aggr not in AGGRS:
        raise ConfigError(f"ogbn_proteins.node_feature_aggr={node_feature_aggr!r}; choose one of {', '.join(AGGRS)}.")
    data = ogb_node_data("ogbn-proteins")
    graph = data.graph
    _, species = torch.unique(graph.node_species.view(-1), return_inverse=True)
    graph.x = torch.cat([
        scatter(graph.edge_attr, graph.edge_index[0], 0, dim_size=graph.num_nodes, reduce=node_feature_aggr),
        F.one_hot(species).float(),
    ], dim=-1)
    return data


@register("datasets", "ogbn-arxiv", metric=partial(ogb_metric, "ogbn-arxiv"))
def ogbn_arxiv() -> NodeTaskData:
    """40-class paper categories, accuracy; citations are made undirected, as in the paper."""
    return ogb_node_data("ogbn-arxiv", undirected=True)


@register("datasets", "ogbn-products", metric=partial(ogb_metric, "ogbn-products"))
def ogbn_products() -> NodeTaskData:
    """47-class product categories, accuracy; 2.4M nodes: train it with a mini-batch sampler."""
    return ogb_node_data("ogbn-products")


@register("datasets", "blogcatalog", metric=BLOGCATALOG_META["eval metric"])
def blogcatalog(node_features: str = "embedding", embedding_dim: int = 64) -> NodeTaskData:
    """BlogCatalog in OGB's node layout (``<root>/ogb/blogcatalog``): 39 binary tasks, mean ROC-AUC.
    OGB does not list it, so it is read through a ``meta_dict``. It has no node features:
    ``node_features`` 'embedding' learns one ``embedding_dim``-vector per node, 'degree' and
    'laplacian' derive fixed ones from the graph."""
    return ogb_node_data("blogcatalog", BLOGCATALOG_META, node_features=node_features,
                         embedding_dim=embedding_dim)
