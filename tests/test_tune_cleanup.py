"""A killed or interrupted ``gnn1000 tune`` driver leaves no Ray process it started behind it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from test_tune import tiny_search

pytestmark = pytest.mark.slow  # a real local Ray start


def _ray_processes(started: dict[int, psutil.Process]) -> list[psutil.Process]:
    """The driver's children that are still there, less the reaper. A short-lived child (a shell Ray
    2.51 starts) may be gone already: there is nothing of it to wait for."""
    kept = []
    for process in started.values():
        try:
            if "reaper" not in " ".join(process.cmdline()):
                kept.append(process)
        except psutil.NoSuchProcess:
            pass
    return kept


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_killed_or_interrupted_tune_driver_stops_the_ray_it_started(tmp_path, sig):
    search = tiny_search(tmp_path, epochs=50)
    driver = subprocess.Popen([sys.executable, "-m", "gnn1000", "tune", str(search), "--storage",
                               str(tmp_path / "tune")], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    started: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and driver.poll() is None:
        for child in psutil.Process(driver.pid).children(recursive=True):
            started.setdefault(child.pid, child)
        names = {p.name() for p in started.values() if p.is_running()}
        if {"raylet", "gcs_server"} <= names and any(n.startswith("ray::") for n in names):
            break  # Ray is up and runs a trial
        time.sleep(0.2)
    assert driver.poll() is None, "the search ended before it could be killed"
    ray_processes = _ray_processes(started)
    assert any(p.name() == "raylet" for p in ray_processes)
    driver.send_signal(sig)
    driver.wait(timeout=60)
    gone, alive = psutil.wait_procs(ray_processes, timeout=30)
    assert not alive, [(p.pid, p.name()) for p in alive]
