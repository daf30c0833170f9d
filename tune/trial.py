"""One Tune trial: the ``gnn1000 train`` experiment loop, reporting every epoch with a checkpoint.

A Ray worker has none of the driver's gin state, and a reused worker still holds the previous trial's,
so every trial clears gin and parses the whole config it was given as text. The checkpoint Tune
keeps is the run directory itself (config, metrics, last and best weights): a retried or restored
trial copies it back and continues with ``Experiment.fit(resume=True)``, as ``gnn1000 train --resume``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import ray
import torch
from ray import tune

from gnn1000 import config as gin_config
from gnn1000.errors import Gnn1000Error
from gnn1000.tune.run_checkpoint import reported, restore_run_dir
from gnn1000.tune.space import bindings_for  # the module also registers `search`, which trial configs bind


def trial_device() -> str:
    """'cuda' (the GPU Ray gave this trial, the only one it sees) or 'cpu' without one or without CUDA."""
    return "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


def train_trial(params: dict, *, base_config: str, workdir: str,
              callback: Callable[[object, dict], None] | None = None) -> None:
    """Train one sampled config. ``params``: binding -> value; ``base_config``: the search's gin text.

    ``workdir`` is the driver's working directory: relative paths in the config (dataset roots) mean
    there what they mean for ``gnn1000 train``. ``callback(experiment, record)`` runs after every epoch,
    before it is reported.
    """
    from gnn1000.build import build_experiment

    context = tune.get_context()
    # Not inside the trial directory: Tune uploads that while we write. Checkpoints carry the run.
    run_dir = Path(tempfile.gettempdir()) / "gnn1000-tune" / context.get_experiment_name() / context.get_trial_id()
    if os.path.isdir(workdir):  # on another node without the same path, stay in the trial directory
        os.chdir(workdir)
    gin_config.load(None, [base_config, *bindings_for(params), f"experiment.device = {trial_device()!r}"],
                    search=True)

    resume = restore_run_dir(run_dir, tune.get_checkpoint())
    experiment = build_experiment(run_dir, progress=False, log=print)

    def on_epoch(record: dict, _last: Path) -> None:
        if callback is not None:
            callback(experiment, record)
        tune.report(reported(record), checkpoint=tune.Checkpoint.from_directory(experiment.run.path))

    experiment.on_epoch = on_epoch
    try:
        experiment.fit(resume=resume)
    except Gnn1000Error as exc:
        # run_dir is deleted below: name where Tune keeps the run directory instead
        kept = f"{context.get_trial_dir()}/checkpoint_<latest>"
        raise type(exc)(str(exc).replace(str(run_dir), kept)) from exc
    finally:
        experiment.run.release()  # a reused worker runs the next trial in this process
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the search's folder goes with its last trial
            run_dir.parent.rmdir()
