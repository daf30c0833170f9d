"""``gnn1000 train --folds N``: k-fold cross-validation, one run per fold, reported as mean ± std.

Each fold is an ordinary run in ``RUN_DIR/fold-<k>/`` with ``<dataset>.folds = N`` and
``<dataset>.fold = k`` bound (datasets that take those options: ``tu``); ``RUN_DIR/summary.json``
holds every fold's test score at its best validation epoch and their mean and sample std (ddof=1).
"""

from __future__ import annotations

import inspect
import json
import statistics
from pathlib import Path

from gnn1000.errors import ConfigError


def fold_bindings(dataset: str, folds: int, fold: int) -> list[str]:
    """The bindings that select fold ``fold`` of ``folds`` of ``dataset``, checked to exist."""
    from gnn1000 import registry

    params = inspect.signature(registry.resolve("datasets", dataset)).parameters
    if not {"folds", "fold"} <= set(params):
        raise ConfigError(f"--folds: dataset {dataset!r} has no k-fold split (no 'folds' and 'fold' options); "
                          f"cross-validation is for graph-classification sets such as 'tu'.")
    name = registry.gin_name(dataset)
    return [f"{name}.folds = {folds}", f"{name}.fold = {fold}"]


def summarize(summaries: list[dict]) -> dict:
    """Mean ± sample std of the folds' test scores at their best validation epoch."""
    scores = [s["test_at_best_valid"] for s in summaries]
    return {"metric": summaries[0]["metric"], "dataset": summaries[0].get("dataset_name"),
            "folds": len(scores), "test_at_best_valid": scores,
            "mean": statistics.mean(scores), "std": statistics.stdev(scores) if len(scores) > 1 else 0.0}


def write_summary(run_path: Path, summaries: list[dict], command: str) -> dict:
    summary = {**summarize(summaries), "command": command}
    (run_path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
