"""A run directory as a Ray checkpoint: what Tune trials and Ray Train workers report and restore.

The checkpoint Ray keeps is the run directory itself (config, metrics, last and best weights), so a
retried trial or a restarted worker group copies it back and continues with
``Experiment.fit(resume=True)``, exactly as ``gnn1000 train --resume`` does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from gnn1000 import safefs

LOCK = ".lock"  # the writer's flock file: never copied over a lock another process holds


def reported(record: dict) -> dict:
    """The epoch's metrics, flattened to what Tune's tables and schedulers take."""
    return {key: value for key, value in record.items() if isinstance(value, (int, float, str, bool))}


def restore_run_dir(run_dir: Path, checkpoint) -> bool:
    """Put ``checkpoint`` (a Ray checkpoint or None) in place of whatever a crashed attempt left in
    the scratch folder ``run_dir``; True if there was one to continue from."""
    if checkpoint is None:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        return False
    with checkpoint.as_directory() as saved:
        copy_run_dir(saved, run_dir)
    return True


def copy_run_dir(source: Path, run_dir: Path) -> None:
    """``run_dir`` replaced by a copy of the run directory ``source``, without its lock (a writer's own)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns(LOCK))


#: The order an epoch is committed in (gnn1000.callbacks.RunFiles): a kill mid-mirror leaves the run an
#: epoch whose last.pt is at least as new as best.pt and metrics.jsonl, as a kill mid-epoch does.
COMMIT_ORDER = ("checkpoints/last.prev.pt", "checkpoints/last.pt", "checkpoints/best.pt")


def _commit_order(path: Path, saved: Path) -> tuple[int, str]:
    relative = path.relative_to(saved).as_posix()
    return (COMMIT_ORDER.index(relative) if relative in COMMIT_ORDER else len(COMMIT_ORDER), relative)


def mirror(saved: Path, run_dir: Path) -> None:
    """Copy a reported run directory over ``run_dir`` file by file, each by temporary file and
    rename, so a kill mid-copy leaves every file whole (the lock ``run_dir``'s owner holds stays),
    in the order an epoch is committed (:data:`COMMIT_ORDER`, then the records)."""
    for source in sorted(saved.rglob("*"), key=lambda path: _commit_order(path, saved)):
        if source.is_dir() or source.name == LOCK:
            continue
        target = run_dir / source.relative_to(saved)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.mirror")
        with open(source, "rb") as src, os.fdopen(safefs.open_temporary(tmp), "wb") as dst:  # never via a link
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)
