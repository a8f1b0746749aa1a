"""What a person running ``candid`` sees, and where everything else goes.

A command prints a few lines per phase and one live progress line. The output of Ivy, Spark,
vLLM, torch and transformers, in the driver and in the Python workers, goes to
``build/logs/<run>/candid.log``, whose path is printed first; ``--verbose`` streams that log to
the terminal as well. Jobs report through a ``Reporter``: the base class only logs (notebooks,
tests, library use); ``ConsoleReporter`` prints.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from jobs.commandline.progress import RowProgress

log = logging.getLogger("candid")

DEFAULT_LOG_ROOT = "build/logs"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# How often --verbose copies new log lines to the terminal.
TAIL_INTERVAL_S = 0.2


class Reporter:
    """Where a job reports its phases and its row progress. This base class only logs."""

    def phase(self, text: str) -> None:
        """A line that says what the job does now (ingest done, chunk 3/10 committed...)."""
        log.info(text)

    def rows(self, total: int, label: str) -> RowProgress:
        """A progress tracker for ``total`` rows; close it when the rows are done."""
        return RowProgress(total, label, out=None)


class ConsoleReporter(Reporter):
    """Prints phases and a live progress line to the console (and logs them)."""

    def __init__(self, out: TextIO, interval_s: float = 30.0):
        self.out = out
        self.interval_s = interval_s

    def phase(self, text: str) -> None:
        log.info(text)
        print(text, file=self.out, flush=True)

    def rows(self, total: int, label: str) -> RowProgress:
        return RowProgress(total, label, out=self.out, interval_s=self.interval_s)


@dataclass(frozen=True)
class RunLog:
    """A command's log file and the console streams that bypass it."""

    path: Path
    out: TextIO
    err: TextIO


@contextmanager
def run_log(command: str, verbose: bool, root: str | Path = DEFAULT_LOG_ROOT) -> Iterator[RunLog]:
    """Send this process's stderr, Python logging and warnings to a fresh log file for the
    duration of a command; the yielded ``err`` still reaches the terminal. With ``verbose``
    the log is copied to the terminal as it grows. Everything is restored on exit."""
    path = _new_log_path(Path(root), command)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stderr.flush()
    saved_err = os.dup(2)
    err, own_err = _terminal_stream(sys.stderr, saved_err)
    os.dup2(target, 2)
    # Writers that hold sys.stderr rather than fd 2 (a notebook's or pytest's stream) too.
    saved_stream, sys.stderr = sys.stderr, open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    restore_logging = _log_to_file(path)
    tail = _LogTail(path, err) if verbose else None
    try:
        yield RunLog(path=path, out=sys.stdout, err=err)
    finally:
        sys.stderr.flush()
        if tail is not None:
            tail.stop()
        restore_logging()
        sys.stderr.close()
        sys.stderr = saved_stream
        os.dup2(saved_err, 2)
        os.close(saved_err)
        os.close(target)
        if own_err:
            err.close()


def _terminal_stream(stream: TextIO, saved_fd: int) -> tuple[TextIO, bool]:
    """Where the console's error lines go once fd 2 points at the log: a copy of the saved fd
    when ``stream`` writes to fd 2, else ``stream`` itself (a notebook's or pytest's stream).
    Returns (stream, whether the caller must close it)."""
    try:
        on_fd2 = stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        on_fd2 = False
    if on_fd2:
        return os.fdopen(os.dup(saved_fd), "w", buffering=1), True
    return stream, False


def _new_log_path(root: Path, command: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = root / f"{stamp}-{command}"
    if folder.exists():  # two commands in one second (tests): keep both logs
        folder = root / f"{stamp}-{command}-{os.getpid()}-{time.monotonic_ns()}"
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / "candid.log").resolve()


def _log_to_file(path: Path):
    """Route the root logger (INFO) and Python warnings to ``path``; returns an undo function."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # Libraries that print through their own handlers (vLLM configures "vllm" with a stdout
    # handler and propagate=False once imported) are sent through the root logger too.
    detached = _detached_loggers()
    for logger in detached:
        logger.handlers, logger.propagate = [], True

    def undo() -> None:
        logging.captureWarnings(False)
        handler.close()
        root.handlers, level = saved[0], saved[1]
        root.setLevel(level)
        for logger, (handlers, propagate) in detached.items():
            logger.handlers, logger.propagate = handlers, propagate

    return undo


def _detached_loggers() -> dict[logging.Logger, tuple[list[logging.Handler], bool]]:
    """Loggers that do not propagate to the root but have handlers of their own, with those
    handlers and their propagate flag (to restore)."""
    found = {}
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and not logger.propagate and logger.handlers:
            found[logger] = (logger.handlers[:], logger.propagate)
    return found


class _LogTail:
    """Copies what is appended to a file onto a stream, from a daemon thread (--verbose)."""

    def __init__(self, path: Path, stream: TextIO):
        self._file = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in stop
        self._stream = stream
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="candid-log-tail", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(TAIL_INTERVAL_S):
            self._copy()

    def _copy(self) -> None:
        chunk = self._file.read()
        if chunk:
            self._stream.write(chunk)
            self._stream.flush()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=2)
        self._copy()
        self._file.close()
