"""gnn1000: graph neural networks a thousand layers deep on one GPU.

The public API, as plain PyTorch / PyG objects (no gin, no CLI needed)::

    from gnn1000 import RevGNN, ResGNN, DEQGNN, DeepGNN, create_model, list_models

``DeepGNN`` is their shared shell: subclass it to build your own architecture's stack.

Building blocks are in :mod:`gnn1000.nn`, root finders in :mod:`gnn1000.solvers`. Names are imported
on first use, so ``import gnn1000`` (and the CLI's start) stays light.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from typing import TYPE_CHECKING, Any

try:  # pyproject.toml holds the version; the installed distribution's metadata reports it
    __version__ = importlib.metadata.version("gnn1000")
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

# pyproject's package-dir maps registry/, plugins/, tune/, bench/ and configs/ of a checkout into this
# package; an install (and an editable one's finder) puts them in reach. Run from a checkout's root
# (`python -m gnn1000`), this folder shadows any install and no finder maps them: look beside it.
if importlib.util.find_spec(f"{__name__}.registry") is None:
    __path__.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# public name -> module that defines it
_EXPORTS = {
    "RevGNN": "gnn1000.plugins.architectures.revgnn",
    "ResGNN": "gnn1000.plugins.architectures.resgnn",
    "DEQGNN": "gnn1000.plugins.architectures.deq",
    "DeepGNN": "gnn1000.nn.base",
    "create_model": "gnn1000.models",
    "list_models": "gnn1000.models",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from gnn1000.models import create_model, list_models
    from gnn1000.nn.base import DeepGNN
    from gnn1000.plugins.architectures.deq import DEQGNN
    from gnn1000.plugins.architectures.resgnn import ResGNN
    from gnn1000.plugins.architectures.revgnn import RevGNN


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'gnn1000' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
