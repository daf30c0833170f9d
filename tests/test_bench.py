"""``gnn1000 bench``: dispatch by name, and the memory and speed benchmarks end to end at toy sizes."""

import json

import pytest
import torch

from gnn1000 import bench, cli

TOY = ["--nodes", "40", "--edges", "160", "--channels", "8"]


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the speed benchmark sets its own thread count


def test_benchmarks_are_discovered_by_module_name():
    assert {"memory", "speed"} <= set(bench.available())
    assert not any(name.startswith("_") for name in bench.available())


def test_unknown_benchmark_lists_the_known_ones(capsys):
    assert cli.main(["bench", "memroy"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'memory'" in err and "speed" in err


def test_speed_prints_ratios_to_resgnn(capsys, tmp_path):
    out = tmp_path / "speed.json"
    assert cli.main(["bench", "speed", "--layers", "2", "--rounds", "2", "--warmup", "0", *TOY,
                     "--models", "resgnn", "revgnn", "groupaddrev", "--precisions", "32", "bf16",
                     "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "resgnn" in table and "1.00x" in table and "groupaddrev" in table and "precision" in table
    times = json.loads(out.read_text())["step_seconds"]["2"]
    assert set(times) == {"32", "bf16"}
    assert set(times["32"]) == {"resgnn", "revgnn", "groupaddrev"}
    # PyG's GroupAddRev swaps float32 storage for its bf16 inverse and fails under autocast: named, not timed
    assert set(times["bf16"]) == {"resgnn", "revgnn"} and "groupaddrev at precision bf16 failed" in table
    assert all(len(t) == 2 for by_model in times.values() for t in by_model.values())


def test_speed_times_compiled_and_uncached_variants_beside_each_model(capsys, tmp_path, monkeypatch):
    """--compile and --no-norm-cache add a row per model, timed in the same rounds, with its ratio to
    the model's plain row. (Compiled on backend 'aot_eager': inductor's C++ builds take minutes here.)"""
    from gnn1000 import compilation

    monkeypatch.setattr(compilation, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    out = tmp_path / "speed.json"
    assert cli.main(["bench", "speed", "--layers", "2", "--rounds", "2", "--warmup", "0", *TOY, "--models", "resgnn",
                     "--operator", "gcn", "--compile", "--no-norm-cache", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gcn/layernorm" in printed and "vs plain" in printed
    rows = {line.split()[0] + (" " + line.split()[1] if not line.split()[1].isdigit() else ""): line.split()
            for line in printed.splitlines() if line.startswith("  resgnn")}
    assert set(rows) == {"resgnn", "resgnn compiled", "resgnn no-norm-cache"}
    # name, precision, median, ratio, min, ratio, vs 32; a variant's row adds its ratio to the plain one
    assert len(rows["resgnn"]) == 7 and len(rows["resgnn compiled"]) == 9 and rows["resgnn compiled"][-1].endswith("x")
    times = json.loads(out.read_text())["step_seconds"]["2"]["32"]
    assert set(times) == set(rows) and all(len(t) == 2 for t in times.values())


def test_the_norm_cache_switch_normalises_in_every_layer_when_off(monkeypatch):
    """What --no-norm-cache measures: with the cache, a 3-layer GCN stack normalises its graph once per
    forward pass; without it, once per layer."""
    from gnn1000.plugins.architectures.resgnn import ResGNN
    from gnn1000.plugins.operators import pyg_convs

    calls = []
    real = pyg_convs.gcn_norm
    monkeypatch.setattr(pyg_convs, "gcn_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = ResGNN(4, 8, 2, 3, operator="gcn")
    x, edge_index = torch.randn(10, 4), torch.randint(10, (2, 30))
    counted = {}
    for cache in (True, False):
        calls.clear()
        with pyg_convs.normalization_cache(cache):
            out = model(x, edge_index)
        counted[cache] = (len(calls), out)
    assert counted[True][0] == 1 and counted[False][0] == 3
    torch.testing.assert_close(counted[True][1], counted[False][1])  # the same normalisation, computed once


def test_memory_measures_each_point_in_its_own_process(capsys, tmp_path):
    out = tmp_path / "mem"
    assert cli.main(["bench", "memory", "--depths", "1", "3", "--models", "revgnn", *TOY,
                     "--precisions", "32", "bf16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ratio to the same model at 1 layers" in printed and "precision bf16" in printed
    points = json.loads(out.with_suffix(".json").read_text())["points"]
    assert len(points) == 4 and all(p["status"] == "ok" and p["peak_mb"] > 0 for p in points)
    assert sorted(p["precision"] for p in points) == ["32", "32", "bf16", "bf16"]
    assert out.with_suffix(".png").stat().st_size > 0


def test_unknown_model_is_a_clear_error(capsys):
    assert cli.main(["bench", "speed", "--models", "resnet"]) == 2
    assert "choose from" in capsys.readouterr().err
    assert cli.main(["bench", "speed", "--operator", "gnc"]) == 2
    assert "--operator gnc: not a registered operator; choose from" in capsys.readouterr().err


def _paper(tmp_path, monkeypatch, *extra):
    monkeypatch.setenv("GNN1000_DATA", str(tmp_path / "no-data"))  # molhiv absent: skipped with its reason
    return cli.main(["bench", "paper", "--scale", "tiny", "--device", "cpu", "--out", str(tmp_path / "out"), *extra])


def test_paper_tiny_writes_every_section_and_records_out_of_memory(capsys, tmp_path, monkeypatch):
    from gnn1000.bench._workload import Trainer
    from gnn1000.plugins.architectures.resgnn import ResGNN

    real_step = Trainer.step

    def step(self):  # injected: ResGNN past 2 layers runs out of memory, as on a GPU
        if isinstance(self.model, ResGNN) and self.model.num_layers > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step)
    assert _paper(tmp_path, monkeypatch) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "out"
    report = json.loads((out / "paper.json").read_text())
    status = {(p["model"], p["layers"]): p["status"] for p in report["depth"]}
    assert status[("resgnn", 2)] == "ok" and status[("resgnn", 4)].startswith("out of memory")
    assert status[("revgnn", 4)] == "ok" and status[("wt-revgnn", 4)] == "ok"
    assert [r["name"] for r in report["deep_wide"]] == ["RevGNN-Deep", "RevGNN-Wide"]
    assert all(r["peak_gb"] > 0 for r in report["deep_wide"])
    assert set(report["speed"]["median_s"]["32"]) == {"revgnn", "resgnn", "groupaddrev"}
    assert {r["mode"] for r in report["exactness"]} == {"float32 stream", "float64 stream", "bf16 autocast"}
    assert all(r["status"] == "ok" and r["max_rel"] < 1e-3 for r in report["exactness"])
    assert [p["layers"] for p in report["deq"]] == [2, 3] and all(p["status"] == "ok" for p in report["deq"])
    assert report["molhiv"]["status"].startswith("skipped") and "GNN1000_DATA" in report["molhiv"]["status"]
    table = (out / "paper.md").read_text()
    for heading in ("against depth", "RevGNN-Deep and RevGNN-Wide", "Step time", "Exactness", "iteration limit",
                    "ogbg-molhiv"):
        assert heading in table and heading in printed
    assert "| 4 | OOM |" in table
    assert (out / "memory-vs-depth.png").stat().st_size > 0


def test_paper_stops_at_its_time_limit_and_still_writes(capsys, tmp_path, monkeypatch):
    from gnn1000.bench import paper

    def broken(*args):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(paper, "exactness", broken)  # a section that fails leaves the others' numbers
    assert _paper(tmp_path, monkeypatch, "--minutes", "0.0001") == 0
    report = json.loads((tmp_path / "out" / "paper.json").read_text())
    assert report["exactness"] == [] and report["errors"] == ["exactness at 8 layers (40 nodes, 160 edges): "
                                                              "RuntimeError: injected failure"]
    budget = [p for p in report["depth"] if "time budget" in p["status"]]
    assert len(budget) >= len(report["depth"]) - 1  # a first point may start before the limit passes
    assert all("time budget" in p["status"] for p in report["deq"])
    assert report["speed"]["median_s"] == {} and report["molhiv"]["status"] == "skipped (time budget)"
    assert (tmp_path / "out" / "paper.md").exists() and (tmp_path / "out" / "memory-vs-depth.png").exists()
    # what a GPU machine without matplotlib leaves is drawn elsewhere from its JSON
    again = tmp_path / "replot"
    assert cli.main(["bench", "paper", "--replot", str(tmp_path / "out" / "paper.json"), "--out", str(again)]) == 0
    assert (again / "memory-vs-depth.png").stat().st_size > 0
    assert (again / "paper.md").read_text() == (tmp_path / "out" / "paper.md").read_text()


@pytest.mark.parametrize("bad,message", [(["--minutes", "-1"], "--minutes -1"),
                                         (["--minutes", "nan"], "--minutes nan")])
def test_paper_bad_options_are_one_paragraph(capsys, tmp_path, monkeypatch, bad, message):
    assert _paper(tmp_path, monkeypatch, *bad) == 2
    err = capsys.readouterr().err
    assert message in err and "positive number of minutes" in err and "Traceback" not in err


def test_paper_refuses_cuda_without_a_gpu(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["bench", "paper", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "--device cuda" in capsys.readouterr().err


TINY_INFECTION = ["--bind", "infection.size = 6", "--bind", "infection.num_graphs = 4", "--bind",
                  "infection.max_path_length = 4", "--bind", "revgnn.hidden_channels = 8", "--bind",
                  "experiment.device = 'cpu'"]


def test_depth_trains_each_model_at_each_depth_and_draws_the_figure(capsys, tmp_path):
    out = tmp_path / "depth"
    assert cli.main(["bench", "depth", "infection/revgnn-deep", "--layers", "2", "--models", "resgnn", "deq",
                     "--epochs", "1", "--memory-budget", "100", "--out", str(out), *TINY_INFECTION]) == 0
    printed = capsys.readouterr().out
    assert "| model | layers | test acc | depth ceiling | step memory MB |" in printed
    points = json.loads((out / "depth.json").read_text())["points"]
    assert [(p["model"], p["layers"]) for p in points] == [("resgnn", 2), ("deq", 2)]
    assert all(p["status"] == "ok" and p["peak_mb"] is not None and 0 <= p["test"] <= 1 for p in points)
    resgnn, deq = points
    assert "resgnn.num_layers = 2" in resgnn["bindings"] and "deq.fwd_max_iter = 2" in deq["bindings"]
    assert "deq.operator = 'sage'" in deq["bindings"]  # the config's operator, carried over
    assert resgnn["ceiling"] < 1.0 and deq["ceiling"] == 1.0  # an equilibrium model has no depth ceiling
    assert (out / "depth.png").stat().st_size > 0 and (out / "depth.md").read_text().count("\n| ") == 3


def test_depth_refuses_an_unknown_model(capsys):
    assert cli.main(["bench", "depth", "infection/revgnn-deep", "--models", "resnet"]) == 2
    assert "model 'resnet' is not one of" in capsys.readouterr().err


def test_a_run_compares_its_step_memory_with_a_resgnn_of_the_same_depth(capsys, tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "infection/revgnn-deep", "--run-dir", str(run), "--no-progress", *TINY_INFECTION,
                     "--bind", "revgnn.num_layers = 3", "--bind", "experiment.epochs = 1",
                     "--bind", "experiment.compare_step_memory = ['resgnn']"]) == 0
    printed = capsys.readouterr().out
    comparison = json.loads((run / "summary.json").read_text())["step_memory_comparison"]
    assert comparison["layers"] == 3 and comparison["own"] == "revgnn"
    assert set(comparison["models"]) == {"revgnn", "resgnn"}
    assert all(r["step_memory_mb"] >= 0 and r["parameters"] > 0 for r in comparison["models"].values())
    assert "one training step, each in a fresh process" in printed and "the memory of revgnn at 3 layers" in printed


def test_every_bench_option_has_help_text():
    import argparse
    import importlib

    from gnn1000 import bench

    for name in bench.available():
        parser = importlib.import_module(f"gnn1000.bench.{name}").build_parser()
        silent = [a.option_strings or a.dest for a in parser._actions
                  if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not silent, f"gnn1000 bench {name}: options without help: {silent}"
