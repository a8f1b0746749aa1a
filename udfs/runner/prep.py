"""A bounded pool that reads, decodes and sizes the images of upcoming rows while the engine
works (``udfs.runner.feeding``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from udfs.images.prepare import PreparedImage

Loader = Callable[[str], PreparedImage]


class PrepQueue:
    """Prepares images for upcoming rows in a thread pool and hands them out in row order.

    At most ``cap`` images are loaded or loading at any time, whatever the engine's pace: the
    memory held by decoded images waiting for the engine stays bounded. ``threads=0`` loads
    inline when a row is queued (for debugging and deterministic tests).
    """

    def __init__(self, load: Loader, threads: int, cap: int):
        if cap < 1:
            raise ValueError(f"cap must be at least 1, got {cap}")
        self._load, self._cap = load, cap
        self._pool = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="candid-prep")
            if threads > 0 else None
        )
        self._items: deque[tuple[int, Future]] = deque()
        self.max_waiting = 0

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self) -> bool:
        return len(self._items) < self._cap

    def put(self, key: int, path: str) -> None:
        if self._pool is not None:
            future = self._pool.submit(self._load, path)
        else:
            future = Future()
            try:
                future.set_result(self._load(path))
            except Exception as err:  # noqa: BLE001 - re-raised by take(), like a pool's future
                future.set_exception(err)
        self._items.append((key, future))
        self.max_waiting = max(self.max_waiting, len(self._items))

    def head_ready(self) -> bool:
        return bool(self._items) and self._items[0][1].done()

    def take(self) -> tuple[int, PreparedImage]:
        """The next row's image, waiting for it if needed. ``load`` raising is a bug, not a bad
        image (those are statuses), so it propagates."""
        key, future = self._items.popleft()
        return key, future.result()

    def close(self) -> None:
        for _, future in self._items:
            future.cancel()
        self._items.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
