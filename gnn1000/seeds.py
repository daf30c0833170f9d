"""Multi-seed runs: one complete run per seed in ``RUN_DIR/seed-<k>/``, and their mean ± std.

``gnn1000 train CONFIG --seeds 3`` (seeds 0, 1, 2) or ``--seeds 0,3,7`` trains the config once per
seed (binding ``experiment.seed``), then writes ``RUN_DIR/summary.json``: every seed's final and
best-validation metrics, their mean and their sample standard deviation (ddof=1, as OGB's scripts
report ``torch.std``), and the command. ``RUN_DIR/seeds.json`` records the seeds and the command
before training starts, so ``gnn1000 train --resume RUN_DIR`` goes on seed by seed: finished seeds
are kept, the interrupted one resumes from its checkpoint, the rest start.
"""

from __future__ import annotations

import json
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path

import gin

from gnn1000.errors import ConfigError

MANIFEST = "seeds.json"
STD = "sample standard deviation (ddof=1), as OGB's scripts report torch.std"


def parse_seeds(spec: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0,3,7' -> [0, 3, 7]."""
    text = str(spec).strip()
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return list(range(count))
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {spec!r} is not a seed count or a seed list: give a positive count "
                          f"(--seeds 3 runs seeds 0, 1, 2) or comma-separated integers (--seeds 0,3,7).") from None
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {spec!r}: the seeds must be distinct non-negative integers.")
    return seeds


def is_multi_seed_run(path: Path | str) -> bool:
    return (Path(path) / MANIFEST).is_file()


@dataclass
class SeedRun:
    """One seed's run directory and how far it got."""

    seed: int
    path: Path

    @property
    def summary(self) -> dict | None:
        file = self.path / "summary.json"
        return json.loads(file.read_text()) if file.is_file() else None

    def finished(self, epochs: int) -> bool:
        summary = self.summary
        return summary is not None and summary.get("epochs", 0) >= epochs

    @property
    def started(self) -> bool:
        from gnn1000 import checkpoint

        last = self.path / "checkpoints" / "last.pt"
        return last.is_file() or checkpoint.previous(last).is_file()


def seed_runs(run_dir: Path, seeds: list[int]) -> list[SeedRun]:
    return [SeedRun(seed, Path(run_dir) / f"seed-{seed}") for seed in seeds]


def train_seeds(run_dir: Path | str, seeds: list[int], command: str, *, progress: bool = True,
                log=print) -> dict:
    """Train every seed not finished yet under the gin config already loaded; return the summary."""
    from gnn1000 import config as gin_config
    from gnn1000.build import build_experiment
    from gnn1000.rundir import RunDir

    run_dir = Path(run_dir)
    parent = RunDir(run_dir)
    parent.lock()  # one multi-seed run at a time in this folder, as for a single run
    try:
        manifest = run_dir / MANIFEST
        # every seed's bindings as they are now (a resume may have changed some), for --resume
        (run_dir / "config.gin").write_text(gin.config_str())
        if not manifest.is_file():
            manifest.write_text(json.dumps({"seeds": seeds, "command": command}, indent=2) + "\n")
        for run in seed_runs(run_dir, seeds):
            gin.bind_parameter("experiment.seed", run.seed)
            if run.finished(gin_config.settings().epochs):
                log(f"seed {run.seed}: finished in {run.path}, kept")
                continue
            if not run.started:  # killed before its first checkpoint: its partial files move aside
                RunDir.for_new_run(run.path, overwrite=True)
            log(f"seed {run.seed}: {'resuming' if run.started else 'training'} in {run.path}")
            experiment = build_experiment(run.path, progress=progress)
            try:
                experiment.fit(resume=run.started)
            finally:
                experiment.run.release()
    finally:
        parent.release()
    return write_summary(run_dir)


def _metrics(summary: dict) -> dict:
    metric, final, best = summary["metric"], summary["final"], summary["best"]
    return {
        "final_test": final[f"test_{metric}"], "final_valid": final[f"valid_{metric}"],
        "best_valid": best[f"valid_{metric}"], "test_at_best_valid": summary["test_at_best_valid"],
        "best_epoch": best["epoch"], "seconds": summary["train_seconds"],
        "peak_memory_mb": summary["peak_memory_mb"],
    }


def write_summary(run_dir: Path | str) -> dict:
    """RUN_DIR/summary.json from the per-seed summaries on disk: per-seed values, mean and std."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / MANIFEST).read_text())
    rows, metric = [], None
    for run in seed_runs(run_dir, manifest["seeds"]):
        summary = run.summary
        if summary is None:
            raise ConfigError(f"{run.path} has no summary.json: seed {run.seed} has not finished; "
                              f"continue with 'gnn1000 train --resume {run_dir}'.")
        metric = summary["metric"]
        rows.append({"seed": run.seed, "run_dir": run.path.name, **_metrics(summary)})
    keys = ("test_at_best_valid", "best_valid", "final_test", "final_valid", "seconds")
    result = {
        "metric": metric, "seeds": manifest["seeds"], "command": manifest["command"], "std": STD,
        "runs": rows,
        "mean": {k: statistics.fmean(r[k] for r in rows) for k in keys},
        "std_of": {k: statistics.stdev(r[k] for r in rows) if len(rows) > 1 else None for k in keys},
    }
    (run_dir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def headline(summary: dict) -> str:
    """'final test acc: 0.8123 ± 0.0041 over 3 seeds' (test at the best validation epoch)."""
    mean, std = summary["mean"]["test_at_best_valid"], summary["std_of"]["test_at_best_valid"]
    spread = f"{std:.4f}" if std is not None else "n/a"
    n = len(summary["runs"])
    return f"final test {summary['metric']}: {mean:.4f} ± {spread} over {n} seed{'s' if n > 1 else ''}"


def command_line(config: str | None, seeds: str, bindings: list[str], run_dir: Path) -> str:
    parts = ["gnn1000", "train"] + ([config] if config else []) + ["--seeds", str(seeds)]
    for binding in bindings:
        parts += ["--bind", binding]
    return shlex.join(parts + ["--run-dir", str(run_dir)])


def cmd_train_seeds(args) -> int:
    """``gnn1000 train ... --seeds`` and ``--resume`` of a multi-seed run (the CLI's hook)."""
    from gnn1000 import config as gin_config
    from gnn1000 import resume
    from gnn1000.rundir import RunDir

    if args.resume:
        if args.config is not None or args.run_dir is not None or args.seeds is not None or args.overwrite:
            raise ConfigError("--resume RUN_DIR continues a multi-seed run with its own config and seeds; "
                              "give no CONFIG, --run-dir, --seeds or --overwrite with it (bindings are allowed).")
        run_dir = Path(args.resume)
        manifest = json.loads((run_dir / MANIFEST).read_text())
        seeds, command = manifest["seeds"], manifest["command"]
        resume.check_bindings((run_dir / "config.gin").read_text(errors="replace"), args.bind,
                              str(run_dir / "config.gin"))
        gin_config.load(run_dir / "config.gin", args.bind)
    else:
        seeds = parse_seeds(args.seeds)
        loaded = gin_config.load(args.config or gin_config.DEFAULT_CONFIG, args.bind)
        run = RunDir.for_new_run(args.run_dir, args.overwrite) if args.run_dir else RunDir.new(loaded.name)
        run_dir = run.path
        command = command_line(args.config, args.seeds, args.bind, run_dir)
    print(f"run directory: {run_dir} (seeds {', '.join(map(str, seeds))})", flush=True)
    summary = train_seeds(run_dir, seeds, command, progress=not args.no_progress)
    print(f"{headline(summary)} (test at the best validation epoch; results in {run_dir})", flush=True)
    return 0
