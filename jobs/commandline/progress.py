"""A live progress line for rows: done / total, images/s, ETA, ok / error counts.

On a terminal, tqdm redraws one line in place. Where stdout is not a terminal (CI, spark-submit
logs, a notebook's captured output) the same figures are printed as plain lines, at most one per
``interval_s`` plus the final one, so a log stays readable. Without an output stream the lines
go to the ``candid.progress`` logger.

While a Spark action runs, the executors' finished tasks report their rows per status through
an accumulator (``counting_statuses``), which the driver polls (``polling``): the line moves task
by task, and committed rows replace those figures after each chunk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO, TypeVar

from pyspark.accumulators import AccumulatorParam

if TYPE_CHECKING:
    import pandas as pd
    from pyspark import Accumulator

log = logging.getLogger("candid.progress")

# How often the driver reads the rows that finished tasks reported.
POLL_INTERVAL_S = 1.0
T = TypeVar("T")


class RowProgress:
    """Thread-safe progress of ``total`` rows; ``update`` from any thread, ``close`` once."""

    def __init__(self, total: int, label: str, out: TextIO | None, interval_s: float = 30.0):
        self.total = max(0, int(total))
        self.label = label
        self.done = 0
        self.ok = 0
        self.errors = 0
        self.note = ""  # e.g. "engine busy 97%": shown at the end of the line
        self._out = out
        self._interval_s = interval_s
        self._started = time.monotonic()
        self._last_line = float("-inf")
        self._lock = threading.Lock()
        self._bar = _tqdm_bar(self.total, label, out) if out is not None and _is_tty(out) else None

    def update(
        self, done: int, ok: int | None = None, errors: int | None = None, note: str | None = None
    ) -> None:
        """Set the rows done so far (and the ok / error counts and the note when known)."""
        with self._lock:
            self.done = min(int(done), self.total) if self.total else int(done)
            self.ok = self.ok if ok is None else int(ok)
            self.errors = self.errors if errors is None else int(errors)
            self.note = self.note if note is None else note
            self._render(final=False)

    def close(self) -> None:
        """Draw the last state (always printed, whatever the interval)."""
        with self._lock:
            self._render(final=True)
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The figures as one plain line."""
        rate = self.rate
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 and left > 0 else ("0s" if left <= 0 else "?")
        note = f", {self.note}" if self.note else ""
        return (
            f"{self.label}: {self.done}/{self.total} rows, {rate:.1f} images/s, ETA {eta}, "
            f"ok {self.ok}, errors {self.errors}{note}"
        )

    def _render(self, final: bool) -> None:
        if self._bar is not None:
            self._bar.n = self.done
            note = f", {self.note}" if self.note else ""
            self._bar.set_postfix_str(f"ok {self.ok}, errors {self.errors}{note}", refresh=False)
            self._bar.refresh()
            return
        now = time.monotonic()
        # Off a terminal a line is a heartbeat, at most one per interval; the first one waits
        # for the first rows (or a whole interval), so a run does not open with "0 rows".
        first = self._last_line < self._started
        since = now - (self._started if first else self._last_line)
        if not final and since < self._interval_s and (self.done == 0 or not first):
            return
        self._last_line = now
        if self._out is None:
            log.info(self.line())
        else:
            print(self.line(), file=self._out, flush=True)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _tqdm_bar(total: int, label: str, out: TextIO):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=label, file=out, unit="img", dynamic_ncols=True, mininterval=0.5,
        bar_format=(
            "{desc}: {n_fmt}/{total_fmt} rows |{bar:20}| {rate_fmt}, ETA {remaining}, {postfix}"
        ),
    )


class StatusCountsParam(AccumulatorParam):
    """Adds {status: rows} dictionaries: what the executors' tasks have finished so far."""

    def zero(self, value: dict[str, int]) -> dict[str, int]:
        return {}

    def addInPlace(self, total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
        # A new dict, not an update in place: the driver's poller reads the old one meanwhile.
        merged = dict(total)
        for status, rows in more.items():
            merged[status] = merged.get(status, 0) + int(rows)
        return merged


class ListParam(AccumulatorParam):
    """Concatenates lists: one entry per finished partition (e.g. its engine feeding stats)."""

    def zero(self, value: list) -> list:
        return []

    def addInPlace(self, total: list, more: list) -> list:
        return [*total, *more]


def counting_statuses(
    function: Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]], counts: Accumulator
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Wrap a ``mapInPandas`` function so that every result frame adds its rows per ``status``
    to the ``counts`` accumulator. Spark sends a task's additions when the task ends (and again
    for a retried task: the figures are for progress, not for accounting)."""

    def counted(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in function(batches):
            counts.add({str(k): int(v) for k, v in frame["status"].value_counts().items()})
            yield frame

    return counted


@contextmanager
def polling(read: Callable[[], T], report: Callable[[T], None]) -> Iterator[None]:
    """While the body runs (a Spark action), call ``report(read())`` about once a second."""
    done = threading.Event()

    def poll() -> None:
        while not done.wait(POLL_INTERVAL_S):
            report(read())

    thread = threading.Thread(target=poll, name="candid-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=5)
