"""Root finders for equilibrium models, one signature for all: ``solver.solve(f, z0, tol, max_iter,
stop_mode) -> (z, SolverStats)``. Swap one by name (``build_solver('anderson')``) without touching
the model. The solvers themselves are plugins (``gnn1000.plugins.solvers``); this is their public face.
"""

from gnn1000.plugins.solvers.anderson import Anderson
from gnn1000.nn.root_finding import Solver, SolverDivergedError, SolverStats, build_solver
from gnn1000.plugins.solvers.broyden import Broyden
from gnn1000.plugins.solvers.fixed_point import FixedPoint

__all__ = ["Solver", "SolverStats", "SolverDivergedError", "build_solver", "Broyden", "Anderson", "FixedPoint"]
