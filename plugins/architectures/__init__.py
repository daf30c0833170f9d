"""Architectures: ``Arch(in_channels, hidden_channels, out_channels, num_layers, *, operator, norm, dropout, edge_dim)``."""
