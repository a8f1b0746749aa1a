"""A task's side of an engine server: find (or start) the server of the task's GPU and feed it
through a ``RemoteStream``, a ``RequestStream`` like any other.

Starting is race-free across the Python workers of a node: a starter takes ``address.starting``
(``fcntl.flock``, blocking), tries the socket again, and only then starts a server; the server
writes one line on a pipe once it listens (or exits, closing it), so nobody polls. The server
inherits this worker's environment and ``sys.path`` (the executor's ``spark.executorEnv.*``, the
``--py-files`` zips), runs this worker's Python in this worker's directory, sees only the task's
GPUs (``CUDA_VISIBLE_DEVICES``), and starts its own session so that Spark, stopping an idle
worker, does not stop it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from udfs.engines.base import EngineDeadError, EngineSample, Request, RequestStream, StreamResult
from udfs.engines.cache import EngineFactory
from udfs.engines.server.protocol import (
    ConnectionClosed,
    OpenSpec,
    ProcessId,
    ServerAddress,
    receive,
    send,
)
from udfs.settings import EngineSettings, ImageSettings

# Characters of the server's log quoted when it fails to start or dies.
LOG_TAIL_CHARS = 2000


class RemoteStream(RequestStream):
    """A stream on the engine of a server. ``submit`` only queues: the queued requests travel
    with the next ``poll``, so one round trip carries a step's new requests and its results."""

    def __init__(self, conn: socket.socket, opened: dict[str, Any], address: ServerAddress):
        self.capacity, self.depth = opened["capacity"], opened["depth"]
        self.server_pid: int = opened["pid"]
        self.builds: int = opened["builds"]
        self._conn: socket.socket | None = conn
        self._address = address
        self._queued: list[Request] = []
        self._in_flight = 0
        self._sample: EngineSample | None = None

    def submit(self, request: Request) -> None:
        if self._conn is None:
            raise EngineDeadError("the stream to the engine server is closed")
        self._queued.append(request)
        self._in_flight += 1

    def poll(self) -> list[StreamResult]:
        queued, self._queued = self._queued, []
        reply = self._call(("poll", queued))
        results, self._sample = reply[1], reply[2]
        self._in_flight -= len(results)
        return results

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def engine_sample(self) -> EngineSample | None:
        return self._sample

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._queued, self._in_flight = [], 0
        if conn is None:
            return
        try:
            send(conn, ("close",))
            receive(conn)
        except (ConnectionClosed, OSError):
            pass  # a server that is gone has nothing left to abort
        finally:
            conn.close()

    def _call(self, message: tuple) -> tuple:
        if self._conn is None:
            raise EngineDeadError("the stream to the engine server is closed")
        return call(self._conn, message, self._address, on_failure=self._drop)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def call(conn: socket.socket, message: tuple, address: ServerAddress,
         on_failure=lambda: None) -> tuple:
    """Send ``message`` and return the reply; a dead engine or a server that went away raises
    ``EngineDeadError``, an error the server reports is raised as it is."""
    try:
        send(conn, message)
        reply = receive(conn)
    except (ConnectionClosed, OSError) as err:
        on_failure()
        raise EngineDeadError(f"the engine server at {address.socket} went away ({err}); its "
                              f"log ends:\n{log_tail(address)}") from err
    if reply[0] == "dead":
        on_failure()
        raise EngineDeadError(reply[1])
    if reply[0] == "error":
        on_failure()
        raise reply[1]
    return reply


class ServerLink:
    """How one task reaches the engine server of its slot: ``connect`` for the feeder (starts
    the server if needed, opens a stream); ``reset`` is a no-op, as the server discards a dead
    engine itself and the next ``connect`` builds it again."""

    def __init__(self, settings: EngineSettings, image_settings: ImageSettings,
                 factory: EngineFactory | None, task_gpus: tuple[str, ...] | None,
                 owner: ProcessId, task: dict[str, Any] | None = None, folder: Path | None = None):
        self.address = ServerAddress.for_slot(owner, task_gpus, folder)
        self.owner, self.task_gpus = owner, task_gpus
        self.idle_timeout_s = settings.server_idle_timeout_s
        self.spec = OpenSpec(
            factory=factory_name(factory), engine=settings.model_dump(mode="json"),
            images=image_settings.model_dump(mode="json"), task_gpus=task_gpus, task=task or {},
        )

    def connect(self) -> RemoteStream:
        conn = self.dial()
        reply = call(conn, ("open", self.spec), self.address, on_failure=conn.close)
        return RemoteStream(conn, reply[1], self.address)

    def reset(self) -> None:
        """Nothing to do here: the server discarded the dead engine before it answered."""

    def dial(self) -> socket.socket:
        """A connection to the slot's server, started first if none listens."""
        conn = _try_connect(self.address)
        if conn is not None:
            return conn
        fd = os.open(self.address.starting, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # one starter per slot; the others wait here
            conn = _try_connect(self.address)
            if conn is None:
                start_server(self.address, self.owner, self.task_gpus, self.idle_timeout_s)
                conn = _try_connect(self.address)
        finally:
            os.close(fd)  # closing the descriptor releases the lock
        if conn is None:
            raise RuntimeError(f"the engine server at {self.address.socket} started but does "
                               f"not accept connections; its log ends:\n{log_tail(self.address)}")
        return conn

    def stop_server(self) -> bool:
        """Ask the slot's server to stop; False when none was running."""
        return stop_server(self.address)


def stop_server(address: ServerAddress) -> bool:
    """Ask the server at ``address`` to stop; False when none was running."""
    conn = _try_connect(address)
    if conn is None:
        return False
    with conn:
        try:
            send(conn, ("stop",))
            receive(conn)
        except (ConnectionClosed, OSError):
            pass  # it was stopping already
    return True


def factory_name(factory: EngineFactory | None) -> str | None:
    """``module:qualname`` of a module-level factory, which the server imports again."""
    if factory is None:
        return None
    qualname = getattr(factory, "__qualname__", "")
    if not qualname or "<" in qualname:
        raise ValueError(f"an engine factory for an engine server must be a module-level "
                         f"function (module:function), not {factory!r}")
    return f"{factory.__module__}:{qualname}"


def _try_connect(address: ServerAddress) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(address.socket))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    return conn


def start_server(address: ServerAddress, owner: ProcessId, gpus: tuple[str, ...] | None,
                 idle_timeout_s: float) -> int:
    """Start the slot's server and return its pid once it listens."""
    env = dict(os.environ)
    env["PYTHONPATH"] = server_python_path(sys.path)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    read_fd, write_fd = os.pipe()
    command = [sys.executable, "-m", "udfs.engines.server", "--socket", str(address.socket),
               "--lock", str(address.lock), "--owner-pid", str(owner.pid),
               "--owner-started", owner.started, "--gpus", ",".join(gpus or ()),
               "--idle-timeout", str(idle_timeout_s), "--ready-fd", str(write_fd)]
    try:
        with address.log.open("ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, pass_fds=(write_fd,), start_new_session=True,
            )
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        line = ready.readline()  # one line once it listens; nothing if it exits first
    if not line.startswith(b"ready"):
        status = process.wait()
        raise RuntimeError(f"the engine server for GPU(s) {gpus} did not start (exit status "
                           f"{status}); its log ends:\n{log_tail(address)}")
    return process.pid


def server_python_path(path: list[str]) -> str:
    """The worker's ``sys.path`` as the server's ``PYTHONPATH``, less the folders inside a
    ``site-packages`` that packages insert themselves: OpenCV puts ``site-packages/cv2`` on
    ``sys.path``, and in a new interpreter, where ``PYTHONPATH`` comes before the standard
    library, its ``cv2/typing`` package hides ``typing`` and the server dies on start. A package
    that needs such a folder inserts it again when the server imports it."""
    entries = [p for p in path if p]
    packages = [os.path.abspath(p) for p in entries
                if os.path.basename(os.path.normpath(p)) in ("site-packages", "dist-packages")]

    def inside_packages(entry: str) -> bool:
        entry = os.path.abspath(entry)
        return any(entry.startswith(root + os.sep) for root in packages)

    return os.pathsep.join(p for p in entries if not inside_packages(p))


def log_tail(address: ServerAddress) -> str:
    try:
        return address.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"
