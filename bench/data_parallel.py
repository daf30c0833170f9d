"""``gnn1000 bench data_parallel``: epoch time of ``--workers N`` against one process, same config.

Each case trains the same config three ways in one run: one process on one thread, one process on
N threads (the fair baseline: the same cores), and N Ray Train workers of one thread each (gloo).
The figure is the median seconds of the epochs after the first (start-up, METIS and caches excluded),
as each run's ``metrics.jsonl`` records them; the machine's load average is printed alongside.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

# (label, config, bindings): a graph-level and a node-level job of a few seconds per epoch on a CPU.
CASES = {
    "graph": ("graph-level: TU PROTEINS, RevGNN 7 x 64, batches of 32 graphs", "fragments/tu",
              ["tu.name = 'PROTEINS'", "experiment.architecture = 'revgnn'", "revgnn.hidden_channels = 64",
               "revgnn.num_layers = 7", "revgnn.num_groups = 2", "revgnn.norm = 'layernorm'"]),
    "node": ("node-level: synthetic-proteins 3000 nodes, random_partition 10 parts, RevGNN 28 x 64",
             "synthetic-proteins/revgnn-deep",
             ["experiment.sampler = 'random_partition'", "random_partition.num_parts = 10"]),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gnn1000 bench data_parallel", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES),
                        help="which jobs to time: 'graph' (graph-level) and/or 'node' (node-level)")
    parser.add_argument("--workers", type=int, default=2,
                        help="N: Ray Train workers, and the threads of the same-cores baseline")
    parser.add_argument("--epochs", type=int, default=4, help="the first is left out of the median")
    parser.add_argument("--bind", action="append", default=[], help="a gin binding for every case (repeatable)")
    return parser


def _epoch_seconds(run: Path) -> float:
    import json

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["seconds"] for r in records[1:] or records)


def _single(bindings: list[str], config: str, run: Path, threads: int) -> float:
    import torch

    from gnn1000 import config as gin_config
    from gnn1000.build import build_experiment

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gin_config.load(config, bindings)
        build_experiment(run, progress=False, log=lambda _: None).fit()
    finally:
        torch.set_num_threads(before)
    return _epoch_seconds(run)


def _parallel(bindings: list[str], config: str, run: Path, workers: int) -> float:
    import gin

    from gnn1000 import config as gin_config
    from gnn1000.tune.data_parallel import fit_data_parallel

    gin_config.load(config, bindings)
    fit_data_parallel(gin.config_str(), run, workers=workers, storage=str(run.parent / "ray-train"),
                      log=lambda _: None)
    return _epoch_seconds(run)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from gnn1000.errors import ConfigError
    from gnn1000.tune.cluster import ray_session

    if args.workers < 2:
        raise ConfigError(f"--workers {args.workers}: compare at least 2 workers with one process.")
    common = [*args.bind, f"experiment.epochs = {args.epochs}", "experiment.device = 'cpu'"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gnn1000-bench-dp-") as tmp, \
            ray_session("local", num_cpus=max(os.cpu_count() or 1, args.workers), include_dashboard=False,
                        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}}):
        for case in args.cases:
            label, config, bindings = CASES[case]
            bindings = [*bindings, *common]
            load = os.getloadavg()[0]
            one = _single(bindings, config, Path(tmp) / f"{case}-1x1", 1)
            same_cores = _single(bindings, config, Path(tmp) / f"{case}-1x{args.workers}", args.workers)
            parallel = _parallel(bindings, config, Path(tmp) / f"{case}-workers", args.workers)
            rows.append((label, one, same_cores, parallel, load, os.getloadavg()[0]))
    w = args.workers
    print(f"median seconds per epoch (epochs 2-{args.epochs}); speed-up = baseline / {w} workers; "
          f"{os.cpu_count()} CPUs")
    print(f"{'case':<88} {'1 proc x 1 thr':>14} {f'1 proc x {w} thr':>15} {f'{w} workers x 1':>14} "
          f"{'vs 1x1':>7} {f'vs 1x{w}':>7} {'load 1 min':>11}")
    for label, one, same_cores, parallel, before, after in rows:
        print(f"{label:<88} {one:>14.2f} {same_cores:>15.2f} {parallel:>14.2f} {one / parallel:>6.2f}x "
              f"{same_cores / parallel:>6.2f}x {before:>5.1f}-{after:<5.1f}")
    return 0
