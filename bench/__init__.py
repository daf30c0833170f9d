"""Benchmarks behind ``gnn1000 bench NAME``: each public module here with a ``main(argv)`` is one NAME.

Every benchmark prints ratios measured side by side in one run; none of them asserts anything.
"""

from __future__ import annotations

import importlib
import pkgutil

from gnn1000.errors import UnknownNameError, unknown_name_message


def available() -> list[str]:
    """Benchmark names: the modules of this package, private (``_``) helpers left out."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def run(name: str, argv: list[str]) -> int:
    if name not in available():
        raise UnknownNameError(unknown_name_message("benchmark", name, available()))
    return importlib.import_module(f"{__name__}.{name}").main(argv)
