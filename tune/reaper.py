"""The Ray reaper: a watcher the ``gnn1000 tune`` driver starts before it starts a local Ray.

When the driver ends, however it ends (even SIGKILL, which no handler in the driver can catch), its
end of the watcher's stdin closes; the watcher then stops every process it saw the driver start
(raylet, GCS, workers, dashboard) that is still running. It only ever touches the driver's own
descendants, recorded while the driver lived, so another user's Ray on the machine is left alone.
"""

from __future__ import annotations

import select
import subprocess
import sys

import psutil

POLL_SECONDS = 0.5


def start() -> subprocess.Popen:
    """Start the watcher for this process, in its own session so a Ctrl-C to the driver spares it."""
    import os

    # run as a file, not as gnn1000.tune.reaper: importing the package would import Ray (seconds)
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), str(os.getpid())],
                            stdin=subprocess.PIPE, start_new_session=True)


def stop(watcher: subprocess.Popen) -> None:
    """The driver is done: the watcher cleans up whatever Ray left and exits."""
    if watcher.stdin is not None:
        watcher.stdin.close()
    try:
        watcher.wait(timeout=30)
    except subprocess.TimeoutExpired:
        watcher.kill()


def watch(driver_pid: int) -> None:
    import os

    me = os.getpid()
    seen: dict[int, psutil.Process] = {}
    driver = psutil.Process(driver_pid)
    while True:
        try:
            for child in driver.children(recursive=True):
                if child.pid != me:  # the driver started this watcher too
                    seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            break
        readable, _, _ = select.select([sys.stdin], [], [], POLL_SECONDS)
        if readable and not sys.stdin.buffer.read1(1):  # EOF: the driver closed it or died
            break
    # psutil.Process remembers each one's start time: a reused PID is not a process we saw
    alive = [p for p in seen.values() if p.is_running()]
    for process in alive:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, still = psutil.wait_procs(alive, timeout=5)
    for process in still:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


if __name__ == "__main__":
    watch(int(sys.argv[1]))
