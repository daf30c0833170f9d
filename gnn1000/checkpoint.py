"""Crash-safe checkpoints: written to a temporary file and renamed, so a kill never leaves half a
file; the one before is kept as ``<name>.prev.pt`` so that a damaged latest one has a fallback."""

from __future__ import annotations

import os
import pickle
import random
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from gnn1000.errors import CorruptFileError

# Seconds to pause at each step of a write: only the kill-loop test sets it, to widen the window.
PAUSE_ENV = "GNN1000_CHECKPOINT_PAUSE"


def previous(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _pause() -> None:
    seconds = float(os.environ.get(PAUSE_ENV) or 0)
    if seconds:
        time.sleep(seconds)


def save(path: Path, state: dict, keep_previous: bool = True) -> None:
    """Write ``state`` to ``path``; with ``keep_previous`` the file it replaces becomes ``.prev``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    _pause()
    if keep_previous and path.exists():
        os.replace(path, previous(path))
        _pause()
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the renames themselves survive a power cut
    finally:
        os.close(directory)


_UNREADABLE = (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile,
               KeyError, AttributeError, ImportError, IndexError, TypeError)


def load(path: Path, map_location="cpu") -> dict:
    """A checkpoint's state; a truncated or foreign file is a CorruptFileError naming it."""
    try:
        # weights_only: our checkpoints hold tensors and plain Python values only (see rng_state).
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except _UNREADABLE as exc:
        text = str(exc)
        if "Weights only load failed" in text:  # torch's advice to unpickle anything does not apply
            first = "its contents are not a torch-saved dict of tensors"
        else:
            first = text.split(". ")[0].strip()[:120] or "empty"
        raise CorruptFileError(
            f"Checkpoint {path} cannot be read: it is truncated, damaged or not a gnn1000 checkpoint "
            f"({type(exc).__name__}: {first}). Its size is {path.stat().st_size} bytes. Use the run's "
            f"other checkpoints (last.pt, last.prev.pt, best.pt: 'gnn1000 evaluate RUN --checkpoint last') "
            f"or train again."
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CorruptFileError(f"Checkpoint {path} is readable but holds no model state "
                               f"(keys: {sorted(state) if isinstance(state, dict) else type(state).__name__}); "
                               f"it was not written by gnn1000.")
    return state


def load_latest(path: Path, map_location="cpu", log=None) -> tuple[dict, Path]:
    """``path``'s state, or its ``.prev`` one with a warning when ``path`` is damaged or missing
    (a kill between the two renames of :func:`save`)."""
    fallback = previous(path)
    try:
        return load(path, map_location), path
    except (CorruptFileError, FileNotFoundError) as exc:
        if not fallback.is_file():
            if isinstance(exc, FileNotFoundError):
                raise
            raise CorruptFileError(f"{exc} There is no earlier checkpoint ({fallback.name}) to fall back to.") from None
        reason = "is missing" if isinstance(exc, FileNotFoundError) else "cannot be read"
        state = load(fallback, map_location)
        message = (f"{path} {reason}; continuing from the previous checkpoint {fallback} "
                   f"(epoch {state.get('epoch')}).")
        warnings.warn(message, stacklevel=2)
        if log is not None:
            log(f"warning: {message}")
        return state, fallback


def nonfinite_tensors(state: dict, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a (nested) state that hold NaN or Inf."""
    bad = []
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else []
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not torch.isfinite(value).all():
                bad.append(name)
        elif isinstance(value, (dict, list, tuple)):
            bad += nonfinite_tensors(value, f"{name}.")
    return bad


def rng_state() -> dict:
    """Every random stream training draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
