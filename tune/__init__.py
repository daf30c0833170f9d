"""Ray Tune searches over gin bindings, running the same experiment loop as ``gnn1000 train``.

``space`` reads a search file's ``search.*`` bindings, ``trial`` is one trial, ``launcher`` runs them.
Names are imported on first use: ``gnn1000 train --workers`` (``data_parallel``) needs Ray Train, not
the launcher's Tune and pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS = {"Search": "launcher", "load_search": "launcher", "run_search": "launcher",
            "DISTRIBUTIONS": "space", "SearchConfig": "space"}

__all__ = ["DISTRIBUTIONS", "Search", "SearchConfig", "load_search", "run_search"]

if TYPE_CHECKING:
    from gnn1000.tune.launcher import Search, load_search, run_search
    from gnn1000.tune.space import DISTRIBUTIONS, SearchConfig


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
