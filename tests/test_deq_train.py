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


def test_the_best_epoch_is_the_equilibriums_not_the_warm_ups_even_across_a_resume(one_thread):
    """A warm-up epoch trains DEQ-GNN's unrolled stand-in: it may lead while nothing else ran, but the
    reported model (best.pt, test_at_best_valid) is an equilibrium epoch's as soon as one exists."""
    from gnn1000.registry import resolve
    from gnn1000.settings import ExperimentConfig
    from gnn1000.trainer import Trainer

    data = resolve("datasets", "synthetic-proteins")(num_nodes=60, avg_degree=4, num_tasks=2)
    valid = {1: 0.9, 2: 0.95, 3: 0.5, 4: 0.6}  # the warm-up (epochs 1-2) scores higher than the equilibrium

    def trainer(epochs):
        model = resolve("architectures", "deq")(data.num_features, 8, data.num_outputs, 2, edge_dim=data.edge_dim,
                                                pretrain_epochs=2, fwd_max_iter=3, bwd_max_iter=3)
        fit = Trainer(model, data, resolve("samplers", "full_batch")(),
                      ExperimentConfig(epochs=epochs, device="cpu"), progress=False)
        fit.evaluate = lambda: {f"{s}_rocauc": valid[fit.epoch] for s in ("train", "valid", "test")}
        return fit

    warm = trainer(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in (1, 2):
            warm.epoch = epoch
            warm.model.set_epoch(epoch)
            warm.run_epoch()
        assert warm.best["epoch"] == 2  # only stand-ins so far: the best of them
        resumed = trainer(4)
        resumed.restore(warm.state_dict())
        for epoch in (3, 4):
            resumed.epoch = epoch
            resumed.model.set_epoch(epoch)
            resumed.run_epoch()
    assert resumed.best["epoch"] == 4 and resumed.summary()["test_at_best_valid"] == 0.6
