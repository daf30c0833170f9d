"""Crash-safe checkpoints: written to a temporary file and renamed, so a kill never leaves half a
file; the one before is kept as ``<name>.prev.pt`` so that a damaged latest one has a fallback."""

from __future__ import annotations

import io
import os
import pickle
import random
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from gnn1000 import safefs
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
    """Write ``state`` to ``path``; with ``keep_previous`` the file it replaces becomes ``.prev``.

    Never through a link planted in the run directory; a full disk or a refused write is a
    StorageError that leaves ``path`` (and its ``.prev``) as they were."""
    buffer = io.BytesIO()
    torch.save(state, buffer)  # in memory first: a full disk cannot tear torch's zip writer, and the size is known
    data = buffer.getbuffer()
    for name in (path, previous(path)):
        safefs.refuse_symlink(name)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(safefs.open_temporary(tmp), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise safefs.failure(exc, "write the checkpoint", path, len(data)) from None
    _pause()
    try:
        if keep_previous and path.exists():
            os.replace(path, previous(path))
            _pause()
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the renames themselves survive a power cut
        finally:
            os.close(directory)
    except OSError as exc:
        raise safefs.failure(exc, "rename the new checkpoint into", path) from None


# Classes a checkpoint may hold besides tensors and plain values: none (the RNG states are converted).
CHECKPOINT_GLOBALS: tuple = ()

_UNREADABLE = (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile,
               KeyError, AttributeError, ImportError, IndexError, TypeError)


def load(path: Path, map_location="cpu") -> dict:
    """A checkpoint's state; a truncated or foreign file is a CorruptFileError naming it."""
    try:
        # weights_only: our checkpoints hold tensors and plain Python values only (see rng_state), so
        # unpickling may build nothing beyond them and the allow-list below: a checkpoint never runs code.
        safefs.refuse_symlink(Path(path), "(a checkpoint must be the run's own file)")
        with torch.serialization.safe_globals(list(CHECKPOINT_GLOBALS)):
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
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        if not isinstance(state, dict):
            held = f"a {type(state).__name__}, not a dict"
        elif "model" not in state:
            held = f"no 'model' entry (keys: {', '.join(sorted(map(str, state))[:10]) or 'none'})"
        else:
            held = f"a 'model' entry that is a {type(state['model']).__name__}, not a state dict"
        raise CorruptFileError(f"Checkpoint {path} is not a gnn1000 checkpoint: it is readable but holds "
                               f"{held}. Use the run's own checkpoints (last.pt, last.prev.pt, best.pt) "
                               f"or train again.")
    return state


def recorded_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds; None when it is missing or unreadable."""
    try:
        return load(path).get("epoch")
    except (FileNotFoundError, CorruptFileError):
        return None


def best_weights(best: Path, last: Path) -> Path:
    """The file holding the weights of the best epoch the records name: best.pt, or last.pt when a
    kill between the two writes left best.pt behind (last.pt is committed first and names its best)."""
    try:
        state = load(last)
    except (FileNotFoundError, CorruptFileError):
        return best
    named = (state.get("best") or {}).get("epoch")
    if named is None or named != state.get("epoch"):
        return best
    try:
        return best if load(best).get("epoch") == named else last
    except FileNotFoundError:
        return last
    except CorruptFileError:
        return best  # a damaged best.pt is reported when it is loaded, not passed over


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


def load_model(module: torch.nn.Module, weights: dict, path: Path) -> None:
    """``module.load_state_dict(weights)``; a checkpoint that does not fit the model the run's
    config.gin builds names its first mismatching parameter and both shapes, not torch's key list."""
    own = module.state_dict()
    problem = None
    for key, value in own.items():
        theirs = weights.get(key)
        if key not in weights:
            problem = f"the model has parameter {key!r} {tuple(value.shape)}, which the checkpoint lacks"
        elif not isinstance(theirs, torch.Tensor):
            problem = f"the checkpoint's {key!r} is a {type(theirs).__name__}, not a tensor"
        elif theirs.shape != value.shape:
            problem = (f"parameter {key!r} has shape {tuple(theirs.shape)} in the checkpoint but "
                       f"{tuple(value.shape)} in the model config.gin builds")
        if problem:
            break
    if problem is None:
        extra = [key for key in weights if key not in own]
        if extra:
            problem = f"the checkpoint has parameter {extra[0]!r}, which the model lacks ({len(extra)} such)"
    if problem is not None:
        raise CorruptFileError(
            f"Checkpoint {path} does not match the run's config.gin: {problem}. The config was changed "
            f"after training or the checkpoint comes from another run; restore the run's own config.gin "
            f"(or checkpoint), or train a new run with this config.")
    module.load_state_dict(weights)


# Callback states a checkpoint keeps at its top level, where they were before callbacks kept their own
# (the weights' moving average: ``gnn1000 evaluate`` and checkpoints of older runs read it there).
TOP_LEVEL_CALLBACK_STATES = ("averaged",)


def callback_states(states: dict) -> dict:
    """The checkpoint entries for callbacks' states (``state_key`` -> state): ``callbacks`` holds
    them, except those kept at the top level; those are present (None) even without their callback."""
    return {"callbacks": {k: v for k, v in states.items() if k not in TOP_LEVEL_CALLBACK_STATES},
            **{key: states.get(key) for key in TOP_LEVEL_CALLBACK_STATES}}


def callback_state_of(state: dict) -> dict:
    """``state_key`` -> state of every callback a checkpoint holds (none for one older than callbacks)."""
    return {**(state.get("callbacks") or {}),
            **{key: state[key] for key in TOP_LEVEL_CALLBACK_STATES if state.get(key) is not None}}


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
