"""A result can be reproduced from its run directory: summary.json's environment record, the
deterministic switch, and what OGB's leaderboard form asks for after --seeds."""

import json
import subprocess
from importlib.metadata import version

import pytest
import torch

from gnn1000.cli import main as cli_main
from gnn1000.errors import ConfigError
from gnn1000.experiment import Experiment, ExperimentConfig
from gnn1000.registry import resolve

from helpers import TINY, bind_args


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)


def test_summary_records_versions_hardware_and_the_config_repository_commit(tmp_path, one_thread):
    repo = tmp_path / "project"
    repo.mkdir()
    config = repo / "tiny.gin"
    config.write_text("\n".join(TINY[:-2]) + "\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "tiny.gin")
    _git(repo, "commit", "-qm", "tiny")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    config.write_text(config.read_text() + "# edited after the commit\n")  # the run comes from a dirty tree
    run = tmp_path / "run"
    assert cli_main(["train", str(config), "--run-dir", str(run), "--no-progress", "-q",
                     "--bind", "experiment.epochs = 1", "--bind", "experiment.device = 'cpu'"]) == 0
    env = json.loads((run / "summary.json").read_text())["environment"]
    assert env["packages"]["gnn1000"] == version("gnn1000") and env["packages"]["torch"] == version("torch")
    assert {"torch_geometric", "ogb", "ray", "gin"} <= set(env["packages"])
    assert env["python"] and env["platform"] and env["cpu_count"] >= 1
    assert set(env) >= {"cuda", "cudnn", "gpus"}
    assert env["git"] == {"repository": str(repo.resolve()), "commit": head, "dirty": True}


def test_no_config_file_or_no_git_gives_a_null_git_record(tmp_path, monkeypatch):
    from gnn1000.reproducibility import environment, git_state

    assert git_state(None) is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable to be found
    assert environment(tmp_path)["git"] is None


def _train(path, seed_weights: int = 0):
    torch.manual_seed(seed_weights)
    data = resolve("datasets", "synthetic-proteins")(num_nodes=80, avg_degree=4, num_tasks=2)
    model = resolve("architectures", "revgnn")(data.num_features, 8, data.num_outputs, 2, num_groups=2,
                                               dropout=0.1, edge_dim=data.edge_dim)
    seen = []
    settings = ExperimentConfig(epochs=2, device="cpu", lr=0.01, deterministic=True)
    experiment = Experiment(model, data, resolve("samplers", "random_partition")(num_parts=2), settings, path,
                            progress=False, log=lambda _: None,
                            on_epoch=lambda *_: seen.append(torch.are_deterministic_algorithms_enabled()))
    experiment.fit()
    return experiment.model.state_dict(), seen


def test_two_deterministic_runs_give_bit_identical_weights(tmp_path, one_thread):
    before = torch.are_deterministic_algorithms_enabled()
    first, seen = _train(tmp_path / "a")
    second, _ = _train(tmp_path / "b")
    assert seen == [True, True] and torch.are_deterministic_algorithms_enabled() == before  # this run only
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_deterministic_must_be_a_boolean():
    with pytest.raises(ConfigError, match="experiment.deterministic='yes' must be True or False"):
        ExperimentConfig(deterministic="yes")


def test_seeds_summary_has_parameters_environment_and_the_leaderboard_fields(tmp_path, one_thread, capsys):
    run = tmp_path / "seeds"
    assert cli_main(["train", "--seeds", "2", "--run-dir", str(run), "--no-progress",
                     *bind_args([*TINY, "experiment.epochs = 1"])]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    child = json.loads((run / "seed-0" / "summary.json").read_text())
    assert summary["num_parameters"] == child["num_parameters"] > 0
    assert summary["environment"]["packages"]["torch"] == child["environment"]["packages"]["torch"]
    form = out[out.index("for OGB's leaderboard form"):]
    fields = dict(line.strip().split(":", 1) for line in form.splitlines()[1:7])
    assert list(fields) == ["test rocauc", "validation rocauc", "#params", "hardware", "packages", "command"]
    assert fields["#params"].strip() == f"{child['num_parameters']:,}"
    assert "gnn1000" in fields["packages"] and fields["command"].strip().startswith("gnn1000 train --seeds 2")
    assert out.strip().splitlines()[-1].startswith("final test rocauc:")
