"""``gnn1000 bench speed``: training-step time of each model as a ratio to ResGNN's, same depth and width.

All models are built once and stepped in turns (a different order every round), so a slow moment of
a shared machine hits every model alike; the ratio of medians is what is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from dataclasses import replace

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


def step_times(models: list[str], layers: int, w: Workload, precisions: list[str], device, rounds: int,
               warmup: int, log=print) -> dict[str, dict[str, list[float]]]:
    """Seconds per training step, by precision and model, measured interleaved. A precision the device
    lacks, or a model that fails in one untimed step at a precision, is named through ``log``, not timed."""
    from gnn1000 import precision as amp

    trainers = {}
    for p in precisions:
        reason = amp.unsupported(device, p)
        if reason:
            log(f"  precision {p} skipped: {reason}")
            continue
        for m in models:
            trainers[(m, p)] = trainer = Trainer(m, layers, replace(w, precision=p), device)
            try:
                trainer.step()  # one untimed step: a model that cannot run this precision is named, not timed
            except RuntimeError as exc:
                log(f"  {m} at precision {p} failed: {str(exc).splitlines()[0]}")
                del trainers[(m, p)]
    flat = interleaved_times(trainers, rounds, warmup, device)
    return {p: {m: flat[(m, p)] for m in models if (m, p) in flat} for p in precisions
            if any((m, p) in flat for m in models)}


def table(times: dict[str, dict[str, list[float]]], layers: int) -> str:
    """Median and fastest step per model and precision, as ratios to the baseline at the same
    precision, and the median as a ratio to the same model in float32."""
    lines = [f"{str(layers) + ' layers':<20} {'precision':>9} {'median ms':>10} {'ratio':>7} {'min ms':>9} "
             f"{'ratio':>7} {'vs 32':>7}   (ratios to {BASELINE} at the same precision)"]
    for prec, by_model in times.items():
        base = by_model.get(BASELINE)
        for name, ts in by_model.items():
            med, low = statistics.median(ts), min(ts)
            r_med = f"{med / statistics.median(base):.2f}x" if base else "-"
            r_low = f"{low / min(base):.2f}x" if base else "-"
            fp32 = times.get("32", {}).get(name)
            r_32 = f"{med / statistics.median(fp32):.2f}x" if fp32 else "-"
            lines.append(f"  {name:<18} {prec:>9} {med * 1e3:>10.1f} {r_med:>7} {low * 1e3:>9.1f} {r_low:>7} {r_32:>7}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnn1000 bench speed", description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[16], help="numbers of layers to time")
    parser.add_argument("--models", nargs="+", default=LAYERED, help=f"from {', '.join(MODELS)}")
    add_workload_options(parser)
    parser.add_argument("--precisions", nargs="+", default=["32"], help="from 32, bf16, 16 (autocast)")
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
    w = Workload(nodes=args.nodes, edges=args.edges, channels=args.channels, groups=args.groups)
    precisions = [check_precision(p) for p in args.precisions]
    print(f"training-step time: {w.nodes} nodes, {w.edges} edges, {w.channels} channels, {w.groups} groups, "
          f"{w.operator}/{w.norm}, device {device}, {args.threads} thread(s), {args.rounds} interleaved rounds",
          flush=True)
    results = {}
    for layers in args.layers:
        times = step_times(models, layers, w, precisions, device, args.rounds, args.warmup,
                           log=lambda line: print(line, flush=True))
        results[layers] = times
        print("\n" + table(times, layers), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"workload": vars(w), "device": str(device), "step_seconds": results},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
