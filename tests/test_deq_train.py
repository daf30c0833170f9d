"""End to end: a DEQGNN trains through `gnn1000 train` and logs its solver stats per epoch."""

from __future__ import annotations

import json
import warnings

import pytest

from helpers import bind_args

from gnn1000 import config as gin_config
from gnn1000.cli import main
from gnn1000.build import build_experiment
from gnn1000.rundir import RunDir

BINDINGS = [
    "experiment.architecture = 'deq'", "experiment.dataset = 'synthetic-proteins'", "experiment.epochs = 12",
    "experiment.lr = 0.01",
    "synthetic_proteins.num_nodes = 400", "synthetic_proteins.num_tasks = 8",
    "deq.hidden_channels = 32", "deq.num_layers = 3", "deq.pretrain_epochs = 1",
    "deq.fwd_max_iter = 20", "deq.bwd_max_iter = 20", "experiment.device = 'cpu'",
]


@pytest.mark.filterwarnings("ignore::gnn1000.plugins.architectures.deq.SolverConvergenceWarning")
def test_deq_trains_through_the_cli_above_the_untrained_model_with_solver_stats(tmp_path):
    gin_config.load("default", BINDINGS)
    untrained = build_experiment(tmp_path / "untrained", progress=False).evaluate()["test_rocauc"]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", "--run-dir", str(tmp_path / "run"), "--no-progress", *bind_args(BINDINGS)]) == 0

    run = RunDir(tmp_path / "run")
    summary = json.loads(run.summary.read_text())
    assert summary["architecture"] == "deq"
    assert summary["test_at_best_valid"] > untrained + 0.1, (summary["test_at_best_valid"], untrained)
    records = run.read_metrics()
    assert [r["deq_warmup"] for r in records[:2]] == [1.0, 0.0]  # the loop told the model its epoch
    assert records[0]["deq_fwd_solves"] == 0
    for record in records[1:]:
        # one full-batch training step per epoch: evaluation's solves are not the epoch's training stats
        assert record["deq_fwd_solves"] == 1 and record["deq_bwd_solves"] == 1
        assert 1 <= record["deq_fwd_iterations"] <= 20 and 1 <= record["deq_bwd_iterations"] <= 20
        assert record["deq_fwd_rel_residual"] >= 0 and "deq_fwd_nonconverged" in record
