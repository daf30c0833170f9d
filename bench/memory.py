"""``gnn1000 bench memory``: peak training-step memory against depth, like the paper's Fig. 3.

Each (model, depth) point runs in its own process so that no allocation of one point inflates the
next. On CPU the peak is the resident set's high-water mark, with glibc's mmap threshold fixed so
freed tensors go back to the OS; on GPU it is ``torch.cuda.max_memory_allocated``. The peak covers
one training step (forward, backward, optimizer step) and includes what stays resident (runtime,
graph, weights, optimizer state).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gnn1000.extras import require
from gnn1000.bench._workload import (BASELINE, LAYERED, MODELS, Workload, add_workload_options, check_args,
                                     check_models, check_precision)

DEFAULT_DEPTHS = (8, 64, 256, 1001)
REFERENCE = "revgnn"


def measure(model: str, layers: int, w: Workload, device_name: str) -> dict:
    """One point, in this process: build, create the optimizer state, reset the peak, one step."""
    import torch

    from gnn1000 import memory
    from gnn1000.bench._workload import Trainer

    device = torch.device(device_name)
    trainer = Trainer(model, layers, w, device)
    trainer.prime_optimizer()  # Adam's state is resident before the measured step, as in training
    gc.collect()
    memory.reset_peak(device)
    resident = memory.current_mb(device)
    start = time.perf_counter()
    trainer.step()
    seconds = time.perf_counter() - start
    return {"model": model, "layers": layers, "precision": w.precision, "status": "ok",
            "peak_mb": memory.peak_mb(device),
            "resident_mb": resident, "step_s": seconds,
            "parameters": sum(p.numel() for p in trainer.model.parameters())}


def measure_or_oom(model: str, layers: int, w: Workload, device_name: str) -> dict:
    """``measure`` in this process, an allocation failure recorded as out of memory rather than raised
    (``torch.cuda.OutOfMemoryError``, or the CPU allocator's refusal); the cache is emptied after it."""
    import torch

    try:
        return measure(model, layers, w, device_name)
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
        if not (isinstance(exc, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(exc)):
            raise
        reason = str(exc).splitlines()[0][:200]
    gc.collect()  # the failed step's tensors are freed once its traceback is gone, here
    if torch.device(device_name).type == "cuda":
        torch.cuda.empty_cache()
    return {"model": model, "layers": layers, "precision": w.precision, "status": f"out of memory: {reason}",
            "peak_mb": None}


def out_of_memory(point: dict) -> bool:
    """A point stopped for its memory: the allocator failed, or (CPU, own process) it passed ``--max-mb``."""
    return point.get("peak_mb") is None and ("memory" in point["status"] or " MB" in point["status"])


def sweep(models: list[str], depths: list[int], precisions: list[str], point, deadline: float | None = None,
          log=print) -> list[dict]:
    """``point(model, depth, precision)`` for every combination, shallowest depths first. A model that
    ran out of memory is not tried deeper; a point that would end after ``deadline`` (``time.monotonic``;
    predicted from the same model's last point, scaled by depth) is recorded as skipped, not run."""
    points, stopped, last = [], set(), {}
    for prec in precisions:
        for d in sorted(depths):
            for m in models:
                seconds = last.get((m, prec))
                predicted = seconds[1] * d / seconds[0] if seconds else 0.0
                if (m, prec) in stopped:  # it ran out of memory at a smaller depth: deeper cannot fit
                    p = {"status": "skipped (out of memory at fewer layers)"}
                elif deadline is not None and time.monotonic() + predicted >= deadline:
                    p = {"status": f"skipped (time budget; about {predicted:.0f} s needed)"}
                else:
                    start = time.monotonic()
                    p = point(m, d, prec)
                    last[(m, prec)] = (d, time.monotonic() - start)
                    if out_of_memory(p):
                        stopped.add((m, prec))
                p = {"model": m, "layers": d, "precision": prec, "peak_mb": None, **p}
                points.append(p)
                shown = f"{p['peak_mb']:.0f} MB in {p['step_s']:.2f} s" if p.get("peak_mb") else p["status"]
                log(f"  {m:<18} {prec:>5} {d:>5}: {shown}")
    return points


def run_point(model: str, layers: int, args: argparse.Namespace, prec: str = "32") -> dict:
    """``measure`` in a fresh interpreter, killed if its resident set passes ``--max-mb``."""
    import psutil

    cmd = [sys.executable, "-m", "gnn1000.bench.memory", "--worker", model, str(layers),
           *_workload_args(args), "--precisions", prec]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(args.threads)}
    point = {"model": model, "layers": layers, "precision": prec}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env)
        child, started, rss = psutil.Process(proc.pid), time.monotonic(), 0.0
        while proc.poll() is None:
            try:
                rss = max(rss, child.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                break
            if args.device == "cpu" and rss > args.max_mb:
                proc.kill()
                proc.wait()
                return {**point, "status": f"over {args.max_mb:.0f} MB", "peak_mb": None}
            if time.monotonic() - started > args.timeout:
                proc.kill()
                proc.wait()
                return {**point, "status": f"over {args.timeout:.0f} s", "peak_mb": None}
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        lines = out.read().strip().splitlines()
        if proc.returncode != 0 or not lines:
            text = err.read()
            reason = "out of memory" if "OutOfMemoryError" in text else text.strip()[-300:]
            return {**point, "status": f"failed: {reason}", "peak_mb": None}
        return json.loads(lines[-1])


def _workload_args(args: argparse.Namespace) -> list[str]:
    return ["--nodes", str(args.nodes), "--edges", str(args.edges), "--channels", str(args.channels),
            "--groups", str(args.groups), "--device", args.device]


def _workload(args: argparse.Namespace) -> Workload:
    return Workload(nodes=args.nodes, edges=args.edges, channels=args.channels, groups=args.groups,
                    precision=check_precision(args.precisions[0]))


def table(points: list[dict], models: list[str], depths: list[int]) -> str:
    """Peak MB per model and depth, then each peak as a ratio to the model's shallowest peak and to
    RevGNN's peak at the same depth."""
    peak = {(p["model"], p["layers"]): p.get("peak_mb") for p in points}
    status = {(p["model"], p["layers"]): p["status"] for p in points}

    def cell(value, key, fmt):  # a point stopped for its memory shows as OOM, as in the paper
        if value is not None:
            return format(value, fmt)
        return "OOM" if any(s in status.get(key, "") for s in ("memory", " MB")) else "failed"

    width = max(12, *(len(m) + 2 for m in models))
    head = f"{'layers':>7}" + "".join(f"{m:>{width}}" for m in models)
    lines = ["peak memory (MB)", head]
    for d in depths:
        lines.append(f"{d:>7}" + "".join(f"{cell(peak.get((m, d)), (m, d), '.0f'):>{width}}" for m in models))
    lines += ["", f"ratio to the same model at {depths[0]} layers", head]
    for d in depths:
        row = []
        for m in models:
            base, here = peak.get((m, depths[0])), peak.get((m, d))
            row.append(cell(here / base if here and base else None, (m, d), ".3f"))
        lines.append(f"{d:>7}" + "".join(f"{c:>{width}}" for c in row))
    lines += ["", "added by the step (peak minus what was resident before it, MB)", head]
    added = {(p["model"], p["layers"]): added_mb(p) for p in points if p.get("peak_mb")}
    for d in depths:
        lines.append(f"{d:>7}" + "".join(f"{cell(added.get((m, d)), (m, d), '.0f'):>{width}}" for m in models))
    if REFERENCE in models:
        lines += ["", f"ratio to {REFERENCE} at the same depth", head]
        for d in depths:
            ref = peak.get((REFERENCE, d))
            lines.append(f"{d:>7}" + "".join(
                f"{cell(peak.get((m, d)) / ref if peak.get((m, d)) and ref else None, (m, d), '.3f'):>{width}}"
                for m in models))
    return "\n".join(lines)


def added_mb(point: dict) -> float | None:
    """What the step itself added: its peak above what was resident before it (runtime, graph,
    weights and optimizer state are not the model's activations)."""
    return point["peak_mb"] - point["resident_mb"] if point.get("peak_mb") else None


def plot(points: list[dict], models: list[str], path: Path, title: str, value=None,
         ylabel: str = "memory added by one training step (MB)", label=None, budget: float | None = None) -> None:
    """``value(point)`` (default: the memory one training step added) against depth, one line per model
    and precision; both axes logarithmic with plain tick labels (8, 64, 256, 1001; 10, 100 MB).
    ``label(point)`` writes a text beside each point (a score); ``budget`` draws a memory line."""
    value = value or added_mb
    require("matplotlib", "bench", "The memory plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    precisions = list(dict.fromkeys(p.get("precision", "32") for p in points))
    for m, prec in [(m, prec) for prec in precisions for m in models]:
        mine = [p for p in points if p["model"] == m and p.get("precision", "32") == prec]
        ok = sorted((p["layers"], max(value(p), 0.1)) for p in mine if p.get("peak_mb"))
        failed = sorted(p["layers"] for p in mine if not p.get("peak_mb"))
        name = m if len(precisions) == 1 else f"{m} ({prec})"
        line = ax.plot([d for d, _ in ok], [v for _, v in ok], marker="o", label=name,
                       linestyle="-" if prec == "32" else "--")[0]
        for p in (p for p in mine if p.get("peak_mb") and label is not None and label(p)):
            ax.annotate(label(p), (p["layers"], max(value(p), 0.1)), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=line.get_color())
        if failed and ok:  # drawn at the last height that fitted, as the paper marks out-of-memory runs
            ax.scatter(failed, [ok[-1][1]] * len(failed), marker="x", color=line.get_color(), s=60)
            for d in failed:
                ax.annotate("OOM", (d, ok[-1][1]), textcoords="offset points", xytext=(-10, 8), fontsize=7,
                            color=line.get_color())
    if not any(p.get("peak_mb") for p in points):  # every point failed or was skipped: an empty plot says so
        ax.text(0.5, 0.5, "no point measured", ha="center", transform=ax.transAxes)
        _save(fig, ax, path, title, ylabel)
        return
    ax.set_xscale("log")
    ax.set_yscale("log")
    depths = sorted({p["layers"] for p in points})
    ax.set_xticks(depths)
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 8, 64, 1001 and 10, 100 MB, not 2x10^0
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))  # 20, 50, 100, 200 MB ...
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())
    if budget is not None:
        ax.axhline(budget, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"memory budget {budget:g} MB", (depths[0], budget), textcoords="offset points",
                    xytext=(0, 3), fontsize=7, color="grey")
    ax.legend(fontsize=8)
    _save(fig, ax, path, title, ylabel)


def _save(fig, ax, path: Path, title: str, ylabel: str) -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel("layers")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnn1000 bench memory", description=__doc__.split("\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEFAULT_DEPTHS),
                        help="numbers of layers to measure, each model at each depth")
    parser.add_argument("--models", nargs="+", default=LAYERED, help=f"from {', '.join(MODELS)}")
    add_workload_options(parser)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each point")
    parser.add_argument("--precisions", nargs="+", default=["32"], help="from 32, bf16, 16 (autocast)")
    parser.add_argument("--max-mb", type=float, default=8000.0,
                        help="on CPU, a point whose resident set passes this is stopped and shown as OOM")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per point")
    parser.add_argument("--out", type=Path, default=Path("bench-memory"),
                        help="writes OUT.json and OUT.png (default: bench-memory)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "LAYERS"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        model, layers = args.worker
        print(json.dumps(measure(model, int(layers), _workload(args), args.device)))
        return 0
    check_args("memory", args, ("nodes", "edges", "channels", "groups", "threads"), ("depths",))
    models, depths = check_models(args.models), sorted(args.depths)
    precisions = [check_precision(p) for p in args.precisions]
    w = _workload(args)
    print(f"peak memory of one training step: {w.nodes} nodes, {w.edges} edges, {w.channels} channels, "
          f"{w.groups} groups, {w.operator}/{w.norm}, device {args.device}", flush=True)
    points = sweep(models, depths, precisions, lambda m, d, prec: run_point(m, d, args, prec),
                   log=lambda line: print(line, flush=True))
    for prec in precisions:
        print(f"\nprecision {prec}\n" + table([p for p in points if p["precision"] == prec], models, depths))
    json_path, png_path = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"workload": vars(w), "device": args.device, "baseline": BASELINE,
                                     "points": points}, indent=2))
    plot(points, models, png_path, f"{w.nodes} nodes, {w.edges} edges, {w.channels} channels, {args.device}")
    print(f"\nwrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
