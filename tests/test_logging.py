"""gnn1000's messages go through the logging module: a Python user silences them with the standard
calls, and the CLI's -q / -v set the level."""

import subprocess
import sys

from gnn1000.cli import main as cli_main

from helpers import bind_args


def test_a_python_user_silences_a_run_with_the_standard_logging_calls(tmp_path):
    script = f"""
import logging, sys, torch
torch.set_num_threads(1)
from gnn1000 import ResGNN
from gnn1000.experiment import Experiment, ExperimentConfig
from gnn1000.registry import resolve

def run(name):
    data = resolve("datasets", "synthetic-proteins")(num_nodes=60, avg_degree=4, num_tasks=2)
    model = ResGNN(data.num_features, 8, data.num_outputs, 1, edge_dim=data.edge_dim)
    Experiment(model, data, resolve("samplers", "full_batch")(), ExperimentConfig(epochs=1, device="cpu"),
               {str(tmp_path)!r} + "/" + name, progress=False).fit()

run("loud")
print("--- silenced ---", flush=True)
logging.getLogger("gnn1000").setLevel(logging.ERROR)
run("quiet")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loud, quiet = result.stdout.split("--- silenced ---\n")
    assert "epoch    1/1 | loss" in loud  # unconfigured logging: the epochs are shown, as before
    assert quiet == ""
    assert "epoch" not in result.stderr


def test_cli_quiet_leaves_the_result_and_verbose_keeps_the_messages(tmp_path, tiny, one_thread, capsys):
    tiny = [*tiny, "experiment.epochs = 1"]
    assert cli_main(["train", "-q", "--run-dir", str(tmp_path / "q"), "--no-progress", *bind_args(tiny)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("final test rocauc:")
    assert cli_main(["-v", "train", "--run-dir", str(tmp_path / "v"), "--no-progress", *bind_args(tiny)]) == 0
    out = capsys.readouterr().out
    assert "run directory:" in out and "epoch    1/1" in out and "final test rocauc:" in out
