"""OGB graph property prediction: ogbg-molhiv, ogbg-ppa and the rest, through ``PygGraphPropPredDataset``."""

from __future__ import annotations

from functools import partial

from torch_geometric.transforms import Constant

from gnn1000.data import Encoders, GraphTaskData
from gnn1000.registry import register

from .ogb_common import ogb_metric, open_ogb, task_from_meta


def ogb_graph_data(name: str, *, embedding_dim: int = 64, readout: str = "mean") -> GraphTaskData:
    """Any OGB graph dataset with its official split. Molecules (``ogbg-mol*``) carry atom and bond
    category ids, embedded by OGB's ``AtomEncoder``/``BondEncoder`` to ``embedding_dim`` channels;
    graphs without node features (ogbg-ppa) get a constant one, as OGB's baselines do."""
    dataset = open_ogb(name, "graph")
    if dataset[0].x is None:
        dataset.transform = Constant(value=1.0)
    encoders = Encoders()
    if name.startswith("ogbg-mol"):
        from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder

        encoders = Encoders(node=AtomEncoder, edge=BondEncoder, dim=embedding_dim)
    task = task_from_meta(name, dataset.meta_info, evaluator=True)
    return GraphTaskData(name=name, dataset=dataset, split=dataset.get_idx_split(), task=task,
                         readout=readout, encoders=encoders)


@register("datasets", "ogbg-molhiv", metric=partial(ogb_metric, "ogbg-molhiv"))
def ogbg_molhiv(embedding_dim: int = 64, readout: str = "mean") -> GraphTaskData:
    """41,127 molecules, HIV inhibition (1 binary task), ROC-AUC, scaffold split."""
    return ogb_graph_data("ogbg-molhiv", embedding_dim=embedding_dim, readout=readout)


@register("datasets", "ogbg-ppa", metric=partial(ogb_metric, "ogbg-ppa"))
def ogbg_ppa(readout: str = "mean") -> GraphTaskData:
    """158,100 protein-association graphs, 37 taxonomic classes, accuracy; 7-dim edge features."""
    return ogb_graph_data("ogbg-ppa", readout=readout)
