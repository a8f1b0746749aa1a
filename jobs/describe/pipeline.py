"""Chunks pipelined: the engine stages of the next chunks run while the driver commits one.

A chunk's engine stage is one Spark job (``jobs.describe.commit.stage_chunk``); its commit
(count, MERGE, drop the staged partition, write-back) is a handful of short jobs. Run one after
the other, every GPU waits for every commit. ``ChunkPipeline`` runs each engine stage in a
driver thread of its own, in the FAIR scheduler pool ``candid-engine``, while the caller commits
in its thread, in the pool ``candid-commit``:

- ``depth`` engine stages are started ahead (2 when pipelining, 1 without). Chunk ``k + depth``
  starts only once chunk ``k`` has committed, so at most one chunk waits staged but uncommitted
  beside the one committing: staging and memory stay bounded.
- With ``depth`` 2, chunk ``k + 1``'s engine stage runs while ``k`` commits, and ``k + 2``'s is
  submitted as soon as ``k`` has committed (``committed()``, before the caller writes ``k``
  back), usually long before ``k + 1`` ends. Inside the engine
  pool jobs run first come first served, so ``k + 2``'s tasks start on the slots that
  ``k + 1``'s tail leaves free: no GPU waits at a chunk's barrier (docs/operations.md).
- Under the FAIR scheduler a pool with no running task gets the next free slot, so a commit's
  short jobs run as soon as one engine task ends; in Spark's default FIFO mode they would wait
  for the whole engine stage (``spark.scheduler.mode: FAIR`` is in both profiles).

Crash safety does not change: staged rows are merged by the next run (``recover_staged``),
commits stay in chunk order, and a failure cancels the engine stages still running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("candid.pipeline")

ENGINE_POOL = "candid-engine"
COMMIT_POOL = "candid-commit"
POOL_PROPERTY = "spark.scheduler.pool"
# Engine stages started ahead of the commit loop: 2 overlaps a commit and a chunk's tail.
PIPELINED_DEPTH = 2
C = TypeVar("C")
T = TypeVar("T")


class ChunkPipeline(Generic[C, T]):
    """Runs ``stage(chunk)`` for ``chunks`` ahead of the caller, who commits them in order."""

    def __init__(
        self, spark: SparkSession, run_id: str, stage: Callable[[C], T], depth: int,
        index: Callable[[C], int],
    ):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._context = spark.sparkContext
        self._run_id = run_id
        self._stage = stage
        self._depth = depth
        self._index = index
        self._start_next: Callable[[], None] | None = None
        if depth > 1 and self._context.getConf().get("spark.scheduler.mode", "FIFO") != "FAIR":
            log.warning("spark.scheduler.mode is not FAIR: a commit's jobs wait for the engine "
                        "stage running beside it (set it in the Spark profile)")

    def staged(self, chunks: Sequence[C]) -> Iterator[tuple[C, T]]:
        """Yield ``(chunk, stage(chunk))`` in order, once each chunk is staged. Commit the
        chunk, then call ``committed()`` (or ask for the next chunk): that starts the engine
        stage ``depth`` chunks on."""
        running: dict[int, Future[T]] = {}
        self._context.setLocalProperty(POOL_PROPERTY, COMMIT_POOL)
        pool = ThreadPoolExecutor(max_workers=self._depth, thread_name_prefix="candid-engine")

        def start(position: int) -> None:
            if position < len(chunks):
                running[position] = pool.submit(self._in_engine_pool, chunks[position])

        try:
            for position in range(self._depth):
                start(position)
            for position, chunk in enumerate(chunks):
                staged = running.pop(position).result()
                self._start_next = lambda position=position: start(position + self._depth)
                yield chunk, staged
                self.committed()  # the caller asks for the next chunk: it committed `chunk`
        except BaseException:
            for position, future in running.items():
                future.cancel()
                self._context.cancelJobGroup(self._job_group(chunks[position]))
            raise
        finally:
            self._start_next = None
            pool.shutdown(wait=True)
            self._context.setLocalProperty(POOL_PROPERTY, None)

    def committed(self) -> None:
        """The chunk ``staged`` yielded last is committed: start the engine stage ``depth``
        chunks on now, so that the caller's work after the commit (the write-back) runs beside
        it instead of holding it back. Once per chunk; later calls do nothing."""
        start, self._start_next = self._start_next, None
        if start is not None:
            start()

    def _in_engine_pool(self, chunk: C) -> T:
        """``stage(chunk)`` in this driver thread's own job group, in the engine pool."""
        self._context.setLocalProperty(POOL_PROPERTY, ENGINE_POOL)
        self._context.setJobGroup(
            self._job_group(chunk), f"candid engine stage, chunk {self._index(chunk)}"
        )
        log.info("chunk %d: engine stage started", self._index(chunk))
        try:
            result = self._stage(chunk)
        finally:
            self._context.setLocalProperty(POOL_PROPERTY, None)
            self._context.setLocalProperty("spark.jobGroup.id", None)
        log.info("chunk %d: staged", self._index(chunk))
        return result

    def _job_group(self, chunk: C) -> str:
        return f"candid-{self._run_id}-chunk-{self._index(chunk)}"
