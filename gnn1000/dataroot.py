"""Where datasets live, and a writable place for what their loaders write.

The root is gin ``data.root``, else ``$GNN1000_DATA``, else ``~/.cache/gnn1000/data``. Under it each
family keeps its loader's own layout: ``ogb/<dir>``, ``planetoid/<Name>``, ``tu/<Name>``. OGB and PyG
write ``processed/`` next to ``raw/`` on first load, so a dataset folder we may not write to is copied
to the cache (gin ``data.cache``, else ``$GNN1000_CACHE``, else ``~/.cache/gnn1000/datasets``) first.
Processed files are data from elsewhere (a shared folder, a download): they are loaded weights-only,
and ones that do not load so are rebuilt from raw/ in the cache, never unpickled and never replaced
where they lie.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import stat
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import gin

from gnn1000.errors import ConfigError, CorruptFileError

ROOT_ENV = "GNN1000_DATA"
CACHE_ENV = "GNN1000_CACHE"
_HOME_CACHE = Path("~/.cache/gnn1000").expanduser()


@gin.configurable("data")
def settings(root: str | None = None, cache: str | None = None) -> tuple[Path, Path]:
    """The data root and the writable cache, from gin, the environment, or the defaults."""
    root_path = Path(root or os.environ.get(ROOT_ENV) or _HOME_CACHE / "data").expanduser()
    cache_path = Path(cache or os.environ.get(CACHE_ENV) or _HOME_CACHE / "datasets").expanduser()
    return root_path, cache_path


def data_root() -> Path:
    return settings()[0]


def _writable(path: Path) -> bool:
    """True when ``path`` and every folder below it may be written (or it may be created).

    Write bits count, not just ``os.access``: as root, access() says yes to a read-only share.
    """
    def ok(d: Path) -> bool:
        return bool(d.stat().st_mode & stat.S_IWUSR) and os.access(d, os.W_OK)

    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        return parent is not None and ok(parent)
    return all(ok(d) for d in [path, *(p for p in path.rglob("*") if p.is_dir())])


def writable_root(family: str, folder: str) -> Path:
    """The ``<root>/<family>`` to hand a loader for ``folder``: the data root itself when the loader
    may write there (or download into it), otherwise a cache copy of ``folder`` made once."""
    root, cache = settings()
    source = root / family / folder
    if _writable(source):
        return root / family
    cache_copy(source, cache / family / folder)  # nothing to copy: the loader downloads into the cache
    return cache / family


def cache_copy(source: Path, target: Path, *, processed: bool = True) -> None:
    """Make ``target`` (in gnn1000's cache) a writable copy of ``source``, unless it is one already;
    without ``processed`` the copy leaves out ``processed/``, so the loader builds it from raw/."""
    if target.exists() and source.exists() and _read_fingerprint(target) != fingerprint(source):
        # the source changed since it was copied (fixed, or replaced): copy it again
        warnings.warn(f"{source} changed since it was copied to {target}; copying it again.", stacklevel=3)
        shutil.rmtree(target)
    if target.exists() or not source.exists():
        return
    try:
        tmp = target.with_name(f".{target.name}.copying")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp, ignore=None if processed else shutil.ignore_patterns("processed"))
        (tmp / FINGERPRINT).write_text(json.dumps(fingerprint(source)))
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            d.chmod(0o755)  # copytree keeps read-only modes, the loader must write here
        for f in (p for p in tmp.rglob("*") if p.is_file()):
            f.chmod(0o644)
        tmp.rename(target)
    except OSError as exc:
        raise ConfigError(
            f"{source} could not be copied to gnn1000's cache {target} ({exc}); "
            f"set gin 'data.cache' or ${CACHE_ENV} to a writable folder."
        ) from exc


FINGERPRINT = ".gnn1000-source.json"


def fingerprint(source: Path) -> dict[str, list[int]]:
    """Size and modification time of every source file (processed/ excluded: it is derived)."""
    return {str(p.relative_to(source)): [p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(source.rglob("*")) if p.is_file() and "processed" not in p.relative_to(source).parts}


def _read_fingerprint(target: Path) -> dict | None:
    try:
        return json.loads((target / FINGERPRINT).read_text())
    except (OSError, ValueError):
        return None


def damaged_gzip(folder: Path, files: list[str]) -> tuple[Path, str] | None:
    """The first ``.gz`` file among ``files`` that does not decompress to its end, and why."""
    for name in files:
        path = folder / name
        if path.suffix != ".gz" or not path.is_file():
            continue
        try:
            with gzip.open(path, "rb") as f:
                while f.read(1 << 20):
                    pass
        except (EOFError, OSError, zlib.error) as exc:
            return path, str(exc) or type(exc).__name__
    return None


@contextlib.contextmanager
def weights_only_loads():
    """Within it every ``torch.load`` loads weights only, whatever its caller asks: PyG's
    ``fs.torch_load`` retries a refused load with full unpickling, which would run the code a planted
    ``processed/*.pt`` holds. A refused file then fails like a damaged one and is rebuilt from raw/."""
    import torch

    original = torch.load

    def load(*args, weights_only=None, **kwargs):
        return original(*args, weights_only=True, **kwargs)

    torch.load = torch.serialization.load = load
    try:
        yield
    finally:
        torch.load = torch.serialization.load = original


def load_or_rebuild(name: str, load: Callable[[Path], object], family_root: Path, family: str, folder: str,
                    files: list[str]):
    """``load(family_root)``, loading weights only. Processed files that cannot be read (damaged, or
    not loadable weights-only: never unpickled) are rebuilt from raw/ inside gnn1000's own cache, with
    a warning, so a shared dataset folder is never changed; a damaged raw file is one paragraph naming
    it instead of the loader's traceback."""
    cache = settings()[1] / family
    here = family_root / folder
    try:
        return _weights_only(load, family_root)
    except Exception as exc:  # loaders pass on whatever pandas, gzip or torch.load raise
        error = exc
    processed = here / "processed"
    damaged = damaged_gzip(here, files)
    if damaged is not None:
        path, reason = damaged
        if family_root == cache:
            shutil.rmtree(processed, ignore_errors=True)  # whatever was built from it goes too
        raise CorruptFileError(
            f"Dataset {name!r}: {path} is damaged ({reason}); it is probably truncated by an interrupted "
            f"download or copy ({path.stat().st_size} bytes). Replace it with a complete copy from the "
            f"dataset's release and run again.") from None
    if processed.is_dir():
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"
        if family_root == cache:
            warnings.warn(f"{name}: the processed files in {processed} could not be read ({reason}); "
                          f"rebuilding them from raw/.", stacklevel=2)
            shutil.rmtree(processed)
        else:  # the data root may be shared: its files stay as they are, the rebuild goes to the cache
            warnings.warn(f"{name}: the processed files in {processed} could not be read ({reason}); "
                          f"rebuilding them from raw/ in gnn1000's cache {cache / folder} ({here} is left "
                          f"as it is; remove its processed/ folder to stop this warning).", stacklevel=2)
            cache_copy(here, cache / folder, processed=False)
            return load_or_rebuild(name, load, cache, family, folder, files)
        try:
            return _weights_only(load, family_root)
        except Exception as exc:
            error = exc
    first = str(error).splitlines()[0][:200] if str(error) else ""
    raise CorruptFileError(f"Dataset {name!r}: the files in {here} could not be read "
                           f"({type(error).__name__}: {first}). Check them against the dataset's "
                           f"release (expected: {', '.join(files)}).") from error


def _weights_only(load: Callable[[Path], object], family_root: Path):
    with weights_only_loads():
        return load(family_root)


def missing_dataset(name: str, family: str, folder: str, expected: list[str], cause: BaseException) -> ConfigError:
    """The error for a dataset that is neither on disk nor downloadable."""
    root, cache = settings()
    return ConfigError(
        f"Dataset {name!r} could not be loaded: it is not under the data root {root} "
        f"(looked for {root / family / folder}, and the cache {cache / family / folder}) and downloading "
        f"it failed ({type(cause).__name__}: {cause}). Expected files: "
        f"{', '.join(str(Path(family) / folder / f) for f in expected)}. Point gin 'data.root' or "
        f"${ROOT_ENV} at a folder holding them, or allow network access."
    )
