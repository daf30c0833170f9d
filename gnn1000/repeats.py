"""Repeated runs, reported as the field reports them: one complete run per seed or per fold, and the
mean ± std of their scores.

``gnn1000 train CONFIG --seeds 3`` (seeds 0, 1, 2) or ``--seeds 0,3,7`` binds ``experiment.seed``;
``--folds 10`` binds ``<dataset>.folds = 10`` and ``<dataset>.fold = k`` (datasets with a k-fold
split, e.g. ``tu``). Each repeat is an ordinary run in ``RUN_DIR/<label>/`` (``seed-3``, ``fold-7``);
``RUN_DIR/summary.json`` holds every repeat's final and best-validation metrics, their mean and their
sample standard deviation (ddof=1, as OGB's scripts report ``torch.std``), and the command.
``RUN_DIR/repeats.json`` records the repeats and the command before training starts, so
``gnn1000 train --resume RUN_DIR`` goes on repeat by repeat: finished ones are kept, the interrupted
one resumes from its checkpoint, the rest start.
"""

from __future__ import annotations

import inspect
import json
import logging
import shlex
import statistics
import warnings
from dataclasses import dataclass
from pathlib import Path

import gin

from gnn1000 import reproducibility, safefs
from gnn1000.errors import ConfigError

MANIFEST = "repeats.json"
logger = logging.getLogger(__name__)
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


def fold_bindings(dataset: str, folds: int, fold: int) -> list[str]:
    """The bindings that select fold ``fold`` of ``folds`` of ``dataset``, checked to exist."""
    from gnn1000 import registry

    params = inspect.signature(registry.resolve("datasets", dataset)).parameters
    if not {"folds", "fold"} <= set(params):
        raise ConfigError(f"--folds: dataset {dataset!r} has no k-fold split (no 'folds' and 'fold' options); "
                          f"cross-validation is for graph-classification sets such as 'tu'.")
    name = registry.gin_name(dataset)
    return [f"{name}.folds = {folds}", f"{name}.fold = {fold}"]


@dataclass
class Repeat:
    """One repeat: its folder name, the bindings that make it, and how far it got."""

    label: str
    bindings: list[str]
    path: Path

    @property
    def summary(self) -> dict | None:
        file = self.path / "summary.json"
        return json.loads(file.read_text()) if file.is_file() else None

    def finished(self, epochs: int) -> bool:
        summary = self.summary
        return summary is not None and (summary.get("epochs", 0) >= epochs or bool(summary.get("stopped_early")))

    @property
    def started(self) -> bool:
        from gnn1000 import checkpoint

        last = self.path / "checkpoints" / "last.pt"
        return last.is_file() or checkpoint.previous(last).is_file()


def is_repeated_run(path: Path | str) -> bool:
    return (Path(path) / MANIFEST).is_file()


def refuse_parent(path: Path | str, command: str) -> None:
    """``evaluate``/``predict``/``plot`` score one model: a --seeds/--folds parent is pointed at its runs."""
    if not is_repeated_run(path):
        return
    runs = sorted(p.name for p in Path(path).iterdir() if p.is_dir() and (p / "config.gin").is_file())
    shown = ", ".join(str(Path(path) / name) for name in runs[:3]) + (", ..." if len(runs) > 3 else "")
    raise ConfigError(f"{path} holds repeated runs (--seeds/--folds), one model each: give {command} one of "
                      f"them ({shown or 'none has started yet'}); their mean and std are in {Path(path) / 'summary.json'}.")


def _repeats(run_dir: Path, manifest: dict) -> list[Repeat]:
    return [Repeat(label, bindings, run_dir / label) for label, bindings in manifest["repeats"]]


def train_repeats(run_dir: Path | str, manifest: dict, *, progress: bool = True, log=None) -> dict:
    """Train every repeat not finished yet under the gin config already loaded; return the summary."""
    from gnn1000 import config as gin_config
    from gnn1000.build import build_experiment
    from gnn1000.rundir import RunDir, RunSession

    log = log or logger.info
    run_dir = Path(run_dir)
    with RunSession(RunDir(run_dir), new=False):  # one repeated run at a time in this folder, as for a single run
        base = gin.config_str()  # every repeat's shared bindings as they are now (a resume may change some)
        safefs.write_atomic(run_dir / "config.gin", base.encode())  # never through a planted link
        if not (run_dir / MANIFEST).is_file():
            safefs.write_atomic(run_dir / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        for repeat in _repeats(run_dir, manifest):
            gin.clear_config()
            gin.parse_config([base, *repeat.bindings])
            if repeat.finished(gin_config.settings().epochs):
                log(f"{repeat.label}: finished in {repeat.path}, kept")
                continue
            if not repeat.started:  # killed before its first checkpoint: its partial files move aside
                RunDir.for_new_run(repeat.path, overwrite=True)
            experiment = build_experiment(repeat.path, progress=progress)
            log(f"{repeat.label}: {'resuming' if repeat.started else 'training'} {experiment.cfg.architecture} "
                f"on {experiment.data.name} in {repeat.path}")
            experiment.fit(resume=repeat.started)  # holds and releases the repeat's folder (RunSession)
    return write_summary(run_dir)


def _metrics(summary: dict) -> dict:
    metric, final, best = summary["metric"], summary["final"], summary["best"]
    return {
        "final_test": final[f"test_{metric}"], "final_valid": final[f"valid_{metric}"],
        "best_valid": best[f"valid_{metric}"], "test_at_best_valid": summary["test_at_best_valid"],
        "best_epoch": best["epoch"], "seconds": summary["train_seconds"],
        "step_memory_mb": summary["step_memory_mb"],
    }


def write_summary(run_dir: Path | str) -> dict:
    """RUN_DIR/summary.json from the repeats' summaries on disk: per-repeat values, mean and std."""
    from gnn1000 import config as gin_config

    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / MANIFEST).read_text())
    rows, first = [], None
    for repeat in _repeats(run_dir, manifest):
        summary = repeat.summary
        if summary is None:
            raise ConfigError(f"{repeat.path} has no summary.json: {repeat.label} has not finished; "
                              f"continue with 'gnn1000 train --resume {run_dir}'.")
        first = first or summary
        rows.append({"label": repeat.label, **_metrics(summary),
                     "epochs_set": (summary.get("config") or {}).get("epochs", summary.get("epochs"))})
    keys = ("test_at_best_valid", "best_valid", "final_test", "final_valid", "seconds")
    result = {
        "metric": first["metric"], "dataset": first.get("dataset_name", first.get("dataset")),
        "kind": manifest["kind"], "repeats": len(rows), "command": manifest["command"], "std": STD,
        "num_parameters": first.get("num_parameters"),  # one config: every repeat has the same count
        "runs": rows,
        "mean": {k: statistics.fmean(r[k] for r in rows) for k in keys},
        "std_of": {k: statistics.stdev(r[k] for r in rows) if len(rows) > 1 else None for k in keys},
        "environment": reproducibility.environment(gin_config.source() or run_dir / "config.gin"),
    }
    lengths = {r["label"]: r["epochs_set"] for r in rows}
    if len(set(lengths.values())) > 1:  # e.g. one seed resumed for more epochs on its own
        result["trained_alike"] = False
        result["note"] = (f"the repeats were trained for different numbers of epochs "
                          f"({', '.join(f'{k}: {v}' for k, v in lengths.items())}); the mean and std mix them. "
                          f"Resume the shorter ones with --bind 'experiment.epochs = {max(lengths.values())}' "
                          f"to compare like with like.")
        warnings.warn(f"{run_dir}: {result['note']}", stacklevel=2)
    safefs.write_atomic(run_dir / "summary.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def headline(summary: dict) -> str:
    """'final test acc: 0.8123 ± 0.0041 over 3 seeds' (test at the best validation epoch)."""
    mean, std = summary["mean"]["test_at_best_valid"], summary["std_of"]["test_at_best_valid"]
    spread = f"{std:.4f}" if std is not None else "n/a"
    n, kind = summary["repeats"], summary["kind"]
    return f"final test {summary['metric']}: {mean:.4f} ± {spread} over {n} {kind if n > 1 else kind[:-1]}"


def leaderboard(summary: dict) -> str:
    """What OGB's leaderboard submission form asks for, from a repeated run's summary."""
    env = summary.get("environment") or {}
    m, mean, std = summary["metric"], summary["mean"], summary["std_of"]

    def score(key: str) -> str:
        return f"{mean[key]:.4f} ± {std[key]:.4f}" if std[key] is not None else f"{mean[key]:.4f}"

    packages = ", ".join(f"{name} {version}" for name, version in (env.get("packages") or {}).items() if version)
    params = summary.get("num_parameters")
    fields = [(f"test {m}", score("test_at_best_valid")), (f"validation {m}", score("best_valid")),
              ("#params", f"{params:,}" if params is not None else "unknown"),
              ("hardware", reproducibility.hardware(env)),
              ("packages", f"{packages}, python {env.get('python')}"), ("command", summary["command"])]
    return "\n".join([f"for OGB's leaderboard form ({summary['repeats']} {summary['kind']}, test at the best "
                      f"validation epoch):", *(f"  {label + ':':<22}{value}" for label, value in fields)])


def cmd_train_repeats(args) -> int:
    """``gnn1000 train ... --seeds|--folds`` and ``--resume`` of such a run (the CLI's hook)."""
    from gnn1000 import config as gin_config
    from gnn1000 import resume
    from gnn1000.rundir import RunDir

    if args.resume:
        if args.config is not None or args.run_dir is not None or args.overwrite or args.seeds or args.folds:
            raise ConfigError("--resume RUN_DIR continues a multi-seed or k-fold run with its own config and "
                              "repeats; give no CONFIG, --run-dir, --seeds, --folds or --overwrite with it "
                              "(bindings are allowed).")
        run_dir = Path(args.resume)
        manifest = json.loads((run_dir / MANIFEST).read_text())
        resume.check_bindings((run_dir / "config.gin").read_text(errors="replace"), args.bind,
                              str(run_dir / "config.gin"))
        gin_config.load(run_dir / "config.gin", args.bind)
    else:
        if args.seeds is not None and args.folds is not None:
            raise ConfigError("--seeds and --folds each repeat a run; give one of them.")
        loaded = gin_config.load(args.config or gin_config.DEFAULT_CONFIG, args.bind)
        if args.seeds is not None:
            kind = "seeds"
            repeats = [(f"seed-{s}", [f"experiment.seed = {s}"]) for s in parse_seeds(args.seeds)]
        else:
            if args.folds < 3:
                raise ConfigError(f"--folds {args.folds}: give at least 3 folds (one tests, the next "
                                  f"validates, the rest train).")
            kind = "folds"
            dataset = gin_config.settings().dataset
            repeats = [(f"fold-{k}", fold_bindings(dataset, args.folds, k)) for k in range(args.folds)]
        name = gin_config.run_name(loaded.name) + (f"-{args.folds}fold" if kind == "folds" else "")
        run = RunDir.for_new_run(args.run_dir, args.overwrite) if args.run_dir else RunDir.new(name)
        run_dir = run.path
        manifest = {"kind": kind, "repeats": repeats, "command": shlex.join(["gnn1000", *args.argv])}
    labels = [label for label, _ in manifest["repeats"]]
    logger.info(f"run directory: {run_dir} ({manifest['kind']}: {', '.join(labels)})")
    summary = train_repeats(run_dir, manifest, progress=not args.no_progress)
    if summary["kind"] == "seeds":
        print(leaderboard(summary), flush=True)
    print(f"{headline(summary)} (test at the best validation epoch; results in {run_dir})", flush=True)
    return 0
