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

from gnn1000 import safefs
from gnn1000.errors import ConfigError, CorruptFileError, RunDirError

try:
    import fcntl
except ImportError:  # Windows: RunDir.lock falls back to filelock, so the CLI still imports and runs
    fcntl = None

# Paths this process holds the lock of: flock locks conflict between two descriptors of one process.
_HELD: dict[Path, object] = {}  # a descriptor (flock) or a filelock.FileLock
_SESSIONS: dict[Path, int] = {}  # path -> how many RunSessions of this process hold it (nested ones)
RUN_FILES = ("config.gin", "metrics.jsonl", "summary.json", "checkpoints")
# Other files gnn1000 writes in a run directory.
OWN_FILES = (".lock", "run-id", "resumes.jsonl", "predictions.csv", "predictions.parquet", "curves.png")


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
        self.identity_file = self.path / "run-id"

    @classmethod
    def new(cls, config_name: str, base: Path = Path("runs")) -> RunDir:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name, n = f"{config_name.replace('/', '-')}-{stamp}", 1
        while (base / name).exists():
            n += 1
            name = f"{config_name.replace('/', '-')}-{stamp}-{n}"
        return cls(base / name)

    @staticmethod
    def _followed(path: Path | str, option: str) -> Path:
        """A run directory given as a symlink to a folder is its target; a dangling link is refused."""
        path = Path(path)
        if path.is_symlink():
            if not path.exists():
                raise ConfigError(f"{option} {str(path)!r} is a symbolic link to {os.readlink(path)}, which does "
                                  f"not exist; point it at an existing folder or give a plain path.")
            return path.resolve()
        return path

    def refuse_links(self) -> None:
        """No file gnn1000 reads or writes in the run is a symlink: a planted one could make it overwrite
        a file outside the run or adopt another run's checkpoint. One paragraph names the first."""
        names = [self.path / name for name in (*RUN_FILES, *OWN_FILES)]
        folder = self.path / "checkpoints"
        if folder.is_dir() and not folder.is_symlink():
            names += sorted(folder.iterdir())
        names += [p for p in (sorted(self.path.glob(".*")) if self.path.is_dir() else [])]
        for name in names:
            safefs.refuse_symlink(name, f"in the run directory {self.path}")

    @classmethod
    def existing(cls, path: Path | str) -> RunDir:
        """A run to resume or evaluate: a folder with a config.gin that holds settings."""
        if str(path) == "":
            raise ConfigError("The run directory is an empty string; give the path of a run directory.")
        run = cls(cls._followed(path, "The run directory"))
        if not run.path.is_dir():
            what = "is a file, not a run directory" if run.path.exists() else "does not exist"
            raise ConfigError(f"Run directory {str(path)!r} {what}.")
        if not run.config.is_file():
            raise ConfigError(f"{str(path)!r} is not a gnn1000 run directory: it has no config.gin.")
        run.refuse_links()
        text = run.config.read_bytes()
        if not any(line.strip() and not line.lstrip().startswith(b"#") for line in text.splitlines()):
            raise ConfigError(f"{run.config} is empty: it should hold the run's operative gin config, "
                              f"which every run writes before its first epoch. Restore it (e.g. from a "
                              f"copy of the config the run was started with) and resume again.")
        return run

    @classmethod
    def for_new_run(cls, path: Path | str, overwrite: bool = False) -> RunDir:
        """``--run-dir``: a folder that holds no run yet; with ``overwrite`` an old run is moved aside."""
        if str(path) == "":
            raise ConfigError("--run-dir is an empty string; give a folder path, or leave --run-dir out "
                              "for runs/<config>-<timestamp>.")
        run = cls(cls._followed(path, "--run-dir"))
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

    # -- ownership: RunSession's primitives ------------------------------------------------------

    def lock(self) -> None:
        """Hold this run directory for the life of this process; a second process gets an error
        naming the holder's PID. Idempotent within one process."""
        key = self.path.resolve()
        if key in _HELD:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise safefs.failure(exc, "create the run directory", self.path) from None
        self.refuse_links()
        if fcntl is None:
            _HELD[key] = self._lock_without_flock()
            return
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | safefs.NOFOLLOW, 0o644)
        except OSError as exc:
            raise safefs.failure(exc, "open the lock file", self.lock_file) from None
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
        for path in (self.config, self.metrics, self.resumes, self.identity_file, self.lock_file):
            path.unlink(missing_ok=True)
        self.release()
        for folder in (self.path / "checkpoints", self.path):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: someone else's files stay

    # -- identity: a checkpoint belongs to its run -------------------------------------------------

    def new_identity(self) -> str:
        """A new run's random id, written beside its records and into each of its checkpoints."""
        import uuid

        identity = uuid.uuid4().hex
        safefs.write_atomic(self.identity_file, f"{identity}\n".encode())
        return identity

    def identity(self) -> str | None:
        """This run's id; None for a run from before ids were recorded."""
        try:
            return self.identity_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def check_belongs(self, state: dict, path: Path) -> None:
        """Refuse a checkpoint another run wrote (copied or linked in): its history would replace this one's."""
        own, theirs = self.identity(), state.get("run_id")
        if own and theirs and own != theirs:
            raise CorruptFileError(
                f"Checkpoint {path} belongs to another run (run id {theirs}; {self.path} is run {own}, see its "
                f"run-id file): it was copied or linked in, and using it would put that run's weights and "
                f"history in this one. Restore this run's own checkpoint, or evaluate the other run itself.")

    # -- records ---------------------------------------------------------------------------------

    def read_metrics(self, repair: bool = True) -> list[dict]:
        """The epoch records; a torn last line (a kill mid-append) is dropped with a warning."""
        if not self.metrics.is_file():
            return []
        lines = [line for line in self.metrics.read_text(errors="replace").splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                    raise json.JSONDecodeError("not an epoch record", line, 0)
                records.append(record)
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
        safefs.write_atomic(self.metrics, "".join(json.dumps(r) + "\n" for r in records).encode())

    def append_metrics(self, record: dict) -> None:
        safefs.append_line(self.metrics, json.dumps(record) + "\n")

    def read_resumes(self) -> list[dict]:
        if not self.resumes.is_file():
            return []
        return [json.loads(line) for line in self.resumes.read_text().splitlines() if line.strip()]

    def record_resume(self, entry: dict) -> None:
        safefs.append_line(self.resumes, json.dumps(entry, default=repr) + "\n")


class RunSession:
    """The one owner of a run directory while a run (or a group of repeats) trains in it.

    ``with RunSession(run, new=True)`` claims a folder for a new run (lock, then check under the lock
    that no other run got there first); ``new=False`` locks an existing run to resume it. Leaving the
    block always releases the lock; a new run that failed before its first checkpoint is removed
    (:meth:`RunDir.discard_unstarted`) when it failed before writing its config or with one of
    ``discard_on`` (default: a bad setting found in the first epoch), so no half run is left behind.
    Sessions nest: an inner session of a folder this process already holds (``Experiment.fit`` inside
    ``gnn1000 train``'s) joins the outer one, which alone locks, discards and releases.
    """

    def __init__(self, run: RunDir, *, new: bool, discard_on: tuple[type[BaseException], ...] = (ConfigError,)):
        self.run = run
        self.new = new
        self.discard_on = discard_on
        self._key: Path | None = None

    def __enter__(self) -> RunDir:
        self._key = self.run.path.resolve()
        if not _SESSIONS.get(self._key):
            if self.new:
                self.run.claim()  # refuses a folder another run took
            else:
                self.run.lock()
        _SESSIONS[self._key] = _SESSIONS.get(self._key, 0) + 1
        return self.run

    def __exit__(self, kind, exc, traceback) -> bool:
        _SESSIONS[self._key] -= 1
        if _SESSIONS[self._key]:
            return False  # an outer session holds it still
        del _SESSIONS[self._key]
        try:
            if exc is not None and self.new and (isinstance(exc, self.discard_on) or not self.run.config.exists()):
                self.run.discard_unstarted()  # only a run without a checkpoint: no work is lost
        finally:
            self.run.release()
        return False
