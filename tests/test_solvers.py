"""Root finders: known answers, Broyden's speed-up, failure modes, options, third-party solvers."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from gnn1000 import config as gin_config
from gnn1000 import registry
from gnn1000.errors import ConfigError
from gnn1000.nn.root_finding import SolverDivergedError, SolverStats, build_solver

SOLVERS = ["broyden", "anderson", "fixed_point"]
DOTTIE = 0.7390851332151607  # the unique real solution of z = cos(z)



def affine_contraction(n: int, max_eig: float, seed: int = 0):
    """f(z) = A z + b with symmetric A of spectrum [0, max_eig]; the answer is (I - A)^-1 b."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(0.0, max_eig, n, dtype=torch.float64)) @ q.T
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    answer = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - a, b)
    return (lambda z: a @ z + b), answer


@pytest.mark.parametrize("name", SOLVERS)
def test_solver_reaches_tolerance_on_affine_contraction(name):
    f, answer = affine_contraction(30, 0.8)
    z, stats = build_solver(name).solve(f, torch.zeros(30, dtype=torch.float64), 1e-9, 500, "abs")
    assert isinstance(stats, SolverStats) and stats.solver == name
    assert stats.converged and stats.abs_residual <= 1e-9
    assert len(stats.trace) == stats.iterations <= 500
    assert torch.allclose(z, answer, atol=1e-7)
    assert torch.linalg.vector_norm(f(z) - z).item() == pytest.approx(stats.abs_residual)


@pytest.mark.parametrize("name", SOLVERS)
def test_solver_reaches_tolerance_on_nonlinear_contraction(name):
    # z = cos(z) elementwise on a (nodes x channels) state: every entry goes to the Dottie number.
    z0 = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).reshape(4, 3)
    z, stats = build_solver(name).solve(torch.cos, z0, 1e-6, 200, "rel")
    assert stats.converged and stats.rel_residual <= 1e-6
    assert z.shape == z0.shape
    assert torch.allclose(z, torch.full_like(z, DOTTIE), atol=1e-5)


def test_broyden_needs_far_fewer_iterations_than_fixed_point_when_ill_conditioned():
    f, answer = affine_contraction(40, 0.99)
    z0 = torch.zeros(40, dtype=torch.float64)
    zb, broyden = build_solver("broyden").solve(f, z0, 1e-6, 5000, "abs")
    zf, fixed = build_solver("fixed_point").solve(f, z0, 1e-6, 5000, "abs")
    assert broyden.converged and fixed.converged
    assert broyden.iterations * 5 < fixed.iterations, (broyden.iterations, fixed.iterations)
    assert torch.allclose(zb, answer, atol=1e-4)


@pytest.mark.parametrize("name", SOLVERS)
def test_non_convergence_is_reported_not_raised(name):
    f, _ = affine_contraction(30, 0.99)
    z, stats = build_solver(name).solve(f, torch.zeros(30, dtype=torch.float64), 1e-12, 3, "abs")
    assert not stats.converged
    assert stats.iterations == 3 and len(stats.trace) == 3
    assert stats.abs_residual == pytest.approx(min(stats.trace))
    assert torch.linalg.vector_norm(f(z) - z).item() == pytest.approx(stats.abs_residual)


def test_lowest_residual_iterate_is_returned_when_iterates_get_worse():
    # z -> 2z + 1 diverges from its fixed point -1: residuals 1, 2, 4, ...; the start is best.
    z, stats = build_solver("fixed_point").solve(lambda z: 2 * z + 1, torch.zeros(3), 1e-6, 6, "abs")
    assert not stats.converged
    assert torch.equal(z, torch.zeros(3))
    assert stats.trace == sorted(stats.trace) and stats.abs_residual == pytest.approx(3 ** 0.5)


@pytest.mark.parametrize("name", SOLVERS)
def test_nan_state_stops_with_error_naming_solver_and_iteration(name):
    calls = []

    def f(z):
        calls.append(1)
        return 0.5 * z + (float("nan") if len(calls) == 3 else 1.0)

    with pytest.raises(SolverDivergedError, match=rf"{name} solver.*iteration 3"):
        build_solver(name).solve(f, torch.zeros(5), 1e-9, 50, "abs")


def test_bad_solve_arguments_are_config_errors():
    solver = build_solver("broyden")
    with pytest.raises(ConfigError, match="stop_mode='max'.*abs, rel"):
        solver.solve(torch.cos, torch.zeros(2), 1e-3, 10, "max")
    with pytest.raises(ConfigError, match="max_iter=0"):
        solver.solve(torch.cos, torch.zeros(2), 1e-3, 0, "abs")
    with pytest.raises(ConfigError, match="anderson.m=0"):
        build_solver("anderson").__class__(m=0)
    with pytest.raises(ConfigError, match="anderson.lam=0.*positive"):
        build_solver("anderson").__class__(lam=0)


def test_solver_options_come_from_gin():
    gin_config.load(None, ["anderson.m = 2", "anderson.lam = 0.01", "broyden.memory = 4",
                           "fixed_point.damping = 0.5"])
    configured = {name: build_solver(gin_config.reference("solvers", name)())
                  for name in ("anderson", "broyden", "fixed_point")}  # as the configuration layer builds them
    assert (configured["anderson"].m, configured["anderson"].lam) == (2, 0.01)
    assert configured["broyden"].memory == 4
    assert configured["fixed_point"].damping == 0.5
    assert build_solver("anderson").m == 5  # built in Python: its own default, whatever gin holds
    with pytest.raises(ConfigError, match="Parameters of anderson.*m, lam, beta"):
        gin_config.load(None, ["anderson.mm = 2"])


def test_limited_memory_broyden_still_converges():
    f, answer = affine_contraction(40, 0.95)
    z, stats = registry.resolve("solvers", "broyden")(memory=5).solve(
        f, torch.zeros(40, dtype=torch.float64), 1e-8, 1000, "abs")
    assert stats.converged and torch.allclose(z, answer, atol=1e-6)


class _Halving:
    """A third-party solver: damped fixed-point iteration with its own stats."""

    def solve(self, f, z0, tol, max_iter, stop_mode):
        z = z0
        for i in range(1, max_iter + 1):
            fz = f(z)
            res = torch.linalg.vector_norm(fz - z).item()
            if res <= tol:
                break
            z = 0.5 * (z + fz)
        return z, SolverStats("halving", i, res, res / torch.linalg.vector_norm(fz).item(), res <= tol, stop_mode)


def test_solver_registered_in_code_is_usable_by_name():
    registry.register("solvers", "test-halving")(_Halving)
    z, stats = build_solver("test-halving").solve(torch.cos, torch.zeros(3), 1e-6, 200, "abs")
    assert stats.solver == "halving" and stats.converged
    assert torch.allclose(z, torch.full((3,), DOTTIE), atol=1e-5)


def test_solver_from_a_third_party_entry_point_is_usable_by_name(tmp_path, monkeypatch):
    # A minimal installed distribution: a module plus dist-info metadata declaring the entry point.
    (tmp_path / "thirdparty_deq_solver.py").write_text(textwrap.dedent("""
        import torch
        from gnn1000.nn.root_finding import Solver

        class Damped(Solver):
            name = "ep_damped"

            def _iterate(self, f, z0, tracker, max_iter):
                z = z0
                while True:
                    fz = f(z)
                    if tracker.observe(z, fz) <= tracker.tol or tracker.iterations >= max_iter:
                        return
                    z = 0.5 * (z + fz)
    """))
    dist = tmp_path / "thirdparty_deq_solver-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-deq-solver\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gnn1000.solvers]\nep-damped = thirdparty_deq_solver:Damped\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()
    try:
        assert "ep-damped" in registry.available("solvers")
        z, stats = build_solver("ep-damped").solve(torch.cos, torch.zeros(3), 1e-6, 200, "abs")
        assert stats.solver == "ep_damped" and stats.converged
        assert torch.allclose(z, torch.full((3,), DOTTIE), atol=1e-5)
    finally:
        sys.modules.pop("thirdparty_deq_solver", None)
        registry.refresh()
