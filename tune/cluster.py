"""Joining or starting the Ray that ``gnn1000 tune`` and ``gnn1000 train --workers`` run on."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import ray

from gnn1000.errors import ConfigError
from gnn1000.tune import reaper

REPORT_INTERVAL_S = 0.25  # how often a Ray Train controller of a Ray started here collects reports


def check_address(address: str | None) -> None:
    """A HOST:PORT where nothing listens fails in seconds, naming it (Ray itself retries ~30 s)."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not HOST:PORT (or 'auto', 'local', ray://HOST:PORT).")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            reply = _http2_reply(connection)
    except OSError as exc:
        raise ConfigError(f"--address {address}: no Ray head answers at {host}:{port} "
                          f"({exc.strerror or exc}). Check the address, start a head there with "
                          f"'ray start --head --port {port}', or leave --address out to run a local Ray.") from None
    if len(reply) < 4 or reply[3] != _SETTINGS:  # Ray would retry against it without end
        heard = f"it replied {reply[:24]!r}" if reply else "it sent nothing back within 5 s"
        raise ConfigError(f"--address {address}: something listens at {host}:{port}, but it is not a Ray head "
                          f"({heard}; a Ray head speaks gRPC). Check the port (a head's is 6379 unless "
                          f"'ray start --port' chose another), or leave --address out to run a local Ray.")


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
_SETTINGS = 0x04


def _http2_reply(connection: socket.socket) -> bytes:
    """The first bytes a server sends after an HTTP/2 client preface: a gRPC server (Ray's GCS)
    answers with a SETTINGS frame at once; a plain HTTP server with text, or nothing."""
    connection.sendall(_PREFACE)
    try:
        return connection.recv(64)
    except TimeoutError:
        return b""


def ray_cause(error: BaseException) -> BaseException:
    """The exception a Ray task or worker raised, not Ray's wrapping of it (Ray 2.51 wraps it once
    more, in UserExceptionWithTraceback; 2.60 does not)."""
    cause = getattr(error, "cause", None) or error
    return getattr(cause, "_base_exc", cause)


@contextlib.contextmanager
def ray_session(address: str | None, **init_kwargs) -> Iterator[None]:
    """Ray for the body: the one already initialised, the cluster at ``address`` ('auto' or
    HOST:PORT; None: the one 'ray start' runs here, else a new one), or with 'local' always a new
    local Ray sized by ``init_kwargs`` (e.g. num_cpus). A Ray started here is shut down afterwards,
    and reaped if this driver is killed."""
    check_address(address)
    started = not ray.is_initialized()
    watcher = reaper.start() if started else None  # stops the Ray this driver starts, if it is killed
    try:
        if started:
            # a Ray started here passes its environment on: its Ray Train controllers collect reports
            # every 0.25 s, not 2 s, since each `--workers` epoch waits until its report is copied
            os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(REPORT_INTERVAL_S))
            try:
                ray.init(address=address, **(init_kwargs if address == "local" else {}))
            except ConnectionError as exc:
                raise ConfigError(f"--address {address}: could not join a Ray cluster there ({exc}).") from None
        yield
    finally:
        if started:
            ray.shutdown()
            reaper.stop(watcher)
