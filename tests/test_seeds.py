"""Multi-seed runs: one run per seed, the summary's mean ± std, and resume seed by seed."""

from __future__ import annotations

import json
import statistics

import pytest

from helpers import bind_args

from gnn1000.cli import main
from gnn1000.errors import ConfigError
from gnn1000.experiment import Experiment
from gnn1000.repeats import parse_seeds


def per_seed_results(run_dir, seeds):
    return [json.loads((run_dir / f"seed-{k}" / "summary.json").read_text()) for k in seeds]


def test_parse_seeds_takes_a_count_or_a_list_and_rejects_the_rest():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    for bad in ("0", "-2", "a,b", "1,1", "2.5"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_seeds_train_one_complete_run_each_and_summarise_mean_and_sample_std(tmp_path, tiny, capsys, one_thread):
    run_dir = tmp_path / "multi"
    assert main(["train", "--seeds", "0,3,7", "--run-dir", str(run_dir), "--no-progress", *bind_args(tiny)]) == 0

    summary = json.loads((run_dir / "summary.json").read_text())
    seeds = [0, 3, 7]
    per_seed = per_seed_results(run_dir, seeds)
    for k, run in zip(seeds, per_seed):  # each seed is a complete run with its own seed recorded
        assert run["config"]["seed"] == k and run["epochs"] == 3
        assert "experiment.seed = %d" % k in (run_dir / f"seed-{k}" / "config.gin").read_text()
        assert (run_dir / f"seed-{k}" / "checkpoints" / "best.pt").is_file()
    tests = [run["test_at_best_valid"] for run in per_seed]
    assert len(set(tests)) > 1, "different seeds should give different models"
    assert [r["test_at_best_valid"] for r in summary["runs"]] == tests
    assert [r["best_valid"] for r in summary["runs"]] == [run["best"]["valid_rocauc"] for run in per_seed]
    assert [r["final_test"] for r in summary["runs"]] == [run["final"]["test_rocauc"] for run in per_seed]
    assert summary["mean"]["test_at_best_valid"] == pytest.approx(statistics.fmean(tests))
    assert summary["std_of"]["test_at_best_valid"] == pytest.approx(statistics.stdev(tests))  # ddof=1
    assert "ddof=1" in summary["std"] and summary["command"].startswith("gnn1000 train --seeds 0,3,7")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    mean, std = summary["mean"]["test_at_best_valid"], summary["std_of"]["test_at_best_valid"]
    assert last.startswith(f"final test rocauc: {mean:.4f} ± {std:.4f} over 3 seeds")


def test_resume_of_a_half_finished_multi_seed_run_skips_done_seeds_and_continues_the_cut_one(
        tmp_path, tiny, monkeypatch, capsys, one_thread):
    bindings = [*tiny, "experiment.epochs = 4"]
    reference = tmp_path / "uninterrupted"
    assert main(["train", "--seeds", "2", "--run-dir", str(reference), "--no-progress", *bind_args(bindings)]) == 0

    run_dir = tmp_path / "interrupted"
    original = Experiment.run_epoch

    def stop_seed_1_in_epoch_3(self):
        if self.run.path.name == "seed-1" and self.epoch == 3:
            raise KeyboardInterrupt  # as a Ctrl-C or a kill between checkpoints
        return original(self)

    monkeypatch.setattr(Experiment, "run_epoch", stop_seed_1_in_epoch_3)
    assert main(["train", "--seeds", "2", "--run-dir", str(run_dir), "--no-progress", *bind_args(bindings)]) == 130
    assert (run_dir / "seed-0" / "summary.json").is_file() and not (run_dir / "summary.json").exists()
    assert len((run_dir / "seed-1" / "metrics.jsonl").read_text().splitlines()) == 2
    seed0_metrics = (run_dir / "seed-0" / "metrics.jsonl").read_text()
    monkeypatch.setattr(Experiment, "run_epoch", original)
    capsys.readouterr()

    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "seed-0: finished" in out and "resumed" in out and "after epoch 2" in out
    assert (run_dir / "seed-0" / "metrics.jsonl").read_text() == seed0_metrics  # not retrained
    resumed, uninterrupted = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    assert [r["label"] for r in resumed["runs"]] == ["seed-0", "seed-1"]
    for a, b in zip(resumed["runs"], uninterrupted["runs"]):  # resumed == uninterrupted, seed by seed
        assert a["test_at_best_valid"] == b["test_at_best_valid"] and a["final_valid"] == b["final_valid"]
    assert resumed["mean"]["test_at_best_valid"] == uninterrupted["mean"]["test_at_best_valid"]


def test_resume_refuses_new_seeds_or_config(tmp_path, tiny, one_thread):
    run_dir = tmp_path / "multi"
    assert main(["train", "--seeds", "1", "--run-dir", str(run_dir), "--no-progress", *bind_args(tiny)]) == 0
    assert main(["train", "--resume", str(run_dir), "--seeds", "3"]) == 2
