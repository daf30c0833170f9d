"""Writes that a run directory cannot turn against its user, and filesystem failures as one paragraph.

A run directory may come from somebody else (shared, downloaded): a symlink planted in it must never
make gnn1000 write through it. Temporaries are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` after
removing whatever has their name (the link itself, never its target), and results are renamed into
place, which replaces a name rather than following it. A disk that fills or a folder that refuses
leaves the file that was there before untouched and becomes a :class:`StorageError`.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from gnn1000.errors import Gnn1000Error

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class StorageError(Gnn1000Error, OSError):
    """The filesystem refused a write gnn1000 needed (no space, no permission, read-only)."""


def _advice(exc: OSError, folder: Path) -> str:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        try:
            free = f"{shutil.disk_usage(folder).free:,} bytes are free there"
        except OSError:
            free = "the free space could not be read"
        return f"the disk is full ({free}); free some space and run again"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "you may not write there; choose a folder you own, or fix its permissions"
    if exc.errno == errno.EROFS:
        return "the filesystem is read-only; choose a writable folder"
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link, which gnn1000 never writes through; remove the link"
    return "check the folder and run again"


def failure(exc: OSError, what: str, path: Path | str, needed: int | None = None) -> StorageError:
    """One paragraph for an OSError met while doing ``what`` ('write', 'create', 'lock', ...) at ``path``."""
    path = Path(path)
    reason = exc.strerror or str(exc) or type(exc).__name__
    size = f" (it needed {needed:,} bytes)" if needed is not None else ""
    return StorageError(f"Could not {what} {path}{size}: {reason}; {_advice(exc, path.parent)}. "
                        f"Files that were there before are unchanged.")


def refuse_symlink(path: Path, what: str = "") -> None:
    """A planted symlink where gnn1000 writes or reads a run's file is refused, naming its target."""
    if os.path.islink(path):
        target = os.readlink(path)
        raise StorageError(
            f"{path} is a symbolic link (to {target}){' ' + what if what else ''}; gnn1000 never reads or "
            f"writes a run's files through a link, since a run directory from elsewhere could make it "
            f"overwrite or adopt files outside the run. Remove the link (or replace it with a copy of the file) "
            f"and run again.")


def open_temporary(path: Path) -> int:
    """A new file descriptor for the temporary ``path``: whatever had that name is removed first,
    and the file is created fresh, never through a link."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644)


def write_atomic(path: Path | str, data: bytes | Callable[[BinaryIO], None], *, fsync: bool = False,
                 what: str = "write") -> None:
    """Replace ``path`` whole with ``data`` (bytes, or a function that writes to a binary file object):
    a temporary beside it, then a rename. On any failure the temporary is removed and ``path`` keeps
    its old content; an OSError becomes a :class:`StorageError` naming ``path``."""
    path = Path(path)
    refuse_symlink(path)
    tmp = path.with_name(f".{path.name}.tmp")
    needed = len(data) if isinstance(data, (bytes, bytearray)) else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(open_temporary(tmp), "wb") as f:
            if isinstance(data, (bytes, bytearray)):
                f.write(data)
            else:
                data(f)  # a library writer (pandas, matplotlib, numpy) writes into the fresh file
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        if isinstance(exc, StorageError):
            raise
        raise failure(exc, what, path, needed) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def append_line(path: Path, line: str) -> None:
    """Append one line to ``path``, never through a link."""
    refuse_symlink(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise failure(exc, "append to", path) from None


def fs_error_paragraph(exc: OSError) -> str:
    """Any other OSError that reaches the CLI, as one paragraph naming the path."""
    name = exc.filename or ""
    what = f" {name}" if name else ""
    other = f" -> {exc.filename2}" if getattr(exc, "filename2", None) else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    folder = Path(name).parent if name else Path(".")
    return f"a filesystem operation on{what}{other} failed: {reason}; {_advice(exc, folder)}."


def check_private_tree(folder: Path | str, what: str, option: str) -> None:
    """Refuse ``folder`` when it or anything in it belongs to another user or may be written by
    others (the rule ssh applies to its keys): restoring it would unpickle what they put there."""
    import stat

    folder = Path(folder)
    uid = os.getuid()
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = os.lstat(path)
        if info.st_uid != uid:
            reason = f"belongs to user id {info.st_uid}, not to you (user id {uid})"
        elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not stat.S_ISLNK(info.st_mode):
            reason = f"may be written by {'others' if info.st_mode & stat.S_IWOTH else 'its group'} (mode {stat.filemode(info.st_mode)})"
        else:
            continue
        raise StorageError(
            f"{option} refuses {folder}: {path} {reason}. Restoring {what} unpickles the files in it, which "
            f"would run code whoever wrote them chose, so gnn1000 restores only a folder you own that nobody "
            f"else may write (as ssh does for its keys). If you trust it, take it over: "
            f"'chown -R $USER {folder} && chmod -R go-w {folder}'.")
