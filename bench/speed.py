"""``gnn1000 bench speed``: training-step time of each model as a ratio to ResGNN's, same depth and width.

All models are built once and stepped in turns (a different order every round), so a slow moment of
a shared machine hits every model alike; the ratio of medians is what is reported. Variants of each
model are timed in the same rounds, side by side with it: ``--compile`` (torch.compile, as
``experiment.compile`` trains) and ``--no-norm-cache`` (GCN's normalisation computed again in every
layer and backward instead of once per graph, :func:`gnn1000.plugins.operators.pyg_convs.normalization_cache`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from dataclasses import replace

from gnn1000.errors import ConfigError
from gnn1000.bench._workload import (BASELINE, LAYERED, MODELS, Trainer, Workload, add_workload_options,
                                     check_args, check_models, check_precision)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(trainers: dict, rounds: int, warmup: int, device) -> dict:
    """Seconds per training step of each trainer, measured round-robin."""
    names = list(trainers)
    for _ in range(warmup):
        for name in names:
            trainers[name].step()
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            _sync(device)
            start = time.perf_counter()
            trainers[name].step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


COMPILED, NO_NORM_CACHE = "compiled", "no-norm-cache"  # the variants' suffixes in the table: "revgnn compiled"


class Variant:
    """A benchmark trainer stepped as one variant: ``compiled`` (its model through torch.compile, as
    ``experiment.compile`` trains it) or ``no-norm-cache`` (GCN normalises in every layer)."""

    def __init__(self, trainer: Trainer, variant: str):
        from gnn1000.compilation import compiled

        self.trainer, self.norm_cache = trainer, variant != NO_NORM_CACHE
        if variant == COMPILED:
            trainer.model = compiled(trainer.model)  # shares the parameters the optimizer steps

    def step(self) -> float:
        from gnn1000.plugins.operators.pyg_convs import normalization_cache

        with normalization_cache(self.norm_cache):  # on: each step's graph is normalised once, as in training
            return self.trainer.step()


def step_times(models: list[str], layers: int, w: Workload, precisions: list[str], device, rounds: int,
               warmup: int, log=print, variants: tuple[str, ...] = ()) -> dict[str, dict[str, list[float]]]:
    """Seconds per training step, by precision and model (and each of ``variants`` of it, as
    "MODEL VARIANT"), measured interleaved. A precision the device lacks, or a model that fails in one
    untimed step at a precision, is named through ``log``, not timed."""
    from gnn1000 import precision as amp

    names = [m if not v else f"{m} {v}" for m in models for v in ("", *variants)]
    trainers = {}
    for p in precisions:
        reason = amp.unsupported(device, p)
        if reason:
            log(f"  precision {p} skipped: {reason}")
            continue
        for name in names:
            m, _, variant = name.partition(" ")
            trainers[(name, p)] = trainer = Variant(Trainer(m, layers, replace(w, precision=p), device), variant)
            try:
                trainer.step()  # one untimed step (it compiles): a model that cannot run this precision is named
            except RuntimeError as exc:
                log(f"  {name} at precision {p} failed: {str(exc).splitlines()[0]}")
                del trainers[(name, p)]
    flat = interleaved_times(trainers, rounds, warmup, device)
    return {p: {n: flat[(n, p)] for n in names if (n, p) in flat} for p in precisions
            if any((n, p) in flat for n in names)}


def table(times: dict[str, dict[str, list[float]]], layers: int) -> str:
    """Median and fastest step per model and precision, as ratios to the baseline at the same
    precision, the median as a ratio to the same model in float32, and a variant's median as a ratio
    to its model's plain one ("vs plain": below 1.00x the variant is faster)."""
    variants = any(" " in name for by_model in times.values() for name in by_model)
    lines = [f"{str(layers) + ' layers':<28} {'precision':>9} {'median ms':>10} {'ratio':>7} {'min ms':>9} "
             f"{'ratio':>7} {'vs 32':>7}{' vs plain' if variants else ''}"
             f"   (ratios to {BASELINE} at the same precision)"]
    for prec, by_model in times.items():
        base = by_model.get(BASELINE)
        for name, ts in by_model.items():
            med, low = statistics.median(ts), min(ts)
            r_med = f"{med / statistics.median(base):.2f}x" if base else "-"
            r_low = f"{low / min(base):.2f}x" if base else "-"
            fp32 = times.get("32", {}).get(name)
            r_32 = f"{med / statistics.median(fp32):.2f}x" if fp32 else "-"
            plain = by_model.get(name.partition(" ")[0]) if " " in name else None
            r_plain = f" {med / statistics.median(plain):>8.2f}x" if plain else (" " * 10 if variants else "")
            lines.append(f"  {name:<26} {prec:>9} {med * 1e3:>10.1f} {r_med:>7} {low * 1e3:>9.1f} {r_low:>7} "
                         f"{r_32:>7}{r_plain}")
    return "\n".join(lines)


def check_operator(name: str) -> str:
    """A registered operator, or one paragraph naming the choices."""
    from gnn1000.registry import available

    if name not in available("operators"):
        raise ConfigError(f"gnn1000 bench speed --operator {name}: not a registered operator; choose from "
                          f"{', '.join(available('operators'))}.")
    return name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnn1000 bench speed", description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[16], help="numbers of layers to time")
    parser.add_argument("--models", nargs="+", default=LAYERED, help=f"from {', '.join(MODELS)}")
    add_workload_options(parser)
    parser.add_argument("--operator", default=Workload.operator,
                        help="the registered operator of every model's layers (e.g. gen, gcn, sage)")
    parser.add_argument("--precisions", nargs="+", default=["32"], help="from 32, bf16, 16 (autocast)")
    parser.add_argument("--compile", action="store_true",
                        help="also time each model through torch.compile (as experiment.compile trains it; the "
                             "untimed first step compiles) and show compiled vs eager")
    parser.add_argument("--no-norm-cache", action="store_true",
                        help="also time each model with GCN's normalisation computed again in every layer and "
                             "backward instead of once per graph, and show the ratio (with --operator gcn)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="timed rounds; each steps every model once, starting from a different model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (allocator, caches)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--json", type=Path, help="also write the step times here")
    return parser


def main(argv: list[str] | None = None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    check_args("speed", args, ("nodes", "edges", "channels", "groups", "threads", "rounds"), ("layers",))
    models = check_models(args.models)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    w = Workload(nodes=args.nodes, edges=args.edges, channels=args.channels, groups=args.groups,
                 operator=check_operator(args.operator))
    variants = tuple(v for v, on in ((COMPILED, args.compile), (NO_NORM_CACHE, args.no_norm_cache)) if on)
    precisions = [check_precision(p) for p in args.precisions]
    print(f"training-step time: {w.nodes} nodes, {w.edges} edges, {w.channels} channels, {w.groups} groups, "
          f"{w.operator}/{w.norm}, device {device}, {args.threads} thread(s), {args.rounds} interleaved rounds",
          flush=True)
    results = {}
    for layers in args.layers:
        times = step_times(models, layers, w, precisions, device, args.rounds, args.warmup,
                           log=lambda line: print(line, flush=True), variants=variants)
        results[layers] = times
        print("\n" + table(times, layers), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"workload": vars(w), "device": str(device), "step_seconds": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
