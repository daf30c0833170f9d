"""Reusable building blocks: the model-independent equilibrium layer ``DEQ``."""

from gnn1000.nn.deq import DEQ, SolverConvergenceWarning

__all__ = ["DEQ", "SolverConvergenceWarning"]
