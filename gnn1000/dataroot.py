"""Where datasets live, and a writable place for what their loaders write.

The root is gin ``data.root``, else ``$GNN1000_DATA``, else ``~/.cache/gnn1000/data``. Under it each
family keeps its loader's own layout: ``ogb/<dir>``, ``planetoid/<Name>``, ``tu/<Name>``. OGB and PyG
write ``processed/`` next to ``raw/`` on first load, so a dataset folder we may not write to is copied
to the cache (gin ``data.cache``, else ``$GNN1000_CACHE``, else ``~/.cache/gnn1000/datasets``) first.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import gin

from gnn1000.errors import ConfigError

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
    target = cache / family / folder
    if not target.exists():
        if not source.exists():  # nothing to copy and nowhere writable to read from: download to the cache
            return cache / family
        try:
            tmp = target.with_name(f".{folder}.copying")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp)
            for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
                d.chmod(0o755)  # copytree keeps read-only modes, the loader must write here
            for f in (p for p in tmp.rglob("*") if p.is_file()):
                f.chmod(0o644)
            tmp.rename(target)
        except OSError as exc:
            raise ConfigError(
                f"{source} is read-only and could not be copied to the cache {target} ({exc}); "
                f"set gin 'data.cache' or ${CACHE_ENV} to a writable folder."
            ) from exc
    return cache / family


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
