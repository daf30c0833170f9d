"""Packaging: a core-only install trains and evaluates, and names the extra a feature needs."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import TINY, bind_args

REPO = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                              ".benchmarks", "bench-memory*", ".whl")  # .whl: bench/gpu/run.sh's wheels


def test_declared_dependencies_and_license():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    core = " ".join(project["project"]["dependencies"])
    for package in ("torch", "torch-geometric", "ogb", "gin-config", "numpy", "pandas", "tqdm", "scikit-learn"):
        assert package in core
    for optional in ("ray", "pymetis", "matplotlib", "torchdeq", "tensorboard"):
        assert optional not in core  # each behind its extra
    extras = project["project"]["optional-dependencies"]
    assert {"tune", "bench", "metis", "docs", "test"} <= set(extras)
    assert any("ray" in r for r in extras["tune"]) and any("pymetis" in r for r in extras["metis"])
    # the SPDX license string needs setuptools >= 77 to build
    assert project["project"]["license"] == "MIT" and "setuptools>=77" in project["build-system"]["requires"][0]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.slow
def test_a_core_only_install_trains_and_names_the_tune_extra(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SKIP)  # pip builds in the source tree: never in the worktree
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    # torch first, from the CPU wheel, so that pip does not pull CUDA wheels as a dependency
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=900)
    subprocess.run([*pip, str(source)], check=True, timeout=900)
    python = str(venv / "bin" / "python")
    missing = subprocess.run([python, "-c", "import importlib.util as u; print([m for m in "
                              "('ray', 'pymetis', 'matplotlib', 'tensorboard', 'torchdeq') if u.find_spec(m)])"],
                             capture_output=True, text=True, check=True)
    assert missing.stdout.strip() == "[]"  # none of the extras came with the core
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GNN1000_CACHE": str(tmp_path / "cache")}
    gnn1000 = str(venv / "bin" / "gnn1000")
    run = tmp_path / "run"
    trained = subprocess.run([gnn1000, "train", "--run-dir", str(run), "--no-progress", *bind_args(TINY)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr
    assert (run / "summary.json").is_file()
    evaluated = subprocess.run([gnn1000, "evaluate", str(run)], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr
    tune = subprocess.run([gnn1000, "tune", "tune/resgnn"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert tune.returncode == 2
    assert "pip install 'gnn1000[tune]'" in tune.stderr and "Traceback" not in tune.stderr


def _python(code: str, cwd, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_python_m_gnn1000_runs_from_the_checkout_without_an_editable_finder():
    """After a non-editable ``pip install .``, the checkout's gnn1000/ shadows the install and no
    finder maps registry/, plugins/, tune/, bench/ into it: dropping the editable finder shows it."""
    code = ("import sys, runpy\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
            "sys.path.insert(0, '.')\n"
            "sys.argv = ['gnn1000', 'list', 'norms']\n"
            "runpy.run_module('gnn1000', run_name='__main__')\n")
    result = _python(code, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "layernorm" in result.stdout


def test_pyproject_lists_each_package_once():
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert len(packages) == len(set(packages))


@pytest.mark.parametrize("module", ["ray", "pyarrow"])  # Ray Train imports pyarrow too
def test_train_workers_on_a_core_only_install_names_the_tune_extra(tmp_path, module):
    """Ray or pyarrow missing: --workers refuses in one paragraph (exit 2), and leaves no run behind."""
    code = ("import sys\n"
            f"sys.modules[{module!r}] = None\n"  # as if not installed
            "from gnn1000.cli import main\n"
            f"sys.exit(main(['train', '--workers', '2', '--run-dir', 'run', '--no-progress', *{bind_args(TINY)!r}]))\n")
    result = _python(code, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "pip install 'gnn1000[tune]'" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_data_parallel_path_leaves_the_tune_launcher_unimported():
    result = _python("import sys\nimport gnn1000.tune.data_parallel\n"
                     "assert 'gnn1000.tune.launcher' not in sys.modules\n", cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
