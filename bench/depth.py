"""``gnn1000 bench depth CONFIG``: does depth pay? Score and step memory against depth, per model.

Each (model, depth) point trains the config's model rebuilt as that model at that depth (same width,
operator, norm and dropouts; :mod:`gnn1000.variants`) with ``gnn1000 train`` in its own process, then
measures one training step in a fresh process, so every point's memory is measured alike. It
writes a table (test score, the depth ceiling where the dataset has one, peak step memory, seconds
per epoch, parameters) and a plot in the style of the paper's Figure 1: memory against layers, each
point labelled with its score, and a ``--memory-budget`` line where a model would run out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from gnn1000.bench.memory import plot
from gnn1000.errors import ConfigError

DEFAULT_LAYERS = (2, 4, 8, 16, 32, 64, 128)
DEFAULT_MODELS = ("resgnn", "revgnn", "wt-revgnn", "deq")


def train_point(config: str, model: str, layers: int, args: argparse.Namespace, run_dir: Path) -> dict:
    """Train one point with ``gnn1000 train`` in a fresh process; its summary, or why it failed.
    The config must be loaded (:func:`gnn1000.variants.variant_bindings` reads its architecture)."""
    from gnn1000.variants import step_memory, variant_bindings

    bindings = [*args.bind, *variant_bindings(model, layers), f"experiment.epochs = {args.epochs}"]
    cmd = [sys.executable, "-m", "gnn1000", "train", config, "--run-dir", str(run_dir), "--no-progress",
           *[a for b in bindings for a in ("--bind", b)]]
    point = {"model": model, "layers": layers, "bindings": bindings}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**point, "status": f"not trained within --timeout {args.timeout:g} s", "peak_mb": None}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {**point, "status": lines[-1] if lines else f"exit code {done.returncode}", "peak_mb": None}
    summary = json.loads((run_dir / "summary.json").read_text())
    step = step_memory(run_dir / "config.gin", [])
    metric = summary["metric"]
    return {**point, "status": "ok" if "error" not in step else step["error"],
            "metric": metric, "test": summary["test_at_best_valid"], "ceiling": summary.get("depth_ceiling"),
            "peak_mb": step.get("step_memory_mb"), "step_s": step.get("step_s"),
            "seconds_per_epoch": summary["train_seconds"] / max(summary["epochs"], 1),
            "parameters": summary["num_parameters"], "memory_kind": summary["memory_kind"]}


def table(points: list[dict]) -> str:
    metric = next((p["metric"] for p in points if p.get("metric")), "score")
    rows = [f"| model | layers | test {metric} | depth ceiling | step memory MB | s / epoch | parameters |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        if p.get("test") is None:
            rows.append(f"| {p['model']} | {p['layers']} | {p['status']} | | | | |")
            continue
        ceiling = f"{p['ceiling']:.4f}" if p.get("ceiling") is not None else "-"
        memory = f"{p['peak_mb']:.1f}" if p.get("peak_mb") is not None else p["status"]
        rows.append(f"| {p['model']} | {p['layers']} | {p['test']:.4f} | {ceiling} | {memory} | "
                    f"{p['seconds_per_epoch']:.2f} | {p['parameters']:,} |")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnn1000 bench depth", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="a gin config or shipped config name (e.g. infection/revgnn-deep)")
    parser.add_argument("--layers", type=int, nargs="+", default=list(DEFAULT_LAYERS),
                        help="depths to train (for deq: its solver's iteration limit)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="models to rebuild the config's model as: resgnn, revgnn, wt-resgnn, wt-revgnn, deq")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per point (fewer than the config's is fine)")
    parser.add_argument("--bind", action="append", default=[], help="a gin binding for every point")
    parser.add_argument("--memory-budget", type=float, default=None,
                        help="draw this many MB as the memory a device has (where ResGNN would run out)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one point may train")
    parser.add_argument("--out", type=Path, default=Path("bench-depth"), help="folder for depth.json/.md/.png")
    return parser


def _check(args: argparse.Namespace) -> None:
    from gnn1000.variants import check_variant

    for model in args.models:
        check_variant(model)
    bad = [d for d in args.layers if d < 1]
    if bad or args.epochs < 1:
        raise ConfigError(f"bench depth: --layers {bad or args.layers} and --epochs {args.epochs} must be >= 1.")
    if args.memory_budget is not None and not args.memory_budget > 0:
        raise ConfigError(f"bench depth: --memory-budget {args.memory_budget} must be a positive number of MB.")


def main(argv: list[str] | None = None) -> int:
    from gnn1000 import config as gin_config

    args = build_parser().parse_args(argv)
    _check(args)
    gin_config.load(args.config, args.bind)  # once: every point is a variant of this config's model
    args.out.mkdir(parents=True, exist_ok=True)
    points = []
    with tempfile.TemporaryDirectory(prefix="gnn1000-depth-") as scratch:
        for layers in sorted(args.layers):
            for model in args.models:
                point = train_point(args.config, model, layers, args, Path(scratch) / f"{model}-{layers}")
                points.append(point)
                shown = (f"test {point['test']:.4f}, {point['peak_mb'] or 0:.1f} MB" if point.get("test") is not None
                         else point["status"])
                print(f"  {model:<10} {layers:>5} layers: {shown}", flush=True)
    text = table(points)
    device = next((p["memory_kind"].split()[0] for p in points if p.get("memory_kind")), "")
    title = f"{args.config}, {args.epochs} epochs per point: one training step's memory ({device})"
    (args.out / "depth.json").write_text(json.dumps({"config": args.config, "epochs": args.epochs,
                                                     "points": points}, indent=2))
    (args.out / "depth.md").write_text(f"{title}\n\n{text}\n")
    plot(points, args.models, args.out / "depth.png", title, value=lambda p: p["peak_mb"],
         ylabel="peak memory of one training step (MB)", budget=args.memory_budget,
         label=lambda p: f"{p['test']:.2f}" if p.get("test") is not None else "")
    print(f"\n{title}\n\n{text}\n\nwrote {args.out}/depth.json, depth.md and depth.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
