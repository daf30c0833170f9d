"""examples/operator_plugin, installed as a user would into a fresh virtual environment next to gnn1000:
its operator and norm are found through entry points alone, by `gnn1000 list`, `gnn1000 train` and the
Ray workers of `gnn1000 tune`.

The fresh venv sees this environment's packages through a .pth file (torch and Ray are not installed
again) and gets only the example, built offline; nothing is written into this environment.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import torch

from helpers import bind_args

pytestmark = pytest.mark.slow  # a venv, an offline build and a real local Ray: about a minute

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "operator_plugin"
DISTRIBUTION = "gnn1000-example-operator"
# The shipped configs at a size where an epoch takes a fraction of a second.
TINY = [
    "synthetic_proteins.num_nodes = 120",
    "experiment.epochs = 2",
    "experiment.device = 'cpu'",
    "revgnn.num_layers = 2",
    "revgnn.hidden_channels = 16",
    "gatv2.heads = 2",
]
# Ray on the loopback interface only, sized for the test, then the CLI on the Ray already running.
TUNE_DRIVER = """
import sys, ray
ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, num_gpus=0, include_dashboard=False,
         log_to_driver=False)
from gnn1000.cli import main
try:
    code = main(sys.argv[1:])
finally:
    ray.shutdown()
sys.exit(code)
"""


def main_site_dirs() -> list[str]:
    """Where this environment's packages (torch, Ray, gnn1000's editable finder) live."""
    return sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})


class PluginVenv:
    """The fresh venv with the example installed, and its interpreter run as a user's shell would."""

    def __init__(self, root: Path):
        self.root = root
        self.python = str(root / "venv" / "bin" / "python")
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1",
                    "GNN1000_CACHE": str(root / "cache"), "PIP_CONFIG_FILE": os.devnull}
        self.env.pop("RAY_ADDRESS", None)  # never join a Ray cluster someone else runs here

    def run(self, *args: str, timeout: int = 300, code: int = 0) -> subprocess.CompletedProcess:
        result = subprocess.run([self.python, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == code, f"{args[:4]} exited {result.returncode}:\n{result.stderr[-3000:]}"
        return result

    def gnn1000(self, *args: str, timeout: int = 300, code: int = 0) -> subprocess.CompletedProcess:
        return self.run("-m", "gnn1000", *args, timeout=timeout, code=code)


@pytest.fixture(scope="module")
def main_env_before() -> dict[str, list[str]]:
    """What this environment holds before the example is installed anywhere."""
    return {site: sorted(os.listdir(site)) for site in main_site_dirs()}


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory, main_env_before) -> PluginVenv:
    root = tmp_path_factory.mktemp("plugin")
    venv = PluginVenv(root)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    site = subprocess.run([venv.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # addsitedir, not a bare path: it also runs that folder's .pth files (gnn1000's editable finder).
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in main_site_dirs())
    Path(site, "_gnn1000_env.pth").write_text(lines)
    source = root / "operator_plugin"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # pip builds in the source folder, hence the copy; offline, and no dependency reinstalled.
    venv.run("-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation",
             "--no-cache-dir", str(source))
    return venv


def test_gnn1000_list_shows_the_plugins_operator_and_norm_with_their_distribution(plugin_venv):
    sections: dict[str, dict[str, str]] = {}
    for line in plugin_venv.gnn1000("list").stdout.splitlines():  # every kind: one interpreter start
        if line.startswith("  "):
            rows[line.split()[0]] = line
        else:
            rows = sections.setdefault(line.rstrip(":"), {})
    operators, norms = sections["operators"], sections["norms"]
    assert f"distribution {DISTRIBUTION} 0.1.0" in operators["gatv2"]
    assert operators["gatv2"].rstrip().endswith("gnn1000_example_operator.operators:GATv2")
    assert f"distribution {DISTRIBUTION} 0.1.0" in norms["pairnorm"]
    assert norms["pairnorm"].rstrip().endswith("gnn1000_example_operator.norms:PairNorm")
    assert "built-in" in operators["gen"] and "built-in" in norms["layernorm"]  # the built-ins stay beside them


def test_gnn1000_train_builds_the_model_from_the_plugins_gin_file(plugin_venv):
    run = plugin_venv.root / "run"
    plugin_venv.gnn1000("train", str(EXAMPLE / "configs" / "revgnn-gatv2.gin"), "--run-dir", str(run),
                        "--no-progress", *bind_args(TINY))
    operative = (run / "config.gin").read_text()
    # The operative config holds the parameters of what was built: the plugin's operator and norm.
    for line in ("revgnn.operator = 'gatv2'", "revgnn.norm = 'pairnorm'", "gatv2.heads = 2", "pairnorm.scale = 1.0"):
        assert line in operative, line
    weights = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]
    attention = [name for name in weights if name.endswith("conv.conv.att")]  # GATv2Conv's one attention vector
    assert attention and weights[attention[0]].shape[1] == 2  # two heads
    assert (run / "summary.json").is_file()


def test_a_bad_plugin_option_is_one_paragraph_and_exit_2(plugin_venv):
    """The plugin checks its own options with gnn1000's helpers: 8 channels per group cannot take 3 heads."""
    run = plugin_venv.root / "refused"
    result = plugin_venv.gnn1000("train", str(EXAMPLE / "configs" / "revgnn-gatv2.gin"), "--run-dir", str(run),
                                 "--no-progress", *bind_args([*TINY, "gatv2.heads = 3"]), code=2)
    message = result.stderr.strip()
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    assert "gatv2: out_channels=8 must be divisible by heads=3" in message and "[1, 2, 4, 8]" in message
    assert not run.exists()  # refused before the run directory was made


def test_gnn1000_tune_chooses_between_the_plugins_operator_and_a_built_in_one(plugin_venv):
    storage = plugin_venv.root / "tune"
    plugin_venv.run("-c", TUNE_DRIVER, "tune", str(EXAMPLE / "configs" / "search-operator.gin"),
                    "--num-samples", "1", "--storage", str(storage), *bind_args([*TINY, "search.grace_period = 1"]),
                    timeout=600)
    (search,) = storage.iterdir()
    with open(search / "results.csv") as f:
        trials = list(csv.DictReader(f))
    assert sorted(t["revgnn.operator"] for t in trials) == ["gatv2", "gen"]  # the grid: one trial each
    assert all(int(t["epochs"]) >= 1 for t in trials)  # both trained in their Ray workers
    best = max(trials, key=lambda t: float(t["valid_rocauc"]))
    assert f"revgnn.operator = '{best['revgnn.operator']}'" in (search / "best.gin").read_text()


def test_the_main_environment_is_left_as_it_was(plugin_venv, main_env_before):
    assert {site: sorted(os.listdir(site)) for site in main_site_dirs()} == main_env_before
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution(DISTRIBUTION)
