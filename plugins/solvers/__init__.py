"""Root finders for equilibrium models: ``solve(f, z0, tol, max_iter, stop_mode) -> (z, stats)``.

One file per solver (``broyden``, ``anderson``, ``fixed_point``); :mod:`gnn1000.nn.root_finding`
holds the shared interface, the ``SolverStats`` they return and the residual bookkeeping.
"""
