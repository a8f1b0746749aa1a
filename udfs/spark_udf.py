"""The thin adapter between Spark's ``mapInPandas`` and ``udfs.describe``.

Per Python worker: pin the task's GPU (before CUDA is touched), then describe batches with the
worker's cached engine. All settings arrive in the ``DescribeTask`` argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import pandas as pd

from udfs.describe import DescribeTask, describe_batches
from udfs.engines import cache
from udfs.gpu import pin_task_gpus


def describe_partition(batches: Iterator[pd.DataFrame], task: DescribeTask) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` function: one result row per input row."""
    pin_task_gpus()
    yield from describe_batches(
        batches,
        task,
        get_engine=lambda: cache.get_engine(task.engine, task.images, task.engine_factory),
        reset_engine=lambda: cache.discard_engine(task.engine, task.images, task.engine_factory),
    )


def make_describe_fn(task: DescribeTask) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Bind ``task`` so the function can be handed to ``DataFrame.mapInPandas``."""
    return partial(describe_partition, task=task)


def hash_partition(batches: Iterator[pd.DataFrame], max_bytes: int) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` function for ingest: adds ``content_sha256`` to (image_id, path) rows."""
    from udfs.sources import content_sha256

    for frame in batches:
        hashes = [content_sha256(str(p), max_bytes) if p is not None else None for p in frame["path"]]
        yield frame.assign(content_sha256=hashes)
