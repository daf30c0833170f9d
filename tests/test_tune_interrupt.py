"""Ctrl-C of ``gnn1000 tune``: exit 130, the cut-short trials named interrupted, no best.gin, and the
command that continues the search."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # a real local Ray start

SEARCH = """
include 'tune/resgnn.gin'
synthetic_proteins.num_nodes = 200
experiment.epochs = 500
resgnn.hidden_channels = 16
resgnn.num_layers = 2
search.num_samples = 3
search.scheduler = 'fifo'
search.space = {'resgnn.dropout': ('uniform', 0.0, 0.5)}
"""


def test_an_interrupted_search_exits_130_names_its_trials_and_writes_no_best_gin(tmp_path):
    pytest.importorskip("ray")
    search = tmp_path / "search.gin"
    search.write_text(SEARCH)
    storage = tmp_path / "tune"
    log = tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen([sys.executable, "-m", "gnn1000", "tune", str(search), "--storage", str(storage)],
                                  cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:  # until a trial has reported an epoch
            if any(p.stat().st_size for p in storage.glob("search-*/train_trial_*/result.json")):
                break
            time.sleep(0.5)
        assert driver.poll() is None, log.read_text()[-3000:]
        driver.send_signal(signal.SIGINT)
        code = driver.wait(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    said = log.read_text()
    assert code == 130, said[-3000:]
    [folder] = storage.glob("search-*")
    assert f"search {folder.name} was interrupted: " in said
    assert f"Continue the search with: gnn1000 tune {search} --resume --storage {storage}" in said
    assert not (folder / "best.gin").exists()  # one trial's best would pass for the search's answer
    table = pd.read_csv(folder / "results.csv")
    assert len(table) in (2, 3) and set(table["status"]) == {"interrupted"}, table  # 2 run at once on 2 CPUs
    assert "stopped early" not in set(table["status"]), table
    assert "Traceback" not in said, said[-3000:]
