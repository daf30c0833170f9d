"""Loggers that write files into the run directory: CSV and TensorBoard event files."""

from __future__ import annotations

import csv
from pathlib import Path

from gnn1000.extras import require
from gnn1000.registry import register


def _numbers(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@register("loggers", "csv")
class CSVLogger:
    """``metrics.csv``: one row per epoch, one column per number the loop records."""

    def __init__(self, run_path: Path, history: list[dict]):
        self.path = Path(run_path) / "metrics.csv"
        self.records = list(history)
        self._write()

    def _write(self) -> None:
        columns = list(dict.fromkeys(k for r in self.records for k in r))
        tmp = self.path.with_name(".metrics.csv.tmp")
        with tmp.open("w", newline="") as f:  # rewritten whole: a column that appears later gets a header
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.records)
        tmp.replace(self.path)

    def log(self, record: dict) -> None:
        self.records.append(record)
        self._write()

    def close(self) -> None:
        pass


@register("loggers", "tensorboard")
class TensorBoardLogger:
    """Event files in ``RUN_DIR/tensorboard``: every number of each epoch's record (loss, metrics,
    lr, memory, solver statistics) as a scalar at step = epoch; ``tensorboard --logdir runs``."""

    def __init__(self, run_path: Path, history: list[dict]):
        require("tensorboard", "tensorboard", "the 'tensorboard' logger")
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run drops the events it logged after its checkpoint
        self.writer = SummaryWriter(log_dir=str(Path(run_path) / "tensorboard"),
                                    purge_step=len(history) + 1 if history else None)

    def log(self, record: dict) -> None:
        epoch = int(record["epoch"])
        for tag, value in _numbers(record).items():
            if tag != "epoch":
                self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
