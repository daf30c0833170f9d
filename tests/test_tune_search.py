"""gnn1000 tune's search algorithms, schedulers and trial resources: Optuna (TPE), PBT, data-parallel
trials, the metric from dataset metadata, and bad search settings (fractional GPUs: test_tune.py).

Real searches run the tiny built-in dataset for a few epochs on a local Ray of 2 CPUs (and logical GPUs).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import ray
from ray import cloudpickle

from gnn1000 import cli
from gnn1000.errors import ConfigError
from gnn1000.registry import register
from gnn1000.tune import load_search, run_search
from gnn1000.tune.space import SearchConfig, bindings_for, without_search

from test_tune import TINY, read_metrics, ray_session, tiny_search  # noqa: F401  (fixture)

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SPACE = {"resgnn.dropout": ("uniform", 0.0, 0.5), "experiment.lr": ("loguniform", 1e-4, 3e-2)}


def search_file(directory: Path, *lines: str, epochs: int = 4) -> Path:
    path = directory / "search.gin"
    path.write_text(TINY.format(epochs=epochs) + "\n".join(lines) + "\n")
    return path


# -- the metric, from what a dataset registered -----------------------------------------------------

BUILT = []


def never_built(**kwargs):
    raise AssertionError("the driver built a dataset to learn its metric")


def says_nothing():
    """A third-party plugin that registered no metric: built once, to ask its task."""
    from gnn1000.plugins.datasets.synthetic_proteins import synthetic_proteins

    BUILT.append(1)
    return synthetic_proteins(num_nodes=60, avg_degree=4, num_tasks=2)


@pytest.fixture
def test_datasets(monkeypatch):
    """The two datasets above, registered for one test only (other tests list every dataset)."""
    from gnn1000 import registry
    from gnn1000.errors import normalize

    for name, builder, info in (("never-built", never_built, {"metric": "rmse"}), ("says-nothing", says_nothing, {})):
        monkeypatch.setitem(registry._entries["datasets"], normalize(name), None)  # removed again afterwards
        del registry._entries["datasets"][normalize(name)]
        register("datasets", name, **info)(builder)


def raise_if_opened(*args, **kwargs):
    raise AssertionError("the driver opened an OGB dataset to learn its metric")


@pytest.mark.parametrize("bindings, metric, mode", [
    (["experiment.dataset = 'never-built'"], "valid_rmse", "min"),
    (["experiment.dataset = 'ogbn-arxiv'"], "valid_acc", "max"),
    (["experiment.dataset = 'ogbn-proteins'"], "valid_rocauc", "max"),
    (["experiment.dataset = 'ogb'", "ogb.name = 'ogbg-molpcba'"], "valid_ap", "max"),
    (["experiment.dataset = 'ogb'", "ogb.name = 'ogbg-molesol'"], "valid_rmse", "min"),
    (["experiment.dataset = 'cora'"], "valid_acc", "max"),
], ids=["plugin", "ogbn-arxiv", "ogbn-proteins", "ogb-molpcba", "ogb-molesol", "cora"])
def test_the_metric_comes_from_dataset_metadata_without_loading_any_graph(tmp_path, monkeypatch, bindings,
                                                                        metric, mode, test_datasets):
    from gnn1000.plugins.datasets import ogb_graph, ogb_node, pyg_datasets

    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("GNN1000_DATA", str(empty))
    for module in (ogb_graph, ogb_node):
        monkeypatch.setattr(module, "open_ogb", raise_if_opened)
    monkeypatch.setattr(pyg_datasets, "_open", raise_if_opened)
    search = load_search(tiny_search(tmp_path), bindings)
    assert (search.metric, search.mode) == (metric, mode)
    assert list(empty.iterdir()) == []  # nothing downloaded or processed


def test_a_plugin_without_a_registered_metric_is_built_once_to_learn_it(tmp_path, test_datasets):
    BUILT.clear()
    search = load_search(tiny_search(tmp_path), ["experiment.dataset = 'says-nothing'"])
    assert (search.metric, search.mode, len(BUILT)) == ("valid_rocauc", "max", 1)


def test_trials_get_the_experiment_config_without_search_bindings(tmp_path):
    search = load_search(tiny_search(tmp_path), ["search.algorithm = 'optuna'"])
    assert "search." not in "".join(line for line in search.base_config.splitlines() if not line.startswith("#"))
    assert "resgnn.num_layers = 2" in search.base_config
    text = "x.a = 1\n\nsearch.space = {\n    'x.a': ('choice', [1, 2]),\n}\nsearch.num_samples = 2\ny.b = 'c'\n"
    assert without_search(text) == "x.a = 1\n\ny.b = 'c'\n"


# -- bad search settings -----------------------------------------------------------------------------

BAD = [
    ("search.algorithm = 'bayes'", "search.algorithm='bayes' is not one of the choices: 'random'"),
    ("search.scheduler = 'hyperband'", "search.scheduler='hyperband' is not one of the choices: 'asha'"),
    ("search.gpus_per_trial = -1", "search.gpus_per_trial=-1 is not allowed: it must be a number >= 0"),
    ("search.gpus_per_trial = 1.5", "Ray shares a GPU only in fractions below 1"),
    ("search.workers_per_trial = 0", "search.workers_per_trial=0 must be a positive integer"),
    ("search.cpus_per_trial = 0.5", "search.cpus_per_trial=0.5 must be a positive integer"),
    ("search.space = {'resgnn.num_layers': ('grid', [2, 3])}\nsearch.algorithm = 'optuna'",
     "search.algorithm='optuna' cannot take 'grid' specs (resgnn.num_layers)"),
    ("search.scheduler = 'pbt'\nsearch.algorithm = 'optuna'", "search.scheduler='pbt' needs search.algorithm='random'"),
    ("search.scheduler = 'pbt'\nsearch.space = {'resgnn.dropout': ('uniform', 0.0, 0.5), "
     "'resgnn.num_layers': ('choice', [2, 3])}",
     "search.scheduler='pbt' cannot search resgnn.num_layers: PBT changes the searched values of a running "
     "trial, which then goes on from its checkpoint, so it may only perturb experiment.lr, "
     "experiment.weight_decay, experiment.grad_clip and any '<architecture>.dropout'"),
    ("search.gpus_per_trial = 0.5", "but the Ray cluster has 2 CPUs, 0 GPUs"),
    ("search.workers_per_trial = 3\nsearch.scheduler = 'fifo'", "One trial needs 3 CPUs (3 worker(s)"),
    ("search.workers_per_trial = 2\nsearch.scheduler = 'pbt'", "search.workers_per_trial=2 cannot be combined with "
     "search.scheduler='pbt' yet"),
]


@pytest.mark.parametrize("lines, expected", BAD, ids=[b[0].replace("\n", "; ")[:70] for b in BAD])
def test_bad_search_settings_exit_2_with_one_paragraph(tmp_path, lines, expected, capsys, monkeypatch):
    """Through the CLI, on a 2-CPU local Ray where the cluster decides (started and stopped here)."""
    init = ray.init
    monkeypatch.setattr(ray, "init", lambda **kw: init(**kw, num_cpus=2, num_gpus=0, include_dashboard=False))
    path = search_file(tmp_path, lines)
    code = cli.main(["tune", str(path), "--storage", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    message = err[err.find("gnn1000 tune: "):].strip()
    assert message.startswith("gnn1000 tune: error: ") and "\n" not in message and "Traceback" not in message, err
    assert expected in message, message
    assert not ray.is_initialized()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no search started


def test_pbt_mutations_stay_in_range_and_shift_along_choices():
    from gnn1000.tune.space import KeepInRange

    settings = SearchConfig(space={"resgnn.dropout": ("uniform", 0.0, 0.5), "experiment.lr": ("choice", [0.1, 0.01]),
                                   "experiment.grad_clip": ("randint", 1, 5)}, scheduler="pbt")
    mutations = settings.mutations()
    assert mutations["experiment.lr"] == [0.1, 0.01]  # PBT moves to a neighbour, never multiplies a choice
    clip = KeepInRange(settings.space)
    assert clip({"resgnn.dropout": 0.6, "experiment.lr": 0.1, "experiment.grad_clip": 7}) == \
        {"resgnn.dropout": 0.5, "experiment.lr": 0.1, "experiment.grad_clip": 4}
    assert clip({"resgnn.dropout": -0.1})["resgnn.dropout"] == 0.0


# -- real searches ------------------------------------------------------------------------------------


def test_an_optuna_search_samples_with_seeded_tpe_and_writes_best_gin(tmp_path, ray_session):
    import optuna

    ray_session(num_gpus=0)
    result = run_search(search_file(tmp_path, "search.algorithm = 'optuna'", "search.seed = 3"), num_samples=6,
                        storage=tmp_path / "out")
    table = result["table"]
    assert len(table) == 6 and set(table["status"]) <= {"done", "stopped early"}
    assert result["best"].is_file() and "search." not in result["best"].read_text()
    # The configs are the ones Optuna's TPE sampler, seeded with search.seed, proposes.
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3), direction="maximize")
    distributions = {"resgnn.dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
                     "experiment.lr": optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True)}
    proposed = {tuple(round(v, 12) for v in study.ask(distributions).params.values()) for _ in range(6)}
    sampled = {(round(row["resgnn.dropout"], 12), round(row["experiment.lr"], 12)) for _, row in table.iterrows()}
    assert sampled == proposed


def test_a_pbt_search_moves_trials_onto_better_checkpoints_and_records_the_new_values(tmp_path, ray_session):
    ray_session(num_gpus=0)
    result = run_search(search_file(tmp_path, "search.scheduler = 'pbt'", "search.perturbation_interval = 2",
                                    epochs=6), num_samples=4, storage=tmp_path / "out")
    table = result["table"]
    assert len(table) == 4 and set(table["status"]) == {"done"}
    assert result["best"].is_file()
    assert (table["resgnn.dropout"].between(0.0, 0.5) & table["experiment.lr"].between(1e-4, 3e-2)).all()

    exploited = 0
    for trial in result["grid"]:
        with trial.checkpoint.as_directory() as saved:
            saved = Path(saved)
            resumes = [json.loads(line) for line in (saved / "resumes.jsonl").read_text().splitlines()] \
                if (saved / "resumes.jsonl").exists() else []
            history = read_metrics(saved)
            config = (saved / "config.gin").read_text()
        assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]  # the run it ends with, whole
        for entry in resumes:
            exploited += 1
            assert entry["after_epoch"] % 2 == 0 and set(entry["changed"]) <= {"experiment.lr", "resgnn.dropout"}
            assert f"after epoch {entry['after_epoch']}" in config  # config.gin says what changed, and when
            # the epoch after the change trained at the new rate (an exploit after the last epoch trains none)
            if "experiment.lr" in entry["changed"] and entry["after_epoch"] < len(history):
                new = entry["changed"]["experiment.lr"]["to"]
                assert history[entry["after_epoch"]]["lr"] == pytest.approx(new)
        # config.gin binds the values the trial ends with, which are the ones Tune reports for it
        assert bindings_for({"experiment.lr": trial.config["experiment.lr"]})[0] in config
        assert bindings_for({"resgnn.dropout": trial.config["resgnn.dropout"]})[0] in config
    assert exploited >= 1  # with 4 trials, 2 at a time and a perturbation every 2 epochs, some trial exploits


class RecordFreeCPUs:
    """Write, after each epoch (in the trial's process), when it was and how many CPUs Ray had free."""

    def __init__(self, directory: Path):
        self.path = str(directory / "free.jsonl")

    def __call__(self, experiment, record):
        with open(self.path, "a") as f:
            f.write(json.dumps({"epoch": record["epoch"], "free": ray.available_resources().get("CPU", 0)}) + "\n")


def test_a_search_of_data_parallel_trials_writes_best_gin(tmp_path, ray_session):
    ray_session(num_gpus=0)
    result = run_search(search_file(tmp_path, "search.workers_per_trial = 2", "search.scheduler = 'fifo'", epochs=2),
                        num_samples=2, storage=tmp_path / "out", callback=RecordFreeCPUs(tmp_path))
    assert len(result["table"]) == 2 and set(result["table"]["status"]) == {"done"}
    assert result["best"].is_file()
    # While each trial trained, its 2 workers held both CPUs (1 each); the trial's own process holds
    # none, or the second worker could never have started.
    free = [json.loads(line) for line in (tmp_path / "free.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in free] == [1, 2, 1, 2] and {entry["free"] for entry in free} == {0}
    # ... and gave them back: nothing of the Ray Train runs holds any after the search
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2
    [trial] = [r for r in result["grid"] if r.metrics["trial_id"] == result["table"].iloc[0]["trial"]]
    with trial.checkpoint.as_directory() as saved:
        assert [r["epoch"] for r in read_metrics(Path(saved))] == [1, 2]


SHRUNK = {  # each shipped search, small enough to run in seconds on the built-in dataset
    "tune/revgnn": ["revgnn.num_layers = 2", "revgnn.hidden_channels = 12"],
    "tune/wt-revgnn": ["revgnn.num_layers = 2", "revgnn.hidden_channels = 12"],
    "tune/deq": ["deq.hidden_channels = 8"],
}


@pytest.mark.parametrize("name", sorted(SHRUNK))
def test_the_shipped_model_based_searches_run_on_the_built_in_data(name, tmp_path, ray_session):
    ray_session(num_gpus=0)
    assert load_search(name).settings.algorithm == "optuna"
    bindings = ["synthetic_proteins.num_nodes = 120", "synthetic_proteins.avg_degree = 6", "experiment.epochs = 2",
                "search.grace_period = 2", *SHRUNK[name]]
    result = run_search(name, bindings=bindings, num_samples=2, storage=tmp_path / "out")
    assert set(result["table"]["status"]) == {"done"} and result["best"].is_file()


# -- what a search leaves behind -------------------------------------------------------------------


def test_load_search_leaves_the_search_file_in_gin_not_a_sampled_trial(tmp_path):
    import gin

    search = load_search(tiny_search(tmp_path), ["resgnn.dropout = 0.25"])  # searched: one sample is parsed
    assert gin.query_parameter("resgnn.dropout") == 0.25
    assert gin.query_parameter("search.num_samples") == search.settings.num_samples  # the file is still loaded


def test_results_and_best_config_go_to_a_storage_uri_not_a_local_folder(tmp_path, monkeypatch):
    """--storage as a URI: the driver writes beside the trials through its filesystem (file:// here)."""
    from types import SimpleNamespace

    import pandas as pd

    from gnn1000.tune import launcher

    monkeypatch.chdir(tmp_path)
    table = pd.DataFrame([{"trial": "t1", "epochs": 2, "valid_rocauc": 0.7, "test_rocauc": 0.6,
                           "best epoch": 2, "status": "done", "checkpoint": "saved"}])
    monkeypatch.setattr(launcher, "results_table", lambda grid, search: table)
    monkeypatch.setattr(launcher, "best_config", lambda checkpoint, search, header: header + "x.a = 1\n")
    search = launcher.Search(name="s", base_config="", settings=SimpleNamespace(scheduler="asha"), epochs=2,
                             device="cpu", metric="valid_rocauc", mode="max")
    folder = tmp_path / "bucket" / "s-1"
    outcome = launcher.report(SimpleNamespace(experiment_path=folder.as_uri()), search, log=lambda _: None)
    assert (folder / "results.csv").read_text().startswith("trial,epochs,valid_rocauc")
    assert "x.a = 1" in (folder / "best.gin").read_text()
    assert outcome["best"] == f"{folder.as_uri()}/best.gin"
    assert not (tmp_path / "runs").exists()  # nothing in a local default folder
