"""gnn1000: graph neural networks a thousand layers deep on one GPU."""

__version__ = "0.1.0"
