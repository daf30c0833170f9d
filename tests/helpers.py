"""Helpers the tests import: tiny sizes for the built-in dataset and the real CLI in a subprocess."""

import os
import subprocess
import sys

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
