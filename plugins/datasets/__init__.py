"""Dataset plugins: a callable that returns a :class:`gnn1000.data.NodeTaskData` (or a graph-level one)."""
