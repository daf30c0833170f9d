"""``gnn1000 tune``: read a search file, run its trials on a Ray cluster, report the best config.

The driver resolves everything path-like (the search file, its includes, the storage folder) and
hands each trial the flattened gin text, so trials need neither the files nor the driver's gin state.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import gin
import pandas as pd
import pyarrow.fs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from gnn1000 import config as gin_config
from gnn1000.errors import ConfigError
from gnn1000.tune.cluster import check_address, ray_session  # noqa: F401  check_address: a public name here
from gnn1000.tune.space import SearchConfig, bindings_for, check_group_divisibility
from gnn1000.tune.trial import train_trial

DEFAULT_STORAGE = Path("runs") / "tune"
BEST_CONFIG = "best.gin"
RESULTS = "results.csv"
CONFIG = "config.gin"  # a trial's operative config, inside its checkpoints


@dataclass
class Search:
    """A parsed search file: the base config as gin text, the search settings, the task's objective."""

    name: str
    base_config: str
    settings: SearchConfig
    epochs: int
    device: str
    metric: str
    mode: str


def load_search(path: str | Path, bindings: list[str] | tuple[str, ...] = ()) -> Search:
    """Parse a search file (path or shipped name like 'tune/resgnn') and check it before any trial runs."""
    loaded = gin_config.load(path, bindings, search=True)
    settings = SearchConfig()
    base_config = gin.config_str()
    check_group_divisibility(settings.space, _bound)
    experiment = gin_config.settings()
    # Parse one sample, so a typo in a searched binding fails here, not in every trial.
    sample = {key: domain.sample() if hasattr(domain, "sample") else domain["grid_search"][0]
              for key, domain in settings.param_space().items()}
    gin_config.load(None, [base_config, *bindings_for(sample)], search=True)
    task = gin_config.reference("datasets", experiment.dataset)().task
    # The file's own name: search folders are <name>-<timestamp>, one level under --storage.
    return Search(name=Path(loaded.name).name, base_config=base_config, settings=settings,
                  epochs=experiment.epochs, device=experiment.device, metric=f"valid_{task.metric}",
                  mode="max" if task.higher_is_better else "min")


def _bound(selector: str):
    try:
        return gin.query_parameter(selector)
    except ValueError:
        return None


def trial_resources(settings: SearchConfig, cluster: dict) -> tuple[dict, int]:
    """One GPU per trial when the cluster has GPUs, else CPUs; and how many trials run at once."""
    gpus, cpus = int(cluster.get("GPU", 0)), int(cluster.get("CPU", 0))
    if gpus:
        resources, fits = {"cpu": settings.cpus_per_trial, "gpu": 1}, gpus
    else:
        resources, fits = {"cpu": settings.cpus_per_trial}, max(1, cpus // settings.cpus_per_trial)
    concurrent = min(fits, settings.max_concurrent) if settings.max_concurrent else fits
    return resources, concurrent


def storage_root(storage: str | Path | None) -> str:
    """Tune wants an absolute path (or a URI such as s3://bucket/dir, for clusters without NFS)."""
    storage = str(storage or DEFAULT_STORAGE)
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def _searches(root: str, name: str) -> list[str]:
    """The search folders ``<name>-<timestamp>`` under ``root`` (a local path or a URI), oldest first."""
    filesystem, base = pyarrow.fs.FileSystem.from_uri(root)
    found = filesystem.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True))
    names = sorted(info.base_name for info in found
                   if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(f"{name}-"))
    return [f"{root.rstrip('/')}/{folder}" for folder in names]


def latest_search_dir(root: str, name: str) -> str:
    found = [path for path in _searches(root, name) if tune.Tuner.can_restore(path)]
    if not found:
        raise ConfigError(f"--resume: no search {name!r} to resume under {root} (looked for {name}-<timestamp>/). "
                          "Give the same --storage as the interrupted search.")
    return found[-1]


def new_search_name(root: str, name: str) -> str:
    stem = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    taken = {path.rsplit("/", 1)[-1] for path in _searches(root, name)}
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def run_search(search_file: str | Path, *, bindings: list[str] | tuple[str, ...] = (),
               num_samples: int | None = None, address: str | None = None, storage: str | Path | None = None,
               resume: bool = False, callback: Callable[[object, dict], None] | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Run (or ``resume``) a search; print the results table, write results.csv and best.gin.

    ``callback(experiment, record)`` runs inside every trial after every epoch (it must be picklable).
    Returns the results table, the paths of results.csv and best.gin, and Tune's ResultGrid.
    """
    search = load_search(search_file, bindings)
    if num_samples is not None:
        if num_samples < 1:
            raise ConfigError(f"--num-samples={num_samples} must be a positive integer.")
        search.settings.num_samples = num_samples
    root = storage_root(storage)
    restore = latest_search_dir(root, search.name) if resume else None  # fail before Ray starts
    with ray_session(address):
        return _fit(search, root, restore, callback, log)


def _fit(search: Search, root: str, restore: str | None, callback, log) -> dict:
    resources, concurrent = trial_resources(search.settings, ray.cluster_resources())
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base_config=search.base_config, workdir=os.getcwd(), callback=callback),
        resources)
    if restore:
        log(f"resuming {restore}")
        tuner = tune.Tuner.restore(restore, trainable, resume_errored=True)
    else:
        name = new_search_name(root, search.name)
        log(f"search {name}: {search.settings.num_samples} samples, up to {concurrent} at once, "
            f"each with {resources}; optimizing {search.metric} ({search.mode}); results in {root}/{name}")
        tuner = tune.Tuner(trainable, param_space=search.settings.param_space(),
                           tune_config=tune_config(search, concurrent), run_config=run_config(search, root, name))
    grid = tuner.fit()
    return report(grid, search, log)


def tune_config(search: Search, concurrent: int) -> tune.TuneConfig:
    s = search.settings
    scheduler = ASHAScheduler(time_attr="epoch", max_t=search.epochs, grace_period=min(s.grace_period, search.epochs),
                              reduction_factor=s.reduction_factor)
    return tune.TuneConfig(metric=search.metric, mode=search.mode, num_samples=s.num_samples, scheduler=scheduler,
                           search_alg=BasicVariantGenerator(random_state=s.seed, max_concurrent=concurrent),
                           reuse_actors=True)  # safe: every trial clears gin and seeds itself


def run_config(search: Search, root: str, name: str) -> tune.RunConfig:
    return tune.RunConfig(
        name=name, storage_path=root,
        failure_config=tune.FailureConfig(max_failures=search.settings.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
    )


def results_table(grid, search: Search) -> pd.DataFrame:
    """One row per trial, best first: sampled values, epochs run, best validation and test at it."""
    metric, test = search.metric, "test" + search.metric.removeprefix("valid")
    rows = []
    for result in grid:
        history = result.metrics_dataframe
        row = {"trial": (result.metrics or {}).get("trial_id", Path(result.path).name), **result.config}
        if history is None or history.empty or metric not in history:
            rows.append({**row, "epochs": 0, metric: math.nan, test: math.nan,
                         "status": "error" if result.error else "no result"})
            continue
        best = history.loc[history[metric].idxmax() if search.mode == "max" else history[metric].idxmin()]
        epochs = int(history["epoch"].max())
        status = "error" if result.error else ("done" if epochs >= search.epochs else "stopped early")
        rows.append({**row, "epochs": epochs, metric: best[metric], test: best[test], "best epoch": int(best["epoch"]),
                     "status": status, "checkpoint": result.checkpoint})
    table = pd.DataFrame(rows).sort_values(metric, ascending=search.mode == "min", na_position="last")
    return table.reset_index(drop=True)


def best_config(checkpoint, search: Search, header: str) -> str:
    """The best trial's operative config, standalone, with the search's own device setting back."""
    with checkpoint.as_directory() as saved:
        text = (Path(saved) / CONFIG).read_text()
    # Trials bind the device Ray gave them; best.gin should run wherever `gnn1000 train` runs it.
    text = re.sub(r"^experiment\.device = .*$", f"experiment.device = {search.device!r}", text, flags=re.MULTILINE)
    return header + text


def report(grid, search: Search, log: Callable[[str], None]) -> dict:
    table = results_table(grid, search)
    out = Path(grid.experiment_path) if "://" not in grid.experiment_path else DEFAULT_STORAGE / Path(
        grid.experiment_path).name
    out.mkdir(parents=True, exist_ok=True)
    shown = table.drop(columns=["checkpoint"], errors="ignore")
    shown.to_csv(out / RESULTS, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        log(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    outcome = {"results": out / RESULTS, "table": shown, "grid": grid, "best": None}
    finished = table[table[search.metric].notna() & (table["status"] != "error")]
    if finished.empty:
        log("no trial finished without an error; see the errors above (continue with --resume)")
        return outcome
    top = finished.iloc[0]
    header = (f"# Best trial {top['trial']} of search {search.name}: {search.metric} {top[search.metric]:.4f} "
              f"at epoch {top['best epoch']}.\n# Re-run it with: gnn1000 train {out / BEST_CONFIG}\n\n")
    (out / BEST_CONFIG).write_text(best_config(top["checkpoint"], search, header))
    outcome["best"] = out / BEST_CONFIG
    log(f"best trial {top['trial']}: {search.metric} {top[search.metric]:.4f}; config: {out / BEST_CONFIG}; "
        f"table: {out / RESULTS}")
    return outcome
