"""Every script in examples/ runs, at its --tiny size, as a user would run it."""

import subprocess
import sys
from pathlib import Path

from shared_data import DATA_ROOT, requires

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / script), "--tiny", *args], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@requires("planetoid/Cora")
def test_rev_gnn_cora(tmp_path):
    out = run("rev_gnn_cora.py", "--data", str(DATA_ROOT / "planetoid"), "--work-dir", str(tmp_path))
    assert "Epoch: 002" in out and "RevGNN-2: test accuracy" in out


def test_deq_custom_f():
    out = run("deq_custom_f.py")
    assert "Epoch: 002" in out and "forward solve:" in out and "backward solve:" in out


def test_every_example_is_tested_and_listed_in_the_readme():
    readme = (EXAMPLES.parent / "README.md").read_text()
    for script in EXAMPLES.glob("*.py"):
        assert f"test_{script.stem}" in globals(), f"{script.name} has no test here"
        assert f"examples/{script.name}" in readme, f"README.md does not list {script.name}"
    for package in EXAMPLES.glob("*/pyproject.toml"):  # example packages: tested in their own file
        name = package.parent.name
        assert (Path(__file__).parent / f"test_{name}_example.py").is_file(), f"examples/{name}/ has no test"
        assert f"examples/{name}/" in readme, f"README.md does not list examples/{name}/"
