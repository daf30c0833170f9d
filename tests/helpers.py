"""Helpers the tests import: tiny sizes for the built-in dataset and the real CLI in a subprocess."""

import os
import subprocess
import sys
import textwrap

# The built-in dataset at a size where an epoch takes milliseconds.
TINY = [
    "experiment.architecture = 'resgnn'",  # the default job is a RevGNN; the tiny job stays the 2-layer ResGNN
    "experiment.dataset = 'synthetic-proteins'",  # the default job's is infection; the tiny job keeps this one
    "experiment.compare_step_memory = []",
    "synthetic_proteins.num_nodes = 240",
    "synthetic_proteins.avg_degree = 8",
    "synthetic_proteins.num_tasks = 6",
    "resgnn.hidden_channels = 16",
    "resgnn.num_layers = 2",
    "experiment.epochs = 3",
    "experiment.device = 'cpu'",
]


def bind_args(bindings):
    return [arg for b in bindings for arg in ("--bind", b)]


def run_gnn1000(args, cwd=None, env_extra=None, timeout=300):
    """The real console entry point in a fresh interpreter."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "gnn1000", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_distribution(root, dist, module, files, entry_points, group="gnn1000.operators"):
    """The source of a real third-party distribution ``dist`` (package ``module`` with ``files``)
    declaring ``entry_points`` (name -> "module:object") in the entry-point group ``group``."""
    src = root / dist
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text("")
    for name, text in files.items():
        (src / module / name).write_text(text)
    eps = "\n".join(f'{name} = "{target}"' for name, target in entry_points.items())
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "0.1.0"
        [project.entry-points."{group}"]
        """) + eps + "\n")
    return src


def install_distributions(site, *sources):
    """pip-installs the distributions at ``sources`` into the private site directory ``site``."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(site), *map(str, sources)],
                   check=True, capture_output=True, text=True)
    return site
