"""Shipped configs whose operative config is recorded in tests/data/operative_configs (see
tests/test_operative_configs.py), with the bindings that stand in small data for the big datasets."""

# ogbn-proteins and ogbn-arxiv are not on this machine: the built-in synthetic graph, tiny, stands in.
_SYNTHETIC = [
    "experiment.dataset = 'synthetic-proteins'",
    "synthetic_proteins.num_nodes = 120",
    "synthetic_proteins.avg_degree = 4",
    "synthetic_proteins.num_tasks = 4",
    "experiment.device = 'cpu'",
]

CASES = {
    "ogbg-molhiv-quick": ("ogbg-molhiv/quick", ["experiment.device = 'cpu'"]),
    "blogcatalog-quick": ("blogcatalog/quick", ["experiment.device = 'cpu'"]),
    "ogbn-proteins-revgnn-deep": ("ogbn-proteins/revgnn-deep", _SYNTHETIC),
    "ogbn-arxiv-revgat": ("ogbn-arxiv/revgat", _SYNTHETIC),
    "ogbn-proteins-wt-revgnn-224": ("ogbn-proteins/wt-revgnn-224", _SYNTHETIC),
    "tune-resgnn": ("tune/resgnn", ["experiment.device = 'cpu'"]),
}
