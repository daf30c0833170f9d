"""One Tune trial: the ``gnn1000 train`` experiment loop, reporting every epoch with a checkpoint.

A Ray worker has none of the driver's gin state, and a reused worker still holds the previous trial's,
so every trial clears gin and parses the whole config it was given as text. The checkpoint Tune
keeps is the run directory itself (config, metrics, last and best weights): a retried or restored
trial copies it back and continues with ``Experiment.fit(resume=True)``, as ``gnn1000 train --resume``.
Under PBT the checkpoint may be another trial's and the sampled values new (perturbed): the run then
continues with them, and its ``resumes.jsonl`` and ``config.gin`` say what changed after which epoch.
With ``search.workers_per_trial > 1`` the trial launches a data-parallel run (Ray Train) and reports
what its rank 0 records.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import ray
import torch
from ray import tune

from gnn1000 import config as gin_config
from gnn1000 import resume as resume_rules
from gnn1000.callbacks import REPORT, Callback
from gnn1000.errors import Gnn1000Error, paragraph
from gnn1000.tune.run_checkpoint import reported, restore_run_dir
from gnn1000.tune.space import bindings_for, perturbable


def trial_device() -> str:
    """'cuda' (the GPU Ray gave this trial, the only one it sees) or 'cpu' without one or without CUDA."""
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def renamed(exc: Gnn1000Error, message: str) -> Gnn1000Error:
    """``exc``'s own gnn1000 class with ``message``: gin re-raises a configurable's error as a proxy
    subclass (same name) whose constructor takes no message, so the first class that takes one."""
    for cls in type(exc).__mro__:
        if issubclass(cls, Gnn1000Error):
            with contextlib.suppress(TypeError):
                return cls(message)
    return Gnn1000Error(message)


def train_trial(params: dict, *, base_config: str, workdir: str,
                callback: Callable[[object, dict], None] | None = None,
                data_parallel: dict | None = None, checkpoint_every: int = 1, epochs: int = 0) -> None:
    """Train one sampled config. ``params``: binding -> value; ``base_config``: the search's gin text
    without its ``search.*`` bindings.

    ``workdir`` is the driver's working directory: relative paths in the config (dataset roots) mean
    there what they mean for ``gnn1000 train``. ``callback(experiment, record)`` runs after every epoch,
    before it is reported (``experiment`` is None in a data-parallel trial: it lives in the workers).
    ``data_parallel``: ``workers``, ``gpus_per_worker``, ``cpus_per_worker`` for a multi-worker trial.
    ``checkpoint_every``: report the run directory as a checkpoint every this many epochs and at the
    last (``epochs``), e.g. only where PBT may clone it.
    """
    context = tune.get_context()
    # Not inside the trial directory: Tune uploads that while we write. Checkpoints carry the run.
    run_dir = Path(tempfile.gettempdir()) / "gnn1000-tune" / context.get_experiment_name() / context.get_trial_id()
    if os.path.isdir(workdir):  # on another node without the same path, stay in the trial directory
        os.chdir(workdir)
    bindings = bindings_for(params)
    if data_parallel is None:  # the workers pick their own devices
        bindings.append(f"experiment.device = {trial_device()!r}")
    config_text = "\n".join([base_config, *bindings])
    reports = []  # (epoch, whether it carried a checkpoint) of each report

    def report(experiment, record: dict, path: Path, last: bool = False) -> None:
        if callback is not None and not last:
            callback(experiment, record)
        keep = last or record["epoch"] % checkpoint_every == 0 or record["epoch"] >= epochs
        tune.report(reported(record), checkpoint=tune.Checkpoint.from_directory(path) if keep else None)
        reports.append((record["epoch"], keep))

    try:
        resume = _restore_run_dir(run_dir, bindings, searched=list(params))
        if data_parallel is None:
            final = _fit_here(run_dir, config_text, resume, report)
        else:
            from gnn1000.tune.data_parallel import fit_data_parallel

            # Ray Train's own checkpoints are scratch: every epoch's is mirrored into run_dir and reported
            train_storage = run_dir.parent / "ray-train"
            train_name = f"{context.get_trial_id()}-{uuid.uuid4().hex[:8]}"  # a retry starts a new Ray Train run

            def on_epoch(record: dict, path: Path) -> None:
                if record["epoch"] < epochs:
                    report(None, record, path)
                elif callback is not None:  # reported once the workers are done (below)
                    callback(None, record)

            try:
                # Tune stops a trial at its last epoch's report, and a stop inside this call would
                # leave the Ray Train run (and the CPUs and GPUs it holds) behind: report that after.
                final = fit_data_parallel(config_text, run_dir, **data_parallel, resume=resume,
                                          storage=str(train_storage), name=train_name, log=print,
                                          on_epoch=on_epoch)
            finally:
                shutil.rmtree(train_storage / train_name, ignore_errors=True)
                with contextlib.suppress(OSError):
                    train_storage.rmdir()
        if final and reports[-1:] != [(final["epoch"], True)]:
            # The last epoch is reported with a checkpoint: here when it was held back (above) or
            # the run stopped early between checkpoints; and a trial that PBT moved onto a finished
            # run trains nothing, but Tune still needs its result.
            report(None, final, run_dir, last=True)
    except Gnn1000Error as exc:
        # run_dir is deleted below: name where Tune keeps the run directory instead
        kept = f"{context.get_trial_dir()}/checkpoint_<latest>"
        raise renamed(exc, paragraph(exc).replace(str(run_dir), kept)) from exc
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the search's folder goes with its last trial
            run_dir.parent.rmdir()


def _fit_here(run_dir: Path, config_text: str, resume: bool, report) -> dict | None:
    """The experiment loop in this process, as ``gnn1000 train`` runs it."""
    from gnn1000.build import build_experiment

    gin_config.load(None, [config_text])
    experiment = build_experiment(run_dir, progress=False, log=print, callbacks=[TuneReport(report, run_dir)])
    return experiment.fit(resume=resume)["final"]  # fit releases run_dir: a reused worker runs the next trial here


class TuneReport(Callback):
    """Reports every epoch to Ray Tune, once the run directory (the checkpoint Tune keeps) holds it."""

    order = REPORT

    def __init__(self, report, run_dir: Path):
        self.report = report
        self.run_dir = run_dir

    def on_epoch_end(self, trainer, record):
        self.report(trainer, record, self.run_dir)


def _restore_run_dir(run_dir: Path, bindings: list[str], searched: list[str]) -> bool:
    """Put the last reported checkpoint in place of whatever a crashed attempt left; True if there was one.

    The checkpoint may be another trial's, with this trial's sampled ``bindings`` perturbed (PBT's
    exploit): only what PBT may perturb (and what any resume may change) may differ from its
    config.gin. The experiment records the differences, after which epoch, when it resumes.
    """
    checkpoint = tune.get_checkpoint()
    if not restore_run_dir(run_dir, checkpoint):
        return False
    source = f"the checkpoint {checkpoint.path}"
    changes = resume_rules.check_bindings((run_dir / "config.gin").read_text(), bindings, source,
                                          also=tuple(key for key in searched if perturbable(key)))
    if changes:
        print(f"continuing from {source} with new values: "
              + ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items()))
    return True
