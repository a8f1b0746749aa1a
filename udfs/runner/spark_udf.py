"""The thin adapter between Spark's ``mapInPandas`` and the executor runner
(``udfs.runner.task.run_batches``), for every kind of task (describing, the audit).

Per task: re-batch Spark's Arrow batches into frames of the task's ``batch_size`` rows, then run
the task on them with the engine its placement names: the engine server of the task's GPU
(``udfs.engines.server``: one per GPU, outliving Python workers, so it never follows a reused
worker onto the wrong GPU), or the worker's own cached engine (``udfs.engines.cache``, the GPU
pinned before CUDA is touched; the same cache for every task, so an audit reuses the describe
job's engine when the settings match). All settings arrive in the task argument.

Why re-batch here rather than set ``spark.sql.execution.arrow.maxRecordsPerBatch``: Spark reads
that conf on the driver when the query's ``MapInBatchExec.doExecute`` runs, from the session's
one shared ``SQLConf``. Two chunk jobs on two driver threads of one session would race on it, and
a value left set leaks into every later query of the session. Frames cut here belong to this
query alone, whatever the session says.

``on_stats`` (optional) receives each partition's ``FeedStats`` in the executor when the
partition is done; it is pickled with the function, so it must be picklable, e.g. a lambda that
adds ``stats.to_dict()`` to a Spark accumulator the driver reads after the action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial

import pandas as pd

from udfs.engines import cache
from udfs.engines.gpu import pin_task_gpus, task_gpus, task_identity
from udfs.engines.node_facts import verify_model_here
from udfs.engines.server.client import ServerLink
from udfs.engines.server.protocol import executor_process
from udfs.engines.vllm_env import prepare_executor_env
from udfs.runner.task import RunnerTask, StatsCallback, run_batches

PartitionFn = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]


def frames_of(batches: Iterable[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """The rows of ``batches``, in order, as frames of exactly ``rows`` rows (the last one may
    be shorter; empty input frames vanish). Index reset, columns as given."""
    if rows < 1:
        raise ValueError(f"rows per frame must be at least 1, got {rows}")
    held: list[pd.DataFrame] = []
    count = 0
    for batch in batches:
        start = 0
        while start < len(batch):
            piece = batch.iloc[start:start + rows - count]
            held.append(piece)
            count += len(piece)
            start += len(piece)
            if count == rows:
                yield _joined(held)
                held, count = [], 0
    if held:
        yield _joined(held)


def _joined(pieces: list[pd.DataFrame]) -> pd.DataFrame:
    frame = pieces[0] if len(pieces) == 1 else pd.concat(pieces)
    return frame.reset_index(drop=True)


def in_frames_of(rows: int, fn: PartitionFn) -> PartitionFn:
    """``fn`` as a ``mapInPandas`` function that receives frames of ``rows`` rows
    (``frames_of``), for this query only. ``fn`` must be picklable (a module-level function or
    a ``partial`` of one)."""
    return partial(_call_in_frames, fn=fn, rows=rows)


def _call_in_frames(
    batches: Iterator[pd.DataFrame], fn: PartitionFn, rows: int
) -> Iterator[pd.DataFrame]:
    yield from fn(frames_of(batches, rows))


def run_partition(
    frames: Iterator[pd.DataFrame], task: RunnerTask, on_stats: StatsCallback | None = None
) -> Iterator[pd.DataFrame]:
    """One output row per input row of ``frames``, one output frame per frame, as given: the
    ``mapInPandas`` function from ``make_partition_fn`` hands it frames of ``task.batch_size``
    rows. The engine runs where ``task.engine.placement`` says (``uses_engine_server``)."""
    prepare_executor_env(task.engine.model)  # before CUDA or the engine loads (and its server)
    if task.make_engine is None:  # an injected (test) engine's "model" is not a model
        verify_model_here(task.engine.model, task.engine.revision)
    gpus = task_gpus()
    if uses_engine_server(task.engine.placement, gpus):
        link = ServerLink(task.engine, task.images, task.make_engine, gpus,
                          owner=executor_process(), task=task_identity())
        yield from run_batches(frames, task, get_engine=None, reset_engine=link.reset,
                               on_stats=on_stats, connect=link.connect)
        return
    pin_task_gpus()
    yield from run_batches(
        frames,
        task,
        get_engine=lambda: cache.get_engine(task.engine, task.images, task.make_engine),
        reset_engine=lambda: cache.discard_engine(task.engine, task.images, task.make_engine),
        on_stats=on_stats,
    )


def uses_engine_server(placement: str, gpus: tuple[str, ...] | None) -> bool:
    """Whether a task runs its requests on its slot's engine server (``server``; ``auto`` when
    Spark gave the task a GPU) rather than on an engine inside its Python worker."""
    return placement == "server" or (placement == "auto" and gpus is not None)


def make_partition_fn(task: RunnerTask, on_stats: StatsCallback | None = None) -> PartitionFn:
    """The ``mapInPandas`` function for ``task``: Spark's Arrow batches cut into frames of
    ``task.batch_size`` rows (``in_frames_of``), each run by ``run_partition``; ``task`` and
    ``on_stats`` are bound, so the function pickles to the executors."""
    return in_frames_of(task.batch_size, partial(run_partition, task=task, on_stats=on_stats))


def hash_partition(batches: Iterator[pd.DataFrame], max_bytes: int) -> Iterator[pd.DataFrame]:
    """``mapInPandas`` function for ingest: adds ``content_sha256`` to (image_id, path) rows."""
    from udfs.images.sources import content_sha256

    for frame in batches:
        hashes = [
            content_sha256(str(p), max_bytes) if p is not None else None for p in frame["path"]
        ]
        yield frame.assign(content_sha256=hashes)
