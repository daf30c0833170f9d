"""The shipped quick configs run end to end through the real ``gnn1000 train`` on the shared data
(shortened by bindings; the configs themselves take a few CPU minutes)."""

from __future__ import annotations

import json

import pytest
from helpers import bind_args, run_gnn1000
from shared_data import REPO, requires, shared_data  # noqa: F401  (session fixture)


def train(config, run_dir, bindings):
    return run_gnn1000(["train", config, "--run-dir", str(run_dir), "--no-progress", *bind_args(bindings)],
                       cwd=REPO, timeout=600)


@pytest.mark.slow
@requires("ogb/ogbg_molhiv")
@requires("ogb/blogcatalog")
@pytest.mark.parametrize("config, bindings", [
    ("configs/ogbg-molhiv/quick.gin", ["experiment.epochs = 1", "experiment.graphs_per_epoch = 256",
                                       "experiment.batch_size = 512"]),
    ("configs/blogcatalog/quick.gin", ["experiment.epochs = 1", "random_partition.num_views = 1"]),
])
def test_quick_config_trains_from_the_command_line(shared_data, tmp_path, config, bindings):  # noqa: F811
    result = train(config, tmp_path / "run", bindings)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metric"] == "rocauc" and 0.0 < summary["test_at_best_valid"] < 1.0
    assert "final test rocauc" in result.stdout
