"""The shared real datasets for tests: where they are, and a session-wide writable cache.

The root is $GNN1000_DATA when set, else ``<repo>/../shared/datasets``; tests that need it skip,
naming the path, when it is absent. OGB writes ``processed/`` on first load, and the shared folder
is read-only, so one cache folder per test session takes the copies (molhiv is processed once).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("GNN1000_DATA") or REPO.parent / "shared" / "datasets").resolve()


def requires(folder: str):
    """Skip unless ``<root>/<folder>`` exists."""
    path = DATA_ROOT / folder
    return pytest.mark.skipif(not path.is_dir(), reason=f"shared dataset {path} is absent "
                              f"(set GNN1000_DATA to the folder holding ogb/, planetoid/, tu/)")


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory):
    """Point gnn1000 at the shared root and a cache kept for the whole session."""
    cache = tmp_path_factory.mktemp("gnn1000-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNN1000_DATA", str(DATA_ROOT))
        mp.setenv("GNN1000_CACHE", str(cache))
        yield DATA_ROOT
