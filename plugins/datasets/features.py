"""Node features for graphs that come without any, derived from the graph itself.

ogbn-proteins gets its features from its edge features (see ``ogb_node``); graphs with neither
(BlogCatalog) get structural ones here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_geometric.utils import degree

from gnn1000.errors import ConfigError

DEGREE_BUCKETS = 16
KINDS = ("degree", "laplacian")


def derive_node_features(graph, kind: str = "degree", laplacian_k: int = 16) -> torch.Tensor:
    """``degree``: log-degree plus a one-hot of its power-of-two bucket; ``laplacian`` adds the
    ``laplacian_k`` smallest Laplacian eigenvectors (PyG's ``AddLaplacianEigenvectorPE``)."""
    if kind not in KINDS:
        raise ConfigError(f"node_features={kind!r} is not supported; choose one of {', '.join(KINDS)}.")
    deg = degree(graph.edge_index[1], graph.num_nodes)
    bucket = torch.log2(deg + 1).floor().long().clamp(max=DEGREE_BUCKETS - 1)
    x = torch.cat([torch.log1p(deg).unsqueeze(-1), F.one_hot(bucket, DEGREE_BUCKETS).float()], dim=-1)
    if kind == "laplacian":
        from torch_geometric.transforms import AddLaplacianEigenvectorPE

        pe = AddLaplacianEigenvectorPE(laplacian_k, attr_name="pe", is_undirected=True)(graph.clone()).pe
        x = torch.cat([x, pe], dim=-1)
    return x
