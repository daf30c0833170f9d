"""The console commands a user types first."""

import json

from gnn1000.cli import main as cli_main
from gnn1000.registry import KINDS

from helpers import bind_args, run_gnn1000


def test_list_shows_every_kind_with_origins_and_configs():
    result = run_gnn1000(["list"])
    assert result.returncode == 0, result.stderr
    for kind in KINDS:
        assert f"{kind}:" in result.stdout
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("resgnn"))
    assert "built-in" in line and "gnn1000.plugins.architectures.resgnn:ResGNN" in line
    assert "configs:" in result.stdout and "  default" in result.stdout


def test_evaluate_scores_the_best_model_as_training_did(tmp_path, tiny, capsys):
    assert cli_main(["train", "--run-dir", str(tmp_path), "--no-progress", *bind_args(tiny)]) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", str(tmp_path)]) == 0
    scores = json.loads(capsys.readouterr().out)
    best = json.loads((tmp_path / "summary.json").read_text())["best"]
    for split in ("train", "valid", "test"):
        assert abs(scores[f"{split}_rocauc"] - best[f"{split}_rocauc"]) < 1e-9


def test_version_comes_from_the_installed_distribution():
    from importlib.metadata import version

    import gnn1000

    assert gnn1000.__version__ == version("gnn1000")
    result = run_gnn1000(["--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gnn1000 {version('gnn1000')}"
