"""The one executor runner: input frames -> requests -> the engine -> output frames.

A ``RunnerTask`` is everything an executor needs, built and validated on the driver and pickled
to the executors with the ``mapInPandas`` function (``udfs.runner.spark_udf``). Describing
(``udfs.runner.describe.DescribeTask``) and the self-check audit
(``udfs.runner.audit.AuditTask``) differ only in two methods: how an input frame's rows become
requests (``plan``) and how their outcomes become output rows (``output_frame``). Everything
else is ``run_batches``: images read once per row, the engine fed as a stream across frames
(``udfs.runner.feeding``), a dead engine rebuilt once, per-request failures isolated, one output
row per input row, in input order.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from functools import partial
from typing import ClassVar

import pandas as pd
from pydantic import Field

from udfs.engines.base import Engine, RequestStream
from udfs.engines.cache import EngineFactory
from udfs.engines.stream import open_stream
from udfs.images.prepare import load_image
from udfs.runner.feed_stats import FeedStats
from udfs.runner.feeding import Connect, RowOutcome, RowPlan, feed_frames
from udfs.settings import (
    BatchSize,
    EngineSettings,
    ImageSettings,
    MaxWaitingImages,
    PrepThreads,
    StrictModel,
)

EngineProvider = Callable[[], Engine]
StatsCallback = Callable[[FeedStats], None]


class RunnerTask(StrictModel):
    """The settings every executor run shares, and the two steps a kind of run defines."""

    # Input columns the task reads (``path`` among them: the feeder reads the image there).
    input_columns: ClassVar[tuple[str, ...]] = ("path",)

    engine: EngineSettings
    images: ImageSettings = Field(default_factory=ImageSettings)
    batch_size: BatchSize
    prep_threads: PrepThreads
    max_waiting_images: MaxWaitingImages
    make_engine: EngineFactory | None = Field(
        None, exclude=True,
        description="(EngineSettings, ImageSettings) -> Engine, pickled to the executors by "
        "reference (tests inject fakes here); None: the backend registry.",
    )

    @abstractmethod
    def plan(self, frame: pd.DataFrame) -> list[RowPlan]:
        """One plan per row of ``frame``: the requests the row asks of the engine."""

    @abstractmethod
    def output_frame(self, frame: pd.DataFrame, rows: list[RowOutcome]) -> pd.DataFrame:
        """One output row per input row of ``frame`` (``rows`` in the same order)."""


def run_batches(
    batches: Iterator[pd.DataFrame],
    task: RunnerTask,
    get_engine: EngineProvider | None,
    reset_engine: Callable[[], None] = lambda: None,
    on_stats: StatsCallback | None = None,
    connect: Connect | None = None,
) -> Iterator[pd.DataFrame]:
    """Run ``task`` on every row of every batch; one output frame per input frame, in order.

    Args:
        batches: input frames with at least ``task.input_columns``.
        task: what to ask and how to build output rows, and the engine, image and feeding
            settings.
        get_engine: returns the (cached) engine; only called once a request is ready.
        reset_engine: discards the engine after a fatal error so ``get_engine`` builds anew.
        on_stats: called once with the partition's ``FeedStats`` after the last frame.
        connect: instead of ``get_engine``, returns a stream on an engine elsewhere (an engine
            server, ``udfs.engines.server.client``).
    """
    if connect is None:
        engine_provider = get_engine

        def connect() -> RequestStream:
            if engine_provider is None:
                raise ValueError("run_batches needs get_engine or connect")
            return open_stream(engine_provider())

    stats = FeedStats()
    outcomes = feed_frames(
        _checked(batches, task.input_columns),
        task.plan,
        connect=connect,
        reset=reset_engine,
        load=partial(load_image, settings=task.images),
        prep_threads=task.prep_threads,
        max_waiting=task.max_waiting_images,
        stats=stats,
    )
    try:
        for frame, rows in outcomes:
            yield task.output_frame(frame, rows)
    finally:
        # Stops the decoding threads and aborts requests in flight when the task is cancelled
        # or fails, not only when the generator is collected.
        outcomes.close()
    if on_stats is not None:
        on_stats(stats)


def run_frame(
    frame: pd.DataFrame,
    task: RunnerTask,
    get_engine: EngineProvider,
    reset_engine: Callable[[], None] = lambda: None,
) -> pd.DataFrame:
    """One output row per input row of one frame, in input order."""
    (result,) = run_batches(iter([frame]), task, get_engine, reset_engine)
    return result


def _checked(batches: Iterator[pd.DataFrame], columns: tuple[str, ...]) -> Iterator[pd.DataFrame]:
    for frame in batches:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"input rows lack column(s) {missing}; got {list(frame.columns)}")
        yield frame
