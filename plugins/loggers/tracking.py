"""Experiment trackers: MLflow (imported only when this logger is chosen)."""

from __future__ import annotations

import os
from pathlib import Path

from gnn1000.extras import require
from gnn1000.registry import register


@register("loggers", "mlflow")
class MLflowLogger:
    """One MLflow run per gnn1000 run, in ``$MLFLOW_TRACKING_URI`` or else ``RUN_DIR/mlflow.db``
    (SQLite: MLflow 3 refuses a new file-store backend)."""

    def __init__(self, run_path: Path, history: list[dict]):
        require("mlflow", "mlflow", "the 'mlflow' logger")
        require("sqlalchemy", "mlflow", "the 'mlflow' logger's SQLite store")
        import mlflow

        if "MLFLOW_TRACKING_URI" not in os.environ:
            mlflow.set_tracking_uri(f"sqlite:///{(Path(run_path) / 'mlflow.db').resolve()}")
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=Path(run_path).name)
        for record in history:
            self.log(record)

    def log(self, record: dict) -> None:
        numbers = {k: float(v) for k, v in record.items()
                   if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.mlflow.log_metrics(numbers, step=int(record["epoch"]))

    def close(self) -> None:
        self.mlflow.end_run()
