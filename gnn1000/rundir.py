"""A run directory belongs to one run: its files, the lock held while it runs, and its records.

One process at a time trains in a run directory (``fcntl.flock`` on ``.lock``: the kernel drops the
lock when the holder dies, so a killed run never leaves a stale lock; where there is no fcntl, as on
Windows, ``filelock``'s OS lock does the same without naming the holder). A new run never lands on an
existing one: ``--overwrite`` moves the old run aside. ``metrics.jsonl`` is rebuilt on resume from
the history the last checkpoint carries, so a kill between checkpoint and record loses nothing.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from datetime import datetime
from pathlib import Path

from gnn1000.errors import ConfigError, RunDirError

try:
    import fcntl
except ImportError:  # Windows: RunDir.lock falls back to filelock, so the CLI still imports and runs
    fcntl = None

# Paths this process holds the lock of: flock locks conflict between two descriptors of one process.
_HELD: dict[Path, object] = {}  # a descriptor (flock) or a filelock.FileLock
RUN_FILES = ("config.gin", "metrics.jsonl", "summary.json", "checkpoints")


class RunDir:
    """The files of one run: operative config, metrics, resume record, summary and checkpoints."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.config = self.path / "config.gin"
        self.metrics = self.path / "metrics.jsonl"
        self.resumes = self.path / "resumes.jsonl"
        self.summary = self.path / "summary.json"
        self.last = self.path / "checkpoints" / "last.pt"
        self.best = self.path / "checkpoints" / "best.pt"
        self.lock_file = self.path / ".lock"

    @classmethod
    def new(cls, config_name: str, base: Path = Path("runs")) -> RunDir:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name, n = f"{config_name.replace('/', '-')}-{stamp}", 1
        while (base / name).exists():
            n += 1
            name = f"{config_name.replace('/', '-')}-{stamp}-{n}"
        return cls(base / name)

    @classmethod
    def existing(cls, path: Path | str) -> RunDir:
        """A run to resume or evaluate: a folder with a config.gin that holds settings."""
        run = cls(Path(path))
        if not run.path.is_dir():
            what = "is a file, not a run directory" if run.path.exists() else "does not exist"
            raise ConfigError(f"Run directory {str(path)!r} {what}.")
        if not run.config.is_file():
            raise ConfigError(f"{str(path)!r} is not a gnn1000 run directory: it has no config.gin.")
        text = run.config.read_bytes()
        if not any(line.strip() and not line.lstrip().startswith(b"#") for line in text.splitlines()):
            raise ConfigError(f"{run.config} is empty: it should hold the run's operative gin config, "
                              f"which every run writes before its first epoch. Restore it (e.g. from a "
                              f"copy of the config the run was started with) and resume again.")
        return run

    @classmethod
    def for_new_run(cls, path: Path | str, overwrite: bool = False) -> RunDir:
        """``--run-dir``: a folder that holds no run yet; with ``overwrite`` an old run is moved aside."""
        run = cls(Path(path))
        if run.path.exists() and not run.path.is_dir():
            raise ConfigError(f"--run-dir {str(path)!r} is an existing file, not a folder; "
                              f"choose a folder path (it is created if missing).")
        if run.holds_a_run():
            if not overwrite:
                raise RunDirError(
                    f"{run.path} already holds a run ({run.describe()}). Continue it with "
                    f"'gnn1000 train --resume {run.path}', choose another --run-dir, or add --overwrite "
                    f"to move the old run aside (to {run.path.name}.old-<timestamp>) and start afresh.")
            run.lock()
            aside = run.path.with_name(f"{run.path.name}.old-{datetime.now():%Y%m%d-%H%M%S}")
            n = 1
            while aside.exists():
                n += 1
                aside = aside.with_name(f"{run.path.name}.old-{datetime.now():%Y%m%d-%H%M%S}-{n}")
            run.release()
            run.path.rename(aside)
            logging.getLogger(__name__).info(f"--overwrite: moved the old run in {run.path} to {aside}")
        return run

    def holds_a_run(self) -> bool:
        return self.path.is_dir() and any((self.path / name).exists() for name in RUN_FILES)

    def describe(self) -> str:
        epochs = len(self.read_metrics(repair=False)) if self.metrics.is_file() else 0
        present = [name for name in RUN_FILES if (self.path / name).exists()]
        return f"{', '.join(present)}; {epochs} epoch record{'s' if epochs != 1 else ''}"

    # -- ownership -------------------------------------------------------------------------------

    def lock(self) -> None:
        """Hold this run directory for the life of this process; a second process gets an error
        naming the holder's PID. Idempotent within one process."""
        key = self.path.resolve()
        if key in _HELD:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            _HELD[key] = self._lock_without_flock()
            return
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"{self.path} is in use by another gnn1000 process (PID {holder}), which "
                              f"holds {self.lock_file}. Wait for it to finish, stop it, or choose another "
                              f"run directory; two runs in one folder would mix their records.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = fd

    def _lock_without_flock(self):
        """filelock's OS lock on the same file; its holder cannot be read while it holds the file."""
        import filelock

        held = filelock.FileLock(self.lock_file)
        try:
            held.acquire(timeout=0)
        except filelock.Timeout:
            raise RunDirError(f"{self.path} is in use by another gnn1000 process, which holds {self.lock_file}. "
                              f"Wait for it to finish, stop it, or choose another run directory; two runs "
                              f"in one folder would mix their records.") from None
        return held

    def release(self) -> None:
        held = _HELD.pop(self.path.resolve(), None)
        if isinstance(held, int):
            os.close(held)  # closing the descriptor drops the flock
        elif held is not None:
            held.release()

    def claim(self) -> None:
        """Lock for a new run and check, under the lock, that no other run got here first."""
        self.lock()
        if self.holds_a_run():
            self.release()
            raise RunDirError(f"{self.path} already holds a run ({self.describe()}); another process "
                              f"wrote it after this one started. Choose another --run-dir.")

    def discard_unstarted(self) -> None:
        """Remove what a new run wrote before failing in its first epoch: no checkpoint, no work."""
        if self.last.exists() or any(self.path.glob("checkpoints/*")):
            return
        for path in (self.config, self.metrics, self.resumes, self.lock_file):
            path.unlink(missing_ok=True)
        self.release()
        for folder in (self.path / "checkpoints", self.path):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: someone else's files stay

    # -- records ---------------------------------------------------------------------------------

    def read_metrics(self, repair: bool = True) -> list[dict]:
        """The epoch records; a torn last line (a kill mid-append) is dropped with a warning."""
        if not self.metrics.is_file():
            return []
        lines = [line for line in self.metrics.read_text(errors="replace").splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i < len(lines) - 1:
                    raise ConfigError(f"{self.metrics} line {i + 1} is not JSON ({line[:60]!r}); only its "
                                      f"last line may be torn by a kill. Repair or remove that line.") from None
                if repair:
                    warnings.warn(f"{self.metrics}: its last line was cut off ({line[:40]!r}...), "
                                  f"probably by a kill mid-write; it is ignored and rewritten from the "
                                  f"checkpoint.", stacklevel=2)
        return records

    def write_metrics(self, records: list[dict]) -> None:
        """Replace metrics.jsonl whole (temporary file and rename)."""
        tmp = self.metrics.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
        os.replace(tmp, self.metrics)

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_resumes(self) -> list[dict]:
        if not self.resumes.is_file():
            return []
        return [json.loads(line) for line in self.resumes.read_text().splitlines() if line.strip()]

    def record_resume(self, entry: dict) -> None:
        with open(self.resumes, "a") as f:
            f.write(json.dumps(entry, default=repr) + "\n")
