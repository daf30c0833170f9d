"""The shared real datasets for tests: where they are, and a session-wide writable cache.

The root is $GNN1000_DATA when set, else ``<repo>/../shared/datasets``; tests that need it skip,
naming the path, when it is absent. Tests never read it in place: whether the shared folder is
writable depends on the machine, so the session works on its own copy, made read-only (mode bits:
as root, permissions are not enforced, and gnn1000 checks the bits), and a cache takes what OGB
writes on first load (molhiv is processed once per session).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("GNN1000_DATA") or REPO.parent / "shared" / "datasets").resolve()


def requires(folder: str):
    """Skip unless ``<root>/<folder>`` exists."""
    path = DATA_ROOT / folder
    return pytest.mark.skipif(not path.is_dir(), reason=f"shared dataset {path} is absent "
                              f"(set GNN1000_DATA to the folder holding ogb/, planetoid/, tu/)")


def read_only_copy(source: Path, target: Path) -> Path:
    """``source`` copied to ``target``, every folder and file without write bits."""
    shutil.copytree(source, target)
    for path in sorted(target.rglob("*"), reverse=True) + [target]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return target


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory):
    """Point gnn1000 at a read-only session copy of the shared root and a cache kept for the session."""
    if not DATA_ROOT.is_dir():
        pytest.skip(f"shared datasets {DATA_ROOT} are absent")
    base = tmp_path_factory.mktemp("gnn1000-data")
    root = read_only_copy(DATA_ROOT, base / "datasets")
    cache = base / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNN1000_DATA", str(root))
        mp.setenv("GNN1000_CACHE", str(cache))
        yield root
