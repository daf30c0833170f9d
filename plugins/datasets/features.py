"""Node features for graphs that come without any, derived from the graph itself.

ogbn-proteins gets its features from its edge features (see ``ogb_node``); graphs with neither
(BlogCatalog) get structural ones here, or node ids that a learnable embedding turns into features.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch_geometric.utils import degree

from gnn1000.data import Encoders
from gnn1000.encoders import NodeIdEmbedding
from gnn1000.errors import ConfigError

DEGREE_BUCKETS = 16
KINDS = ("embedding", "degree", "laplacian")


def derive_node_features(graph, kind: str = "embedding", dim: int = 64,
                         laplacian_k: int = 16) -> tuple[torch.Tensor, Encoders]:
    """Features and their encoders. ``embedding``: node ids and a learnable ``dim``-vector per node;
    ``degree``: log-degree plus a one-hot of its power-of-two bucket; ``laplacian`` adds the
    ``laplacian_k`` smallest Laplacian eigenvectors (PyG's ``AddLaplacianEigenvectorPE``)."""
    if kind not in KINDS:
        raise ConfigError(f"node_features={kind!r} is not supported; choose one of {', '.join(KINDS)}.")
    if kind == "embedding":
        ids = torch.arange(graph.num_nodes).unsqueeze(-1)
        return ids, Encoders(node=partial(NodeIdEmbedding, graph.num_nodes), dim=dim)
    deg = degree(graph.edge_index[1], graph.num_nodes)
    bucket = torch.log2(deg + 1).floor().long().clamp(max=DEGREE_BUCKETS - 1)
    x = torch.cat([torch.log1p(deg).unsqueeze(-1), F.one_hot(bucket, DEGREE_BUCKETS).float()], dim=-1)
    if kind == "laplacian":
        from torch_geometric.transforms import AddLaplacianEigenvectorPE

        pe = AddLaplacianEigenvectorPE(laplacian_k, attr_name="pe", is_undirected=True)(graph.clone()).pe
        x = torch.cat([x, pe], dim=-1)
    return x, Encoders()
