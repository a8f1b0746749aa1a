"""The engine server process: one engine for one (executor, GPU) slot, served over a Unix
socket to the tasks Spark gives that GPU (``udfs.engines.server.client`` starts it).

It holds ``address.lock`` (``fcntl.flock``) for its whole life: a second server for the same
slot cannot start, so a GPU never holds two engines. The engine is the same one a Python worker
would build (``udfs.engines.cache``, one engine per settings, switched when the settings
change), driven through the same stream (``udfs.engines.stream.open_stream``), so every contract
of the streamed feeding holds here as in-process.

One stream at a time uses the engine (a vLLM stream steps the whole engine, so two would take
each other's outputs): a second client's ``open`` waits until the first closes. Spark assigns a
GPU to one task at a time, so on GPUs nobody waits.

It stops when the process that owns it (the executor's JVM) is gone, when a client sends
``stop``, or after ``idle_timeout_s`` without a client: never left behind after a run.

Run: ``python -m udfs.engines.server --socket ... --lock ... --owner-pid ... ``.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib
import logging
import os
import socket
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from udfs.engines import cache
from udfs.engines.base import Generation, RequestStream
from udfs.engines.failures import FailureLevel, classify_failure, worker_failure
from udfs.engines.server.protocol import (
    ConnectionClosed,
    OpenSpec,
    ProcessId,
    portable_error,
    receive,
    send,
)
from udfs.engines.stream import open_stream
from udfs.settings import EngineSettings, ImageSettings

logger = logging.getLogger("candid.engine_server")
# How often the server looks at its owner and its idle time.
WATCH_INTERVAL_S = 1.0
# Exit status when another server already holds the slot's lock.
SLOT_TAKEN = 3

_serving: dict[str, Any] | None = None


def serving_task() -> dict[str, Any] | None:
    """The task whose stream the engine serves now (its GPU addresses under ``gpus``), None
    outside a stream. For logs and the placement tests' recording engine."""
    return _serving


def load_factory(name: str | None) -> cache.EngineFactory | None:
    """The engine factory a ``module:qualname`` names (None: the backend registry)."""
    if name is None:
        return None
    module, _, qualname = name.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


def engine_is_dead(err: BaseException) -> bool:
    """Whether an error from the engine means it cannot serve again (discard it; the client
    rebuilds it once): an engine-level failure in ``udfs.engines.failures``' terms. The one
    place the server classifies engine errors; everything else is raised in the task, as it
    would be in-process."""
    return classify_failure(err) is FailureLevel.ENGINE


class Session:
    """One client connection: at most one open stream on the engine at a time."""

    def __init__(self, server: EngineServer, conn: socket.socket):
        self.server, self.conn = server, conn
        self.stream: RequestStream | None = None
        self.spec: OpenSpec | None = None

    def run(self) -> None:
        try:
            while True:
                message = receive(self.conn)
                if message[0] == "stop":
                    send(self.conn, ("closed",))
                    self.server.stop()
                    return
                send(self.conn, self.answer(message))
        except (ConnectionClosed, OSError):
            pass  # the task ended or its worker was killed: free the engine for the next one
        finally:
            self.end_stream()

    def answer(self, message: tuple) -> tuple:
        kind = message[0]
        try:
            if kind == "open":
                return self.open(message[1])
            if kind == "poll":
                return self.poll(message[1])
            if kind == "close":
                self.end_stream()
                return ("closed",)
            return ("error", ValueError(f"unknown engine server message {kind!r}"))
        except Exception as err:  # noqa: BLE001 - every engine error goes back to the task
            return self.failed(err)

    def open(self, spec: OpenSpec) -> tuple:
        global _serving
        self.end_stream()
        if spec.task_gpus != self.server.gpus:
            raise RuntimeError(
                f"the task was given GPU(s) {spec.task_gpus} but this engine server serves "
                f"{self.server.gpus}; refusing to run its requests on another task's GPU")
        self.server.engine_lock.acquire()
        self.spec = spec
        _serving = {**spec.task, "gpus": list(spec.task_gpus or ())}
        settings, images, factory = self._engine_args()
        builds = cache.builds(settings, images, factory)
        engine = cache.get_engine(settings, images, factory)
        if cache.builds(settings, images, factory) > builds:
            logger.info("engine server %d built engine %s for %s (build %d) for task %s",
                        os.getpid(), settings.backend, settings.model,
                        cache.builds(settings, images, factory), spec.task)
        self.stream = open_stream(engine)
        return ("opened", {"capacity": self.stream.capacity, "depth": self.stream.depth,
                           "builds": cache.builds(settings, images, factory),
                           "pid": os.getpid()})

    def poll(self, requests: list) -> tuple:
        if self.stream is None:
            raise RuntimeError("poll before open: no stream on this connection")
        for request in requests:
            self.stream.submit(request)
        results = [(key, outcome if isinstance(outcome, Generation) else portable_error(outcome))
                   for key, outcome in self.stream.poll()]
        return ("polled", results, self.stream.engine_sample())

    def failed(self, err: Exception) -> tuple:
        spec = self.spec
        self.end_stream()
        if classify_failure(err) is FailureLevel.WORKER:
            # A broken CUDA context (or an engine that does not import): no engine can be
            # built in this process again, so the server stops, and the task fails with one
            # line for Spark to retry it (a retry on this GPU starts a fresh server).
            self.server.stop()
            return ("error", worker_failure(err))
        if not engine_is_dead(err):
            return ("error", portable_error(err))
        if spec is not None:
            cache.discard_engine(*self._engine_args(spec))
        return ("dead", f"{type(err).__name__}: {err}")

    def _engine_args(self, spec: OpenSpec | None = None):
        spec = spec or self.spec
        assert spec is not None
        return (EngineSettings.model_validate(spec.engine),
                ImageSettings.model_validate(spec.images), load_factory(spec.factory))

    def end_stream(self) -> None:
        global _serving
        if self.spec is None:
            return
        stream, self.stream, self.spec = self.stream, None, None
        if stream is not None:
            stream.close()
        _serving = None
        self.server.engine_lock.release()
        self.server.touch()


class EngineServer:
    """Accepts clients until its owner exits, a client asks it to stop, or it idles too long."""

    def __init__(self, socket_path: Path, lock_path: Path, owner: ProcessId,
                 gpus: tuple[str, ...] | None, idle_timeout_s: float):
        self.socket_path, self.lock_path, self.owner = socket_path, lock_path, owner
        self.gpus, self.idle_timeout_s = gpus, idle_timeout_s
        self.engine_lock = threading.Lock()
        self._clients = 0
        self._last_used = time.monotonic()
        self._state = threading.Lock()
        self._stopping = threading.Event()

    def touch(self) -> None:
        with self._state:
            self._last_used = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()

    def serve(self, ready_fd: int | None) -> int:
        lock_fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.error("another engine server holds %s; exiting", self.lock_path)
            return SLOT_TAKEN
        with suppress(FileNotFoundError):
            self.socket_path.unlink()  # left by a server that was killed
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(16)
        listener.settimeout(WATCH_INTERVAL_S)
        logger.info("engine server %d for GPU(s) %s of process %d listening on %s", os.getpid(),
                    self.gpus, self.owner.pid, self.socket_path)
        if ready_fd is not None:
            os.write(ready_fd, f"ready {os.getpid()}\n".encode())
            os.close(ready_fd)
        try:
            self._accept(listener)
        finally:
            listener.close()
            with suppress(FileNotFoundError):
                self.socket_path.unlink()
            cache.shutdown_all()
            if not self.owner.alive():
                # No task of a finished executor can come back: its slot's files can go (the
                # log stays). While the owner lives, a starter may hold them.
                for path in (self.lock_path, self.lock_path.with_suffix(".start")):
                    with suppress(FileNotFoundError):
                        path.unlink()
        return 0

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                reason = self._reason_to_stop()
                if reason:
                    logger.info("engine server %d stops: %s", os.getpid(), reason)
                    return
                continue
            conn.settimeout(None)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with self._state:
            self._clients += 1
        try:
            with conn:
                Session(self, conn).run()
        finally:
            with self._state:
                self._clients -= 1
                self._last_used = time.monotonic()

    def _reason_to_stop(self) -> str | None:
        if not self.owner.alive():
            return f"its owner, process {self.owner.pid}, exited"
        with self._state:
            idle = time.monotonic() - self._last_used if self._clients == 0 else 0.0
        if idle > self.idle_timeout_s:
            return f"no client for {idle:.0f} s"
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, type=Path)
    parser.add_argument("--lock", required=True, type=Path)
    parser.add_argument("--owner-pid", required=True, type=int)
    parser.add_argument("--owner-started", default="")
    parser.add_argument("--gpus", default="", help="comma-separated; empty: no GPU")
    parser.add_argument("--idle-timeout", type=float, default=1800.0)
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gpus = tuple(g for g in args.gpus.split(",") if g) or None
    server = EngineServer(args.socket, args.lock, ProcessId(args.owner_pid, args.owner_started),
                          gpus, args.idle_timeout)
    status = server.serve(args.ready_fd)
    # Threads an engine leaves behind (vLLM's) must not keep a server of a finished run alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

