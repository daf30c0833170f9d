"""Test-only: a logger plugin that raises in one Ray Train worker at a chosen epoch, once.

A config imports it with ``import dp_faults`` and sets ``experiment.loggers = ['fail_once']``; the
rank, epoch and marker file come from the environment the test gives its Ray workers. The marker is
written before raising, so the restarted worker group trains on.
"""

import os
from pathlib import Path

from gnn1000.registry import register

RANK, EPOCH, MARKER = "GNN1000_TEST_FAIL_RANK", "GNN1000_TEST_FAIL_EPOCH", "GNN1000_TEST_FAIL_MARKER"


class WorkerLost(RuntimeError):
    """What the chosen worker raises: a real exception in a real worker."""


@register("loggers", "fail_once")
class FailOnce:
    def __init__(self, run_path, history):
        import ray.train

        self.rank = ray.train.get_context().get_world_rank()

    def log(self, record: dict) -> None:
        marker = Path(os.environ[MARKER])
        if self.rank == int(os.environ[RANK]) and record["epoch"] == int(os.environ[EPOCH]) and not marker.exists():
            marker.write_text(f"failed at epoch {record['epoch']}\n")
            raise WorkerLost(f"test: rank {self.rank} lost at epoch {record['epoch']}")

    def close(self) -> None:
        pass


@register("loggers", "epochs_trained")
class EpochsTrained:
    """Appends every epoch rank 0 finished to the file ``GNN1000_TEST_EPOCHS_FILE`` names, so a test
    sees how far the workers trained even where the caller stopped copying their run."""

    def __init__(self, run_path, history):
        import ray.train

        self.main = ray.train.get_context().get_world_rank() == 0

    def log(self, record: dict) -> None:
        if self.main:
            with open(os.environ["GNN1000_TEST_EPOCHS_FILE"], "a") as f:
                f.write(f"{record['epoch']}\n")

    def close(self) -> None:
        pass
