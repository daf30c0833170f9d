"""Graph operators: ``Op(in_channels, out_channels, *, edge_dim=None, ...)``, ``op(x, edge_index, edge_attr=None)``."""
