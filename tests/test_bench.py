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


def test_every_bench_option_has_help_text():
    import argparse
    import importlib

    from gnn1000 import bench

    for name in bench.available():
        parser = importlib.import_module(f"gnn1000.bench.{name}").build_parser()
        silent = [a.option_strings or a.dest for a in parser._actions
                  if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not silent, f"gnn1000 bench {name}: options without help: {silent}"
