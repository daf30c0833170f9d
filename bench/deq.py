"""``gnn1000 bench deq``: DEQ-GNN against torchdeq, and training-step memory vs. solver iterations.

1. Same fixed-point problem for both libraries (one DEQGNN block on synthetic-proteins, the whole
   graph state as one vector): Broyden's function evaluations and wall time to the same tolerance,
   and the implicit-backward gradient of the same loss. Printed as ratios gnn1000 / torchdeq.
2. Peak memory of one DEQGNN training step (forward solve, backward solve, optimizer step) as the
   number of solver iterations grows (tol = 0 forces every iteration), beside the unrolled
   weight-tied model that backpropagates through every iteration. Each point runs in a fresh
   process, so that no point inherits another's allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch

from gnn1000.extras import require

STATE_SOLVERS = ("anderson", "broyden-memory-8", "broyden")


def problem(num_nodes: int, channels: int, avg_degree: int, seed: int = 0, conv1_scale: float = 0.2,
            **model_opts):
    """A DEQGNN (GEN, LayerNorm) and a synthetic-proteins graph; the fixed-point map is its block."""
    from gnn1000.plugins.architectures.deq import DEQGNN
    from gnn1000.plugins.datasets.synthetic_proteins import synthetic_proteins

    data = synthetic_proteins(num_nodes=num_nodes, avg_degree=avg_degree, num_tasks=8, seed=seed)
    torch.manual_seed(seed)
    model_opts.setdefault("handover", "zeros")  # every solve starts from zero, as torchdeq's here
    model = DEQGNN(data.num_features, channels, data.num_outputs, 1, edge_dim=data.edge_dim, **model_opts)
    with torch.no_grad():  # a random block need not have an attracting fixed point; shrinking conv1 gives one
        for p in model.block.conv1.parameters():
            p.mul_(conv1_scale)
    return model, data.graph


def _counted(f):
    def wrapped(z):
        wrapped.calls += 1
        return f(z)
    wrapped.calls = 0
    return wrapped


def _side_by_side(ours, theirs, repeats: int):
    """Median seconds of each, timed alternately so that load on the machine hits both alike."""
    ours(), theirs()  # warm-up: first calls pay one-off allocation and dispatch costs
    times = ([], [])
    results = [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((ours, theirs)):
            start = time.perf_counter()
            results[i] = fn()
            times[i].append(time.perf_counter() - start)
    return statistics.median(times[0]), results[0], statistics.median(times[1]), results[1]


def compare_with_torchdeq(num_nodes: int = 2000, channels: int = 64, avg_degree: int = 10, tol: float = 1e-4,
                          max_iter: int = 100, stop_mode: str = "rel", repeats: int = 3) -> dict:
    """Forward solve and implicit gradient of one problem, with gnn1000's and torchdeq's Broyden."""
    require("torchdeq", "bench", "gnn1000 bench deq's comparison with torchdeq")
    from torchdeq import get_deq
    from torchdeq.solver import broyden_solver

    from gnn1000.plugins.solvers.broyden import Broyden

    model, g = problem(num_nodes, channels, avg_degree, fwd_tol=tol, bwd_tol=tol, fwd_max_iter=max_iter,
                       bwd_max_iter=max_iter, stop_mode=stop_mode)
    inj = model.encoder(g.x)

    def f(z):
        return model.block(z, inj, g.edge_index, g.edge_attr)

    z0 = torch.zeros_like(inj)
    flat0 = z0.reshape(1, -1)  # torchdeq flattens all but dim 0: one batch row = the whole graph

    def f_flat(z):
        return f(z.view_as(inj)).reshape(1, -1)

    def ours():
        counted = _counted(f)
        z, stats = Broyden().solve(counted, z0, tol, max_iter, stop_mode)
        return counted.calls, stats.converged, stats.residual

    def theirs():
        counted = _counted(f_flat)
        with torch.no_grad():
            z, _, info = broyden_solver(counted, flat0, max_iter=max_iter, tol=tol, stop_mode=stop_mode)
        return counted.calls, bool(info[f"{stop_mode}_lowest"].max() < tol), float(info[f"{stop_mode}_lowest"].max())

    ours_s, (ours_calls, ours_conv, ours_res), theirs_s, (theirs_calls, theirs_conv, theirs_res) = \
        _side_by_side(ours, theirs, repeats)

    # Implicit gradients of the same loss with respect to every parameter.
    target = torch.randn(num_nodes, channels, generator=torch.Generator().manual_seed(1))
    params = [*model.encoder.parameters(), *model.block.parameters()]  # the loss is on Z* itself

    def ours_grad():
        model.zero_grad()
        inj_ = model.encoder(g.x)
        z = model.deq(inj_, g.edge_index, g.edge_attr)
        (z * target).sum().backward()
        return [p.grad.clone() for p in params]

    deq = get_deq(f_solver="broyden", b_solver="broyden", f_max_iter=max_iter, b_max_iter=max_iter,
                  f_tol=tol, b_tol=tol, f_stop_mode=stop_mode, b_stop_mode=stop_mode, ift=True)

    def theirs_grad():
        model.zero_grad()
        inj_ = model.encoder(g.x)
        z_out, _ = deq(lambda z: model.block(z.view_as(inj_), inj_, g.edge_index, g.edge_attr).reshape(1, -1),
                       torch.zeros(1, inj_.numel()))
        (z_out[-1].view_as(inj_) * target).sum().backward()
        return [p.grad.clone() for p in params]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours_bwd_s, g_ours, theirs_bwd_s, g_theirs = _side_by_side(ours_grad, theirs_grad, repeats)
    a, b = torch.cat([x.flatten() for x in g_ours]), torch.cat([x.flatten() for x in g_theirs])
    return {
        "problem": f"DEQGNN block (GEN, LayerNorm), synthetic-proteins {num_nodes} nodes, {g.num_edges} edges, "
                   f"{channels} channels; Broyden to {stop_mode} tol {tol:g} (max {max_iter})",
        "ours_f_evals": ours_calls, "torchdeq_f_evals": theirs_calls,
        "ours_converged": ours_conv, "torchdeq_converged": theirs_conv,
        "ours_residual": ours_res, "torchdeq_residual": theirs_res,
        "ours_solve_s": ours_s, "torchdeq_solve_s": theirs_s,
        "ours_fwd_bwd_s": ours_bwd_s, "torchdeq_fwd_bwd_s": theirs_bwd_s,
        "grad_rel_diff": ((a - b).norm() / b.norm()).item(),
        "grad_cosine": torch.nn.functional.cosine_similarity(a, b, dim=0).item(),
    }


class _StepPeak:
    """Peak memory of a code region above the memory in use when it starts, in MB.

    CUDA: the allocator's counters. CPU: Linux's peak RSS (VmHWM), reset through /proc/self/clear_refs
    after returning freed heap to the OS, so the data generation before the step does not count;
    elsewhere the process-wide peak (gnn1000.memory.peak_mb) stands in.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.linux = device.type == "cpu" and os.path.exists("/proc/self/clear_refs")

    @staticmethod
    def _status_mb(field: str) -> float:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith(field + ":"))
        return int(line.split()[1]) / 1024  # kB

    def __enter__(self):
        from gnn1000 import memory

        if self.device.type == "cuda":
            memory.reset_peak(self.device)
            self.before = torch.cuda.memory_allocated(self.device) / 2**20
        elif self.linux:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS to the current RSS
            self.before = self._status_mb("VmRSS")
        else:
            self.before = memory.peak_mb(self.device)
        return self

    def __exit__(self, *exc):
        from gnn1000 import memory

        peak = self._status_mb("VmHWM") if self.linux else memory.peak_mb(self.device)
        self.mb = peak - self.before


def _memory_child(mode: str, iterations: int, num_nodes: int, channels: int, avg_degree: int) -> dict:
    """One training step in this (fresh) process; its peak memory above what was in use before it."""
    from gnn1000.solvers import Broyden

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if mode == "unrolled":
        opts = {"pretrain_epochs": 1}  # the warm-up model: f applied num_layers times, plain autograd
    else:
        def solver():
            return Broyden(memory=8) if mode == "broyden-memory-8" else mode
        opts = {"solver": solver(), "bwd_solver": solver(), "fwd_tol": 0.0, "bwd_tol": 0.0,
                "fwd_max_iter": iterations, "bwd_max_iter": iterations}
    model, g = problem(num_nodes, channels, avg_degree, **opts)
    if mode == "unrolled":
        model.num_layers = iterations
    model, g = model.to(device), g.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    saved = {}

    def pack(t):  # what the autograd graph keeps for backward, one entry per storage
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with warnings.catch_warnings(), _StepPeak(device) as peak:
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(g.x, g.edge_index, g.edge_attr).square().mean()
        loss.backward()
        opt.step()
        seconds = time.perf_counter() - start
    return {"mode": mode, "iterations": iterations, "step_peak_mb": peak.mb,
            "autograd_mb": sum(saved.values()) / 2**20, "seconds": seconds, "device": str(device)}


def measure_memory(mode: str, iterations: int, num_nodes: int, channels: int, avg_degree: int) -> dict:
    code = (f"import json; from gnn1000.bench.deq import _memory_child; "
            f"print(json.dumps(_memory_child({mode!r}, {iterations}, {num_nodes}, {channels}, {avg_degree})))")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement {mode} x{iterations} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_table(iterations=(10, 40, 160), unrolled_iterations=(4, 8, 16), modes=STATE_SOLVERS,
                 num_nodes: int = 10000, channels: int = 64, avg_degree: int = 4) -> list[dict]:
    rows = [measure_memory(mode, it, num_nodes, channels, avg_degree) for mode in modes for it in iterations]
    rows += [measure_memory("unrolled", it, num_nodes, channels, avg_degree) for it in unrolled_iterations]
    return rows


def growth_per_iteration(rows: list[dict], mode: str, key: str = "step_peak_mb") -> float:
    """MB of extra ``key`` per extra solver iteration, from the fewest to the most iterations."""
    pts = sorted((r["iterations"], r[key]) for r in rows if r["mode"] == mode)
    (i0, m0), (i1, m1) = pts[0], pts[-1]
    return (m1 - m0) / (i1 - i0)


def print_comparison(r: dict) -> None:
    print(f"gnn1000 vs torchdeq: {r['problem']}")
    print(f"{'':24}{'gnn1000':>12}{'torchdeq':>12}{'ratio':>10}")
    print(f"{'f evaluations':24}{r['ours_f_evals']:>12}{r['torchdeq_f_evals']:>12}"
          f"{r['ours_f_evals'] / r['torchdeq_f_evals']:>10.2f}")
    print(f"{'converged':24}{str(r['ours_converged']):>12}{str(r['torchdeq_converged']):>12}")
    print(f"{'final residual':24}{r['ours_residual']:>12.2e}{r['torchdeq_residual']:>12.2e}")
    print(f"{'forward solve (s)':24}{r['ours_solve_s']:>12.3f}{r['torchdeq_solve_s']:>12.3f}"
          f"{r['ours_solve_s'] / r['torchdeq_solve_s']:>10.2f}")
    print(f"{'solve + implicit bwd (s)':24}{r['ours_fwd_bwd_s']:>12.3f}{r['torchdeq_fwd_bwd_s']:>12.3f}"
          f"{r['ours_fwd_bwd_s'] / r['torchdeq_fwd_bwd_s']:>10.2f}")
    print(f"implicit gradient, all parameters: relative difference {r['grad_rel_diff']:.2e}, "
          f"cosine {r['grad_cosine']:.6f}")


def print_memory(rows: list[dict]) -> None:
    print(f"\npeak memory of one training step above the memory in use before it ({rows[0]['device']}; "
          f"on CPU: peak RSS, so differences of a few MB are allocator noise)")
    print("(autograd MB: tensors the autograd graph saves for backward, counted exactly)")
    print(f"{'model':22}{'iterations':>11}{'step peak MB':>14}{'autograd MB':>13}{'seconds':>10}")
    for r in rows:
        print(f"{r['mode']:22}{r['iterations']:>11}{r['step_peak_mb']:>14.1f}{r['autograd_mb']:>13.1f}"
              f"{r['seconds']:>10.2f}")
    modes = dict.fromkeys(r["mode"] for r in rows)
    for key, label in (("step_peak_mb", "step peak"), ("autograd_mb", "autograd")):
        unrolled = growth_per_iteration(rows, "unrolled", key)
        print(f"{label} growth per extra iteration, MB (ratio to unrolled):  " + ",  ".join(
            f"{m} {growth_per_iteration(rows, m, key):.2f} ({growth_per_iteration(rows, m, key) / unrolled:.3f})"
            for m in modes))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnn1000 bench deq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=2000, help="graph size for the torchdeq comparison")
    parser.add_argument("--channels", type=int, default=64, help="hidden channels of the DEQ block")
    parser.add_argument("--tol", type=float, default=1e-4,
                        help="tolerance of the forward and backward solves (relative residual)")
    parser.add_argument("--max-iter", type=int, default=100, help="iteration limit of each solve")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions, alternating with torchdeq; the median is shown")
    parser.add_argument("--memory-nodes", type=int, default=10000, help="graph size for the memory table")
    parser.add_argument("--skip-memory", action="store_true", help="only the torchdeq comparison, no memory table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print_comparison(compare_with_torchdeq(args.nodes, args.channels, tol=args.tol, max_iter=args.max_iter,
                                           repeats=args.repeats))
    if not args.skip_memory:
        print_memory(memory_table(num_nodes=args.memory_nodes, channels=args.channels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
