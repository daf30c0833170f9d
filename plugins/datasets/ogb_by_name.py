"""Any dataset OGB lists for node or graph property prediction, by its official name."""

from __future__ import annotations

from gnn1000.data import GraphTaskData, NodeTaskData
from gnn1000.errors import ConfigError
from gnn1000.registry import register

from .ogb_common import ogb_level, ogb_metric
from .ogb_graph import ogb_graph_data
from .ogb_node import ogb_node_data


@register("datasets", "ogb", metric=ogb_metric)
def ogb(name: str | None = None, embedding_dim: int = 64, readout: str = "mean") -> NodeTaskData | GraphTaskData:
    """``experiment.dataset = 'ogb'`` with ``ogb.name = 'ogbg-molpcba'`` (or any other listed name)."""
    if not name:
        raise ConfigError("The 'ogb' dataset needs a name: bind ogb.name = '<official OGB name>', e.g. 'ogbn-mag'.")
    if ogb_level(name) == "node":
        return ogb_node_data(name)
    return ogb_graph_data(name, embedding_dim=embedding_dim, readout=readout)
