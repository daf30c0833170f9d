"""Optional features and the extra that installs each: a missing package is named, not a traceback."""

from __future__ import annotations

import importlib.util

from gnn1000.errors import ConfigError


def require(module: str, extra: str, feature: str) -> None:
    """Raise a clear error naming ``pip install 'gnn1000[extra]'`` when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        install = f"pip install 'gnn1000[{extra}]'" if extra in EXTRAS else f"pip install {extra}"
        raise ConfigError(f"{feature} needs the package {module!r}, which is not installed here. "
                          f"Install it with: {install}")


# The optional extras pyproject.toml declares (the core trains and evaluates without them).
EXTRAS = ("tune", "bench", "metis", "tensorboard", "mlflow", "plot", "parquet", "docs", "test")
