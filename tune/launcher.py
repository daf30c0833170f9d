"""``gnn1000 tune``: read a search file, run its trials on a Ray cluster, report the best config.

The driver resolves everything path-like (the search file, its includes, the storage folder) and
hands each trial the flattened gin text, so trials need neither the files nor the driver's gin state.
"""

from __future__ import annotations

import math
import os
import random
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import gin
import pandas as pd
import pyarrow.fs
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator

from gnn1000 import config as gin_config
from gnn1000 import registry
from gnn1000 import safefs
from gnn1000.errors import ConfigError, Gnn1000Error, paragraph
from gnn1000.extras import require
from gnn1000.task import METRICS
from gnn1000.task import mode as task_mode
from gnn1000.tune.cluster import check_address, ray_cause, ray_session  # noqa: F401  check_address: a public name here
from gnn1000.tune.space import (KeepInRange, SearchConfig, bindings_for, check_group_divisibility,
                                 check_sampled_values, without_search)
from gnn1000.tune.trial import train_trial

DEFAULT_STORAGE = Path("runs") / "tune"
BEST_CONFIG = "best.gin"
RESULTS = "results.csv"
CONFIG = "config.gin"  # a trial's operative config, inside its checkpoints
# A data-parallel trial's own process only waits on its workers, which hold the CPUs and GPUs; Ray
# refuses a placement group with nothing in it, so it holds this much memory instead (bytes).
DATA_PARALLEL_DRIVER = {"cpu": 0, "memory": 256 * 2**20}


@dataclass
class Search:
    """A parsed search file: the experiment config as gin text (no ``search.*``), the search settings,
    the task's objective."""

    name: str
    base_config: str
    settings: SearchConfig
    epochs: int
    device: str
    metric: str
    mode: str
    source: str = ""  # the search file as given on the command line, and its --bind arguments
    bindings: tuple[str, ...] = field(default_factory=tuple)
    resume_command: str = ""  # what continues this search after an interruption


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a search before every trial ended: a KeyboardInterrupt, so the CLI exits
    130 as shells do for SIGINT; its message says what was kept and how to continue."""


def load_search(path: str | Path, bindings: list[str] | tuple[str, ...] = ()) -> Search:
    """Parse a search file (path or shipped name like 'tune/resgnn') and check it before any trial runs."""
    loaded = gin_config.load(path, bindings, search=True)
    settings = SearchConfig()
    if settings.algorithm == "optuna":
        require("optuna", "tune", "search.algorithm = 'optuna'")
    base_config = without_search(gin.config_str())
    check_group_divisibility(settings.space, _bound)
    experiment = gin_config.settings()
    metric = dataset_metric(experiment.dataset)
    mode = task_mode(metric)
    # Parse one sample, so a typo in a searched binding fails here, not in every trial; then values the
    # options refuse, at the edges of the space; then gin holds the search file again.
    sample = {key: domain.sample() if hasattr(domain, "sample") else domain["grid_search"][0]
              for key, domain in settings.param_space().items()}
    try:
        gin_config.load(None, [base_config, *bindings_for(sample)])
        if _builds_on_meta(base_config, {}, mode):  # else the stand-in sizes do not fit: trials will tell
            check_sampled_values(settings.space, lambda params: _build_on_meta(base_config, params, mode))
    finally:
        gin_config.load(path, bindings, search=True)
    # The file's own name: search folders are <name>-<timestamp>, one level under --storage.
    return Search(name=Path(loaded.name).name, base_config=base_config, settings=settings,
                  epochs=experiment.epochs, device=experiment.device, metric=f"valid_{metric}",
                  mode=mode, source=str(path), bindings=tuple(bindings))


def _build_on_meta(base_config: str, params: dict, mode: str) -> None:
    """Build what a trial builds first (the loop's settings, the model, its optimizer and scheduler)
    for ``params`` on the meta device, with stand-in data sizes: every option check runs, no data is
    loaded and no memory taken. Raises gnn1000's own error for a value an option refuses."""
    from gnn1000.build import build_model
    from gnn1000.experiment import make_optimizer, make_scheduler

    gin_config.load(None, [base_config, *bindings_for(params)])
    experiment = gin_config.settings()
    standin = SimpleNamespace(name=experiment.dataset, level="node", num_features=8, num_outputs=2, edge_dim=None,
                              encoders=None)
    with torch.device("meta"):
        model = build_model(experiment.architecture, standin)
    optimizer = make_optimizer(gin_config.reference("optimizers", experiment.optimizer), model, experiment)
    make_scheduler(gin_config.reference("schedulers", experiment.scheduler), optimizer, experiment,
                   SimpleNamespace(mode=mode))


def _builds_on_meta(base_config: str, params: dict, mode: str) -> bool:
    try:
        _build_on_meta(base_config, params, mode)
    except Exception:  # the search file's own values with stand-in sizes: nothing to compare against
        return False
    return True


def dataset_metric(dataset: str) -> str:
    """The metric the dataset plugin registered (``register(..., metric=...)``: a name, or a function
    of the dataset's bound arguments), with no graph loaded or generated. A plugin that registered
    none is built once and asked for its task."""
    entry = registry.entry("datasets", dataset)
    metric = entry.info.get("metric")
    if metric is None:
        return gin_config.reference("datasets", dataset)().task.metric
    if callable(metric):
        metric = metric(**gin.get_bindings(gin_config.reference("datasets", dataset)))
    if metric not in METRICS:
        raise ConfigError(f"Dataset {dataset!r} is scored by {metric!r}, which gnn1000 cannot optimize; "
                          f"supported metrics: {', '.join(METRICS)}.")
    return metric


def _bound(selector: str):
    try:
        return gin.query_parameter(selector)
    except ValueError:
        return None


def trial_resources(settings: SearchConfig, cluster: dict) -> tuple[dict, int]:
    """What one trial asks Ray for, and how many trials run at once.

    A trial holds ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (a fraction shares a GPU; by
    default 1 when the cluster has GPUs). With ``workers_per_trial`` N > 1 each of its N Ray Train
    workers holds that much and the trial's own process almost nothing. How many trials fit the
    cluster's CPUs and GPUs sets the concurrency (``max_concurrent`` may lower it).
    """
    gpus = gpus_per_trial(settings, cluster)
    per_worker = {"cpu": settings.cpus_per_trial, **({"gpu": gpus} if gpus else {})}
    workers = settings.workers_per_trial
    resources = per_worker if workers == 1 else dict(DATA_PARALLEL_DRIVER)
    held = {key: amount * workers for key, amount in per_worker.items()}
    # the small epsilon: 1 / 0.1 is 9.999999999999998 in floats
    fits = min(math.floor(cluster.get(key.upper(), 0) / amount + 1e-9) for key, amount in held.items())
    if fits < 1:
        have = ", ".join(f"{cluster.get(key.upper(), 0):g} {key.upper()}s" for key in held)
        need = ", ".join(f"{amount:g} {key.upper()}s" for key, amount in held.items())
        raise ConfigError(f"One trial needs {need} ({workers} worker(s) x search.cpus_per_trial="
                          f"{settings.cpus_per_trial}, search.gpus_per_trial={gpus:g}), but the Ray cluster has "
                          f"{have}. Lower search.cpus_per_trial, search.gpus_per_trial (a fraction such as 0.5 "
                          f"shares a GPU) or search.workers_per_trial, or add nodes.")
    concurrent = min(fits, settings.max_concurrent) if settings.max_concurrent else fits
    return resources, concurrent


def gpus_per_trial(settings: SearchConfig, cluster: dict) -> float:
    """``search.gpus_per_trial``, by default 1 when the cluster has GPUs and 0 when it has none."""
    if settings.gpus_per_trial is not None:
        return settings.gpus_per_trial
    return 1 if cluster.get("GPU", 0) else 0


def data_parallel_settings(settings: SearchConfig, cluster: dict) -> dict | None:
    """What a multi-worker trial passes to ``fit_data_parallel``; None for single-process trials."""
    if settings.workers_per_trial == 1:
        return None
    return {"workers": settings.workers_per_trial, "gpus_per_worker": gpus_per_trial(settings, cluster),
            "cpus_per_worker": settings.cpus_per_trial}


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
    refuse_unverifiable_storage(root)
    found = [path for path in _searches(root, name) if tune.Tuner.can_restore(path)]
    if not found:
        raise ConfigError(f"--resume: no search {name!r} to resume under {root} (looked for {name}-<timestamp>/). "
                          "Give the same --storage as the interrupted search.")
    # Ray unpickles the search's state: only from a folder nobody but the user may have written
    local = pyarrow.fs.FileSystem.from_uri(found[-1])[1] if "://" in found[-1] else found[-1]
    safefs.check_private_tree(local, "a search", "--resume")
    return found[-1]


def refuse_unverifiable_storage(root: str) -> None:
    """Restoring a search unpickles its files, so gnn1000 restores only a folder it can check is the
    user's own (owner and mode bits, as ssh checks its keys): local paths and file:// URIs. Object
    stores (s3://, gs://, ...) have neither, so resuming from them is refused."""
    scheme = root.split("://", 1)[0] if "://" in root else "file"
    if scheme == "file":
        return
    raise ConfigError(
        f"--resume refuses {root}: restoring a search unpickles its files (Ray's experiment state), which runs "
        f"whatever code the one who wrote them chose, and on {scheme}:// storage gnn1000 cannot check who that "
        f"was (there are no file owners or modes there, only the bucket's access policy). Copy the search "
        f"folder to a local or shared (NFS) path that you own and nobody else may write, then run the same "
        f"command with --storage set to the folder that holds the copy.")


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
    # how to continue it: the same search file, storage and bindings (the trials' base config)
    search.resume_command = shlex.join(["gnn1000", "tune", search.source, "--resume",
                                        *(["--storage", str(storage)] if storage else []),
                                        *(arg for b in search.bindings for arg in ("--bind", b))])
    with ray_session(address):
        return _fit(search, root, restore, callback, log)


def _fit(search: Search, root: str, restore: str | None, callback, log) -> dict:
    cluster = ray.cluster_resources()
    pbt = search.settings.scheduler == "pbt"
    resources, concurrent = trial_resources(search.settings, cluster)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base_config=search.base_config, workdir=os.getcwd(), callback=callback,
                             data_parallel=data_parallel_settings(search.settings, cluster), epochs=search.epochs,
                             # PBT clones checkpoints at its perturbations only, and keeps them all (below)
                             checkpoint_every=search.settings.perturbation_interval if pbt else 1),
        resources)
    if pbt:
        random.seed(search.settings.seed)  # PBT draws from Python's global random; nothing else seeds it
    if restore:
        log(f"resuming {restore}")
        tuner = tune.Tuner.restore(restore, trainable, resume_errored=True)
    else:
        name = new_search_name(root, search.name)
        s = search.settings
        workers = f" x {s.workers_per_trial} workers" if s.workers_per_trial > 1 else ""
        log(f"search {name}: {s.num_samples} samples ({s.algorithm}, {s.scheduler}), up to {concurrent} at once, "
            f"each with {resources}{workers}; optimizing {search.metric} ({search.mode}); results in {root}/{name}")
        tuner = tune.Tuner(trainable, param_space=search.settings.param_space(),
                           tune_config=tune_config(search, concurrent), run_config=run_config(search, root, name))
    grid = tuner.fit()
    return report(grid, search, log)


def tune_config(search: Search, concurrent: int) -> tune.TuneConfig:
    s = search.settings
    return tune.TuneConfig(metric=search.metric, mode=search.mode, num_samples=s.num_samples,
                           scheduler=scheduler(search), search_alg=search_algorithm(search, concurrent),
                           reuse_actors=True)  # safe: every trial clears gin and seeds itself


def scheduler(search: Search):
    """ASHA stops weak trials at rungs; PBT copies strong trials' checkpoints into weak ones and
    perturbs their values; FIFO runs every trial to the end."""
    s = search.settings
    if s.scheduler == "asha":
        return ASHAScheduler(time_attr="epoch", max_t=search.epochs, grace_period=min(s.grace_period, search.epochs),
                             reduction_factor=s.reduction_factor)
    if s.scheduler == "pbt":
        return PopulationBasedTraining(time_attr="epoch", perturbation_interval=s.perturbation_interval,
                                       hyperparam_mutations=s.mutations(), custom_explore_fn=KeepInRange(s.space))
    return FIFOScheduler()


def search_algorithm(search: Search, concurrent: int):
    """Random sampling (seeded), or Optuna's TPE (seeded) limited to ``concurrent`` open trials."""
    s = search.settings
    if s.algorithm == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(sampler=optuna.samplers.TPESampler(seed=s.seed)),
                                  max_concurrent=concurrent)
    return BasicVariantGenerator(random_state=s.seed, max_concurrent=concurrent)


def run_config(search: Search, root: str, name: str) -> tune.RunConfig:
    return tune.RunConfig(
        name=name, storage_path=root,
        failure_config=tune.FailureConfig(max_failures=search.settings.max_failures),
        # PBT may clone any trial's checkpoint from its last perturbation while that trial goes on
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None if search.settings.scheduler == "pbt" else 2),
    )


def results_table(grid, search: Search) -> pd.DataFrame:
    """One row per trial, best first: sampled values, epochs run, best validation and test at it."""
    metric, test = search.metric, "test" + search.metric.removeprefix("valid")
    rows = []
    for result in grid:
        history = trial_history(result, search)
        row = {"trial": (result.metrics or {}).get("trial_id", Path(result.path).name), **result.config}
        # Tune marks a trial's last result done when it ended or the scheduler stopped it; one that
        # Ctrl-C cut short (or that never started) has no such result
        ended = bool((result.metrics or {}).get("done"))
        if history is None or history.empty or metric not in history:
            rows.append({**row, "epochs": 0, metric: math.nan, test: math.nan,
                         "status": "error" if result.error else ("no result" if ended else "interrupted")})
            continue
        best = history.loc[history[metric].idxmax() if search.mode == "max" else history[metric].idxmin()]
        epochs = int(history["epoch"].max())
        status = "error" if result.error else ("interrupted" if not ended else
                                               "done" if epochs >= search.epochs else "stopped early")
        rows.append({**row, "epochs": epochs, metric: best[metric], test: best[test], "best epoch": int(best["epoch"]),
                     "status": status, "checkpoint": result.checkpoint})
    table = pd.DataFrame(rows).sort_values(metric, ascending=search.mode == "min", na_position="last")
    return table.reset_index(drop=True)


def trial_history(result, search: Search) -> pd.DataFrame | None:
    """The epochs Tune saw of a trial; under PBT, its checkpoint's records instead: those follow the
    run the trial ends with, including the epochs of the trial it was cloned from."""
    if search.settings.scheduler != "pbt" or result.checkpoint is None:
        return result.metrics_dataframe
    with result.checkpoint.as_directory() as saved:
        return pd.read_json(Path(saved) / "metrics.jsonl", lines=True)


def best_config(checkpoint, search: Search, header: str) -> str:
    """The best trial's operative config, standalone, with the search's own device setting back."""
    with checkpoint.as_directory() as saved:
        text = (Path(saved) / CONFIG).read_text()
    # Trials bind the device Ray gave them; best.gin should run wherever `gnn1000 train` runs it.
    text = re.sub(r"^experiment\.device = .*$", f"experiment.device = {search.device!r}", text, flags=re.MULTILINE)
    return header + text


def _writer(folder: str) -> tuple[Callable[[str, str], None], Callable[[str], str | Path]]:
    """(write(name, text), where(name)) for the search's own folder, local or a storage URI (s3://,
    gs://, file://): results.csv and best.gin go beside the trials, as Ray Tune's own files do."""
    if "://" not in folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return (lambda name, text: (Path(folder) / name).write_text(text)), (lambda name: Path(folder) / name)
    filesystem, base = pyarrow.fs.FileSystem.from_uri(folder)
    filesystem.create_dir(base, recursive=True)

    def write(name: str, text: str) -> None:
        with filesystem.open_output_stream(f"{base}/{name}") as stream:
            stream.write(text.encode())

    return write, (lambda name: f"{folder.rstrip('/')}/{name}")


def report(grid, search: Search, log: Callable[[str], None]) -> dict:
    table = results_table(grid, search)
    write, where = _writer(grid.experiment_path)
    shown = table.drop(columns=["checkpoint"], errors="ignore")
    write(RESULTS, shown.to_csv(index=False))
    with pd.option_context("display.width", 200, "display.max_columns", None):
        log(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    outcome = {"results": where(RESULTS), "table": shown, "grid": grid, "best": None}
    interrupted = table[table["status"] == "interrupted"]
    if not interrupted.empty:
        # No best.gin: the best of the trials so far would pass for the search's answer. results.csv
        # shows them; the resumed search writes best.gin when every trial has ended.
        message = (f"search {Path(str(grid.experiment_path)).name} was interrupted: {len(interrupted)} of "
                   f"{len(table)} trials did not end ({', '.join(map(str, interrupted['trial']))}). Their "
                   f"checkpoints and the search state are kept; results.csv holds the table so far and no "
                   f"best.gin was written. Continue the search with: {search.resume_command or 'gnn1000 tune SEARCH --resume'}")
        log(message)
        raise SearchInterrupted(message)
    finished = table[table[search.metric].notna() & (table["status"] != "error")]
    if finished.empty:
        errors = [result.error for result in grid if result.error is not None]
        if errors and all(isinstance(error, Gnn1000Error) for error in errors):  # Ray's class subclasses the cause's
            first = ray_cause(errors[0])  # Ray's own text is the whole traceback
            raise Gnn1000Error(f"every trial of search {search.name} failed on a value gnn1000 refuses "
                               f"(results.csv: {where(RESULTS)}); the first said: {paragraph(first)}")
        log("no trial finished without an error; see the errors above (continue with --resume)")
        return outcome
    top = finished.iloc[0]
    local = isinstance(where(BEST_CONFIG), Path)
    rerun = where(BEST_CONFIG) if local else f"{BEST_CONFIG} (a copy of {where(BEST_CONFIG)})"
    header = (f"# Best trial {top['trial']} of search {search.name}: {search.metric} {top[search.metric]:.4f} "
              f"at epoch {top['best epoch']}.\n# Re-run it with: gnn1000 train {rerun}\n")
    if search.settings.scheduler == "pbt":
        header += ("# PBT may have changed its values while it trained (any changes are listed below); "
                   "this file\n# trains with the last ones from the first epoch on.\n")
    header += "\n"
    write(BEST_CONFIG, best_config(top["checkpoint"], search, header))
    outcome["best"] = where(BEST_CONFIG)
    log(f"best trial {top['trial']}: {search.metric} {top[search.metric]:.4f}; config: {where(BEST_CONFIG)}; "
        f"table: {where(RESULTS)}")
    return outcome
