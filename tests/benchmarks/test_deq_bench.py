"""DEQ-GNN benchmarks (pytest-benchmark): torchdeq comparison and memory vs. solver iterations.

The same code as ``gnn1000 bench deq``, at sizes that fit CI; the printed tables are the result.
Run with ``--benchmark-enable`` for pytest-benchmark's timing of the forward solve.
"""

from __future__ import annotations

import pytest
import torch

from gnn1000.bench import deq as bench
from gnn1000.plugins.solvers.broyden import Broyden

pytest.importorskip("torchdeq")


def test_broyden_against_torchdeq(benchmark, capsys):
    result = bench.compare_with_torchdeq(num_nodes=600, channels=64, tol=1e-4, max_iter=100, repeats=1)
    with capsys.disabled():
        print()
        bench.print_comparison(result)
    # Same algorithm, same problem, same tolerance: both converge in about as many evaluations,
    # and the two implicit gradients agree to the backward tolerance.
    assert result["ours_converged"] and result["torchdeq_converged"]
    assert abs(result["ours_f_evals"] - result["torchdeq_f_evals"]) <= 3
    assert result["grad_rel_diff"] < 1e-2 and result["grad_cosine"] > 0.9999

    model, g = bench.problem(600, 64, 10)
    inj = model.encoder(g.x).detach()
    z, stats = benchmark(Broyden().solve, lambda z: model.block(z, inj, g.edge_index, g.edge_attr),
                         torch.zeros_like(inj), 1e-4, 100, "rel")
    assert stats.converged


@pytest.mark.slow
def test_training_step_memory_does_not_grow_with_solver_iterations(capsys):
    rows = bench.memory_table(iterations=(10, 40), unrolled_iterations=(3, 9),
                              modes=("anderson", "broyden-memory-8"), num_nodes=4000, channels=32)
    with capsys.disabled():
        bench.print_memory(rows)
    unrolled = bench.growth_per_iteration(rows, "unrolled")
    assert unrolled > 1.0  # backpropagating through every iteration costs MBs per iteration here
    for mode in ("anderson", "broyden-memory-8"):
        # The autograd graph holds one application of f whatever the iteration count ...
        assert bench.growth_per_iteration(rows, mode, "autograd_mb") == 0.0, mode
        # ... and bounded-history solvers add nothing either: 4x the iterations, no growth beyond noise.
        assert bench.growth_per_iteration(rows, mode) < 0.1 * unrolled, mode
    assert bench.growth_per_iteration(rows, "unrolled", "autograd_mb") > 1.0
