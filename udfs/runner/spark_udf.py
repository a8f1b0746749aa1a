"""The thin adapter between Spark's ``mapInPandas`` and the executor runner
(``udfs.runner.task.run_batches``), for every kind of task (describing, the audit).

Per Python worker: pin the task's GPU (before CUDA is touched), then run the task on its batches
with the worker's cached engine (``udfs.engines.cache``: the same cache for every task, so an
audit reuses the describe job's engine when the settings match). All settings arrive in the
task argument.

``on_stats`` (optional) receives each partition's ``FeedStats`` in the executor when the
partition is done; it is pickled with the function, so it must be picklable, e.g. a lambda that
adds ``stats.to_dict()`` to a Spark accumulator the driver reads after the action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import pandas as pd

from udfs.engines import cache
from udfs.engines.gpu import pin_task_gpus
from udfs.runner.task import RunnerTask, StatsCallback, run_batches


def run_partition(
    batches: Iterator[pd.DataFrame], task: RunnerTask, on_stats: StatsCallback | None = None
) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` function: one output row per input row."""
    pin_task_gpus()
    yield from run_batches(
        batches,
        task,
        get_engine=lambda: cache.get_engine(task.engine, task.images, task.make_engine),
        reset_engine=lambda: cache.discard_engine(task.engine, task.images, task.make_engine),
        on_stats=on_stats,
    )


def make_partition_fn(
    task: RunnerTask, on_stats: StatsCallback | None = None
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Bind ``task`` (and ``on_stats``) so the function can be handed to ``mapInPandas``."""
    return partial(run_partition, task=task, on_stats=on_stats)


def hash_partition(batches: Iterator[pd.DataFrame], max_bytes: int) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` function for ingest: adds ``content_sha256`` to (image_id, path) rows."""
    from udfs.images.sources import content_sha256

    for frame in batches:
        hashes = [
            content_sha256(str(p), max_bytes) if p is not None else None for p in frame["path"]
        ]
        yield frame.assign(content_sha256=hashes)
