"""gnn1000 tune: real Ray Tune searches on CPU, logical GPUs, crash recovery and --resume.

Trials run the tiny built-in dataset for a few epochs; one Ray session serves the CPU tests.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import gin
import numpy as np
import pytest
import ray
from ray import cloudpickle

from gnn1000 import cli
from gnn1000.config import load
from gnn1000.errors import ConfigError
from gnn1000.registry import available
from gnn1000.tune import SearchConfig, load_search, run_search
from gnn1000.tune.launcher import trial_resources
from gnn1000.tune.space import bindings_for, check_group_divisibility, gin_literal

pytestmark = pytest.mark.slow  # Ray start-up and trial processes; the file takes about two minutes

# Trial callbacks are defined here; Ray workers cannot import this test module, so send them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TINY = """
include 'tune/resgnn.gin'
synthetic_proteins.num_nodes = 200
experiment.epochs = {epochs}
resgnn.hidden_channels = 16
resgnn.num_layers = 2
search.grace_period = 1
search.reduction_factor = 2
search.space = {{'resgnn.dropout': ('uniform', 0.0, 0.5), 'experiment.lr': ('loguniform', 1e-4, 3e-2)}}
"""


@pytest.fixture(scope="module")
def ray_session():
    """Start (or keep) a local Ray with 2 CPUs and the given number of logical GPUs."""

    def start(num_gpus: int = 0) -> None:
        if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) == num_gpus:
            return
        ray.shutdown()
        # "local": a fresh Ray of our own, never a cluster another process left running here.
        ray.init(address="local", num_cpus=2, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)

    yield start
    ray.shutdown()


def tiny_search(directory: Path, epochs: int = 4) -> Path:
    path = directory / "search.gin"
    path.write_text(TINY.format(epochs=epochs))
    return path


# -- trial callbacks (run inside the Ray workers) ------------------------------------------------


class CrashAt:
    """Raise a real exception at ``epoch``, the first ``times`` times it is reached; log every epoch."""

    def __init__(self, log: Path, epoch: int, times: int = 1):
        self.log, self.epoch, self.times = str(log), epoch, times

    def __call__(self, experiment, record):
        with open(self.log, "a") as f:
            f.write(f"{record['epoch']}\n")
        crashes = Path(self.log).with_suffix(".crashes")
        done = int(crashes.read_text()) if crashes.exists() else 0
        if record["epoch"] == self.epoch and done < self.times:
            crashes.write_text(str(done + 1))
            raise RuntimeError(f"injected crash at epoch {self.epoch}")


class RecordDevice:
    """Write each trial's Ray GPU ids, torch device and working directory, and when each epoch ended."""

    def __init__(self, directory: Path):
        self.directory = str(directory)

    def __call__(self, experiment, record):
        entry = {"run": str(experiment.run.path), "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                 "device": str(experiment.device), "cwd": os.getcwd(), "time": time.time()}
        path = Path(self.directory) / "devices.jsonl"
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        # Wait (bounded) until both trials have trained an epoch: only concurrent trials get past this.
        deadline = time.time() + 60
        while len({json.loads(line)["run"] for line in path.read_text().splitlines()}) < 2 \
                and time.time() < deadline:
            time.sleep(0.1)


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def epochs_logged(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()]


# -- search files --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,architecture", [("tune/resgnn", "resgnn"), ("tune/revgnn", "revgnn"),
                                               ("tune/wt-revgnn", "revgnn"), ("tune/deq", "deq")])
def test_shipped_searches_parse_and_keep_groups_divisible(name, architecture):
    if architecture not in available("architectures"):
        pytest.skip(f"architecture {architecture!r} is not installed in this checkout")
    search = load_search(name, ["synthetic_proteins.num_nodes = 200"])
    assert search.metric == "valid_rocauc" and search.mode == "max"
    assert search.settings.num_samples >= 1 and search.settings.space
    assert search.name == name.split("/")[-1]  # folders <name>-<timestamp> sit directly under --storage


def test_group_counts_that_do_not_divide_the_channels_are_rejected():
    space = {"revgnn.num_groups": ("choice", [2, 3, 4])}
    check_group_divisibility(space, {"revgnn.hidden_channels": 48}.get)
    with pytest.raises(ConfigError, match=r"3 does not divide 64.*multiples of 12"):
        check_group_divisibility(space, {"revgnn.hidden_channels": 64}.get)
    both = {**space, "revgnn.hidden_channels": ("choice", [24, 40])}
    with pytest.raises(ConfigError, match="3 does not divide 40"):
        check_group_divisibility(both, lambda key: None)


def test_bad_search_settings_say_what_is_allowed():
    with pytest.raises(ConfigError, match="Allowed: .*'choice'.*'loguniform'"):
        SearchConfig(space={"experiment.lr": ("normal", 0, 1)})
    with pytest.raises(ConfigError, match="need low < high and low > 0"):
        SearchConfig(space={"experiment.lr": ("loguniform", 0, 1)})
    with pytest.raises(ConfigError, match="the scheduler decides"):
        SearchConfig(space={"experiment.epochs": ("choice", [10, 20])})
    with pytest.raises(ConfigError, match="configurable.parameter"):
        SearchConfig(space={"dropout": ("uniform", 0, 1)})


def test_a_typo_in_a_searched_binding_fails_before_any_trial(tmp_path):
    path = tiny_search(tmp_path)
    with pytest.raises(ConfigError, match="Did you mean dropout"):
        load_search(path, ["search.space = {'resgnn.dropuot': ('uniform', 0.0, 0.5)}"])


def test_cli_errors_name_the_problem_before_ray_starts(tmp_path, capsys):
    ray_was_running = ray.is_initialized()
    assert cli.main(["tune", "tune/resgn"]) == 2
    assert "Did you mean tune/resgnn" in capsys.readouterr().err
    assert cli.main(["tune", str(tiny_search(tmp_path)), "--resume", "--storage", str(tmp_path / "none")]) == 2
    assert "no search 'search' to resume" in capsys.readouterr().err
    assert ray.is_initialized() == ray_was_running


def test_sampled_values_become_gin_bindings_that_parse():
    params = {"experiment.lr": np.float64(0.003), "resgnn.num_layers": np.int64(3), "gen.aggr": "max",
              "resgnn.weight_tied": np.bool_(True)}
    assert gin_literal(np.float64(0.5)) == "0.5" and gin_literal([np.int64(1), 2]) == "[1, 2]"
    load("default", bindings_for(params))
    assert gin.query_parameter("experiment.lr") == 0.003
    assert gin.query_parameter("resgnn.num_layers") == 3
    assert gin.query_parameter("resgnn.weight_tied") is True


def test_trials_ask_for_one_gpu_each_when_the_cluster_has_gpus():
    settings = SearchConfig(space={"experiment.lr": ("loguniform", 1e-4, 1e-2)}, cpus_per_trial=2)
    assert trial_resources(settings, {"CPU": 16, "GPU": 4}) == ({"cpu": 2, "gpu": 1}, 4)
    assert trial_resources(settings, {"CPU": 16}) == ({"cpu": 2}, 8)
    settings.max_concurrent = 3
    assert trial_resources(settings, {"CPU": 16, "GPU": 4}) == ({"cpu": 2, "gpu": 1}, 3)


def test_fractional_gpus_pack_trials_and_workers_multiply_what_a_trial_holds():
    space = {"experiment.lr": ("loguniform", 1e-4, 1e-2)}
    quarter = SearchConfig(space=space, gpus_per_trial=0.25)
    assert trial_resources(quarter, {"CPU": 16, "GPU": 1}) == ({"cpu": 1, "gpu": 0.25}, 4)
    assert trial_resources(quarter, {"CPU": 3, "GPU": 1})[1] == 3  # the CPUs run out first
    tenth = SearchConfig(space=space, gpus_per_trial=0.1)
    assert trial_resources(tenth, {"CPU": 16, "GPU": 1})[1] == 10  # not 9 from 1 / 0.1 = 9.999...
    assert trial_resources(SearchConfig(space=space, gpus_per_trial=0), {"CPU": 4, "GPU": 2}) == ({"cpu": 1}, 4)
    # Two workers with one GPU each: the trial's own process holds no CPU or GPU, its workers do.
    workers = SearchConfig(space=space, workers_per_trial=2, cpus_per_trial=2, scheduler="fifo")
    resources, concurrent = trial_resources(workers, {"CPU": 16, "GPU": 4})
    assert resources.get("cpu", 0) == 0 and "gpu" not in resources and concurrent == 2
    assert trial_resources(workers, {"CPU": 6})[1] == 1
    with pytest.raises(ConfigError, match=r"needs 4 CPUs, 2 GPUs .* has 16 CPUs, 1 GPUs"):
        trial_resources(workers, {"CPU": 16, "GPU": 1})


# -- real searches -------------------------------------------------------------------------------


def test_cpu_search_stops_weak_trials_and_best_gin_reproduces_the_best_trial(tmp_path, monkeypatch,
                                                                            ray_session, capsys):
    ray_session(num_gpus=0)
    monkeypatch.chdir(tmp_path)  # relative search file and storage resolve on the driver
    tiny_search(tmp_path)
    result = run_search("search.gin", num_samples=6, storage="out")

    table = result["table"]
    assert len(table) == 6 and set(table["status"]) <= {"done", "stopped early"}
    stopped = table[table["status"] == "stopped early"]
    assert len(stopped) >= 1 and (stopped["epochs"] < 4).all(), table
    assert (table["epochs"] == 4).any()
    assert table["valid_rocauc"].is_monotonic_decreasing  # best first
    assert result["results"].is_file() and len(result["results"].read_text().splitlines()) == 7
    printed = capsys.readouterr().out
    assert "valid_rocauc" in printed and "stopped early" in printed and "best trial" in printed

    best = table.iloc[0]
    best_gin = result["best"]
    assert best_gin == tmp_path / "out" / best_gin.parent.name / "best.gin"
    text = best_gin.read_text()
    assert f"experiment.lr = {gin_literal(best['experiment.lr'])}" in text
    assert f"resgnn.dropout = {gin_literal(best['resgnn.dropout'])}" in text
    assert "search." not in text and "experiment.device = 'auto'" in text

    # `gnn1000 train best.gin` runs as is, from anywhere, with exactly the best trial's settings.
    monkeypatch.chdir(tmp_path.parent)
    assert cli.main(["train", str(best_gin), "--run-dir", str(tmp_path / "retrain"), "--no-progress"]) == 0
    [best_trial] = [r for r in result["grid"] if r.metrics["trial_id"] == best["trial"]]
    with best_trial.checkpoint.as_directory() as saved:
        trial_config = (Path(saved) / "config.gin").read_text()
        trial_history = read_metrics(Path(saved))
    retrained = (tmp_path / "retrain" / "config.gin").read_text()
    assert retrained == trial_config.replace("experiment.device = 'cpu'", "experiment.device = 'auto'")
    history = read_metrics(tmp_path / "retrain")
    assert [r["valid_rocauc"] for r in history] == pytest.approx([r["valid_rocauc"] for r in trial_history],
                                                                 abs=1e-3)


def test_a_crashed_trial_resumes_from_its_checkpoint_and_finishes(tmp_path, ray_session):
    ray_session(num_gpus=0)
    log = tmp_path / "epochs.log"
    result = run_search(tiny_search(tmp_path), num_samples=1, storage=tmp_path / "out",
                        callback=CrashAt(log, epoch=3))

    # Epoch 3 crashed before it was reported; the retry restarted from the epoch-2 checkpoint.
    assert epochs_logged(log) == [1, 2, 3, 3, 4]
    assert (tmp_path / "epochs.crashes").read_text() == "1"
    [trial] = result["grid"]
    assert trial.error is None and trial.metrics["epoch"] == 4
    with trial.checkpoint.as_directory() as saved:
        assert [r["epoch"] for r in read_metrics(Path(saved))] == [1, 2, 3, 4]
    assert result["table"].iloc[0]["status"] == "done"


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_resume_restores_an_interrupted_search(tmp_path, ray_session, monkeypatch, algorithm):
    ray_session(num_gpus=0)
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "epochs.log"
    path = tiny_search(tmp_path, epochs=3)
    path.write_text(path.read_text() + f"search.algorithm = {algorithm!r}\n")  # the resumed search reads it too
    first = run_search("search.gin", num_samples=1, storage="out", callback=CrashAt(log, epoch=2),
                       bindings=["search.max_failures = 0"])
    assert first["grid"][0].error is not None and first["best"] is None

    assert cli.main(["tune", "search.gin", "--storage", "out", "--resume"]) == 0
    [search_dir] = (tmp_path / "out").glob("search-*")
    [trial_dir] = search_dir.glob("train_trial_*")
    last = max(trial_dir.glob("checkpoint_*"))
    # Epoch 1 came from the checkpoint, 2 and 3 ran after the restore (without the crashing callback).
    assert [r["epoch"] for r in read_metrics(last)] == [1, 2, 3]
    assert epochs_logged(log) == [1, 2]
    assert (search_dir / "best.gin").is_file()


@pytest.mark.parametrize("num_gpus, gpus_per_trial", [(2, None), (1, 0.5)], ids=["a GPU each", "half a GPU each"])
def test_concurrent_trials_get_their_gpu_share_and_run_on_cpu_without_cuda(tmp_path, ray_session, num_gpus,
                                                                           gpus_per_trial):
    ray_session(num_gpus=num_gpus)
    result = run_search(tiny_search(tmp_path, epochs=3), num_samples=2, storage=tmp_path / "out",
                        callback=RecordDevice(tmp_path),
                        bindings=["search.grace_period = 3", f"search.gpus_per_trial = {gpus_per_trial}"])
    assert len(result["table"]) == 2 and set(result["table"]["status"]) == {"done"}
    entries = [json.loads(line) for line in (tmp_path / "devices.jsonl").read_text().splitlines()]
    by_run: dict[str, list] = {}
    for entry in entries:
        by_run.setdefault(entry["run"], []).append(entry)
    assert len(by_run) == 2
    gpu_ids = [{tuple(e["gpu_ids"]) for e in run} for run in by_run.values()]
    assert all(len(ids) == 1 and len(next(iter(ids))) == 1 for ids in gpu_ids)  # one GPU per trial
    if gpus_per_trial is None:
        assert gpu_ids[0] != gpu_ids[1]  # ... and not the same one
    else:
        assert gpu_ids[0] == gpu_ids[1] == {("0",)}  # ... the one GPU, which both hold half of
    assert {e["device"] for e in entries} == {"cpu"}  # Ray's GPU id, but no CUDA here: CPU
    assert {e["cwd"] for e in entries} == {os.getcwd()}  # relative paths mean what they mean here
    first, second = ([e["time"] for e in run] for run in by_run.values())
    assert min(first) < max(second) and min(second) < max(first)  # they ran at the same time
    assert result["best"].is_file()


def test_trials_that_all_fail_on_a_bad_value_end_in_gnn1000s_own_paragraph(tmp_path, ray_session, capsys):
    # A dataset option is not checked before the trials (their data is not built): every trial fails
    # inside gin, whose proxy exception once turned gnn1000's message into Ray's TypeError.
    ray_session(num_gpus=0)
    search = tiny_search(tmp_path)
    search.write_text(search.read_text() + "search.num_samples = 1\n"
                      "search.space = {'synthetic_proteins.avg_degree': ('choice', [-3])}\n")
    capsys.readouterr()
    assert cli.main(["tune", str(search), "--storage", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith("gnn1000 tune: error: every trial of search search failed on a value gnn1000 refuses")
    assert "synthetic_proteins.avg_degree=-3 is not allowed" in said and "TypeError" not in said
