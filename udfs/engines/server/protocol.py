"""What an engine server and its clients share: the wire format, the server's address on the
node, and the process whose life bounds the server's.

Messages are pickled tuples, each preceded by its length (8 bytes, network order), over a Unix
domain socket: both ends are the same Python with the same modules (the server is started with
the client's ``sys.path``), so requests (with their PIL images), generations and exceptions
cross as they are. An exception that does not survive pickling crosses as a ``RuntimeError``
naming its type and message.

Client -> server: ``("open", OpenSpec)``, ``("poll", [Request, ...])``, ``("close",)``,
``("stop",)``. Server -> client: ``("opened", dict)``, ``("polled", results, EngineSample|None)``,
``("closed",)``, ``("dead", message)`` (the engine died; it was discarded) or
``("error", exception)`` (raise it in the task).
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("!Q")
# Unix socket paths are limited to 108 bytes (107 and the terminating NUL) on Linux.
_MAX_SOCKET_PATH = 100
# Ancestors walked to find the executor's JVM (worker -> daemon -> JVM is three steps).
_MAX_ANCESTORS = 32


class ConnectionClosed(EOFError):
    """The other end closed the connection (or exited) before a whole message arrived."""


def send(conn: socket.socket, message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    conn.sendall(_HEADER.pack(len(payload)) + payload)


def receive(conn: socket.socket) -> Any:
    (size,) = _HEADER.unpack(_read_exactly(conn, _HEADER.size))
    return pickle.loads(_read_exactly(conn, size))


def _read_exactly(conn: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = conn.recv_into(view[got:], size - got)
        if count == 0:
            raise ConnectionClosed(f"connection closed after {got} of {size} bytes")
        got += count
    return buffer


def portable_error(err: BaseException) -> BaseException:
    """``err`` if it survives pickling as itself, else a ``RuntimeError`` that names it."""
    try:
        copy = pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001 - any pickling failure: send a description instead
        return RuntimeError(f"{type(err).__name__}: {err}")
    return copy if type(copy) is type(err) else RuntimeError(f"{type(err).__name__}: {err}")


@dataclass(frozen=True)
class OpenSpec:
    """What a client asks of a server when it opens a stream: the engine (factory named
    ``module:qualname``, None for the backend registry, and its settings as JSON data) and the
    task it serves (its GPU addresses, for the server to check and for the logs)."""

    factory: str | None
    engine: dict[str, Any]
    images: dict[str, Any]
    task_gpus: tuple[str, ...] | None
    task: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessId:
    """A process, told apart from a later one that reuses its pid by its start time
    (``/proc/<pid>/stat`` field 22; empty where there is no ``/proc``)."""

    pid: int
    started: str

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        stat = _stat(pid)
        return cls(pid, stat[3] if stat else "")

    def alive(self) -> bool:
        stat = _stat(self.pid)
        if stat is None:
            return not Path("/proc").is_dir() and _signalable(self.pid)
        return stat[1] not in ("Z", "X") and (not self.started or stat[3] == self.started)


def _signalable(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat(pid: int) -> tuple[str, str, int, str] | None:
    """(command, state, parent pid, start time) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command sits in parentheses and may itself hold spaces or parentheses.
    command = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return command, fields[0], int(fields[1]), fields[19]


def executor_process() -> ProcessId:
    """The process an engine server must not outlive: the nearest Java ancestor of this process
    (the executor's JVM; the driver's JVM in local mode), else this process's parent."""
    pid = os.getpid()
    for _ in range(_MAX_ANCESTORS):
        stat = _stat(pid)
        if stat is None:
            break
        command, _, parent, started = stat
        if command == "java" and pid != os.getpid():
            return ProcessId(pid, started)
        if parent <= 1:
            break
        pid = parent
    return ProcessId.of(os.getppid())


@dataclass(frozen=True)
class ServerAddress:
    """Where the engine server of one (executor, GPU) slot lives on a node: its socket, the lock
    it holds for its whole life (so a slot never has two servers, hence a GPU never two
    engines), the lock its starters take, and its log."""

    folder: Path
    name: str

    @classmethod
    def for_slot(cls, owner: ProcessId, gpus: tuple[str, ...] | None,
                 folder: Path | None = None) -> ServerAddress:
        """The address of the server that ``owner``'s tasks given ``gpus`` share (one per
        executor when there are no GPUs)."""
        slot = "gpu" + "_".join(_safe(g) for g in gpus) if gpus else "cpu"
        name = f"e{owner.pid}-{_safe(owner.started)}-{slot}"
        return cls(folder or _default_folder(len(name)), name)

    @property
    def socket(self) -> Path:
        return self.folder / f"{self.name}.sock"

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.name}.lock"

    @property
    def starting(self) -> Path:
        return self.folder / f"{self.name}.start"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text))


def _default_folder(name_length: int) -> Path:
    """A folder private to this user on the node's local disk, short enough for a socket
    path (``TMPDIR`` if it is, else ``/tmp``)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for base in (tempfile.gettempdir(), "/tmp"):
        folder = Path(base) / f"candid-engines-{uid}"
        if len(str(folder)) + name_length + 6 <= _MAX_SOCKET_PATH:
            break
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder
