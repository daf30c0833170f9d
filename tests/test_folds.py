"""Stratified k-fold cross-validation of graph-classification sets, and a fragment for every dataset."""

import json
from pathlib import Path

import pytest
import torch
from shared_data import requires, shared_data  # noqa: F401  (session fixture)

from gnn1000.cli import main as cli_main
from gnn1000.configs import __file__ as configs_init
from gnn1000.errors import ConfigError
from gnn1000.plugins.datasets.pyg_datasets import stratified_fold, tu
from gnn1000.registry import available

from helpers import bind_args


def test_ten_stratified_folds_partition_the_graphs_and_keep_class_proportions():
    labels = torch.tensor([0] * 125 + [1] * 63)  # MUTAG's class sizes
    folds = [stratified_fold(labels, 10, k, seed=0) for k in range(10)]
    tests = torch.cat([f["test"] for f in folds])
    assert sorted(tests.tolist()) == list(range(188))  # every graph tests exactly once
    for k, f in enumerate(folds):
        together = torch.cat([f["train"], f["valid"], f["test"]])
        assert sorted(together.tolist()) == list(range(188))  # train, valid, test partition the set
        assert torch.equal(f["valid"], folds[(k + 1) % 10]["test"])
        share = labels[f["test"]].float().mean().item()
        assert abs(share - 63 / 188) < 0.05  # each fold keeps the 2:1 class mix
    again = stratified_fold(labels, 10, 3, seed=0)  # the same folds for every model
    assert all(torch.equal(again[s], folds[3][s]) for s in again)
    with pytest.raises(ConfigError, match="tu.fold"):
        stratified_fold(labels, 10, 10, seed=0)


@requires("tu/PROTEINS")
def test_continuous_attributes_are_standardized_on_the_training_fold(shared_data):  # noqa: F811
    data = tu(name="PROTEINS", folds=10, fold=2)
    x, slices = data.dataset._data.x, data.dataset.slices["x"]
    rows = torch.cat([torch.arange(slices[g], slices[g + 1]) for g in data.split["train"].tolist()])
    count = data.dataset.num_node_attributes
    assert count > 0
    assert x[rows, :count].mean(0).abs().max() < 1e-4
    assert (x[rows, :count].std(0) - 1).abs().max() < 1e-3


@requires("tu/MUTAG")
def test_folds_run_one_run_per_fold_and_report_mean_and_std(shared_data, tmp_path, capsys):  # noqa: F811
    bindings = ["experiment.architecture = 'resgnn'", "resgnn.hidden_channels = 8", "resgnn.num_layers = 1",
                "experiment.epochs = 1", "experiment.device = 'cpu'", "tu.name = 'MUTAG'"]
    run = tmp_path / "cv"
    fragment = str(Path(configs_init).parent / "fragments" / "tu.gin")
    assert cli_main(["train", fragment, "--folds", "3", "--run-dir", str(run), "--no-progress",
                     *bind_args(bindings)]) == 0
    out = capsys.readouterr().out
    assert "resgnn on MUTAG" in out and "final test acc:" in out and "over 3 folds" in out
    summary = json.loads((run / "summary.json").read_text())
    folds = [json.loads((run / f"fold-{k}" / "summary.json").read_text()) for k in range(3)]
    assert [r["test_at_best_valid"] for r in summary["runs"]] == [f["test_at_best_valid"] for f in folds]
    assert [r["label"] for r in summary["runs"]] == ["fold-0", "fold-1", "fold-2"]
    assert summary["kind"] == "folds" and summary["repeats"] == 3 and summary["dataset"] == "MUTAG"
    assert "--folds 3" in summary["command"]
    scores = torch.tensor([r["test_at_best_valid"] for r in summary["runs"]], dtype=torch.float64)
    assert summary["mean"]["test_at_best_valid"] == pytest.approx(scores.mean().item())
    assert summary["std_of"]["test_at_best_valid"] == pytest.approx(scores.std().item())  # sample std (ddof=1)
    assert [f["config"]["dataset"] for f in folds] == ["tu"] * 3


def test_folds_refuse_a_dataset_without_folds(tmp_path, tiny, capsys):
    assert cli_main(["train", "--folds", "5", "--run-dir", str(tmp_path / "cv"), *bind_args(tiny)]) == 2
    assert "no k-fold split" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()


def test_every_registered_dataset_has_a_fragment():
    fragments = {p.stem for p in (Path(configs_init).parent / "fragments").glob("*.gin")}
    missing = set(available("datasets")) - fragments
    assert not missing, f"datasets without configs/fragments/<name>.gin: {sorted(missing)}"
