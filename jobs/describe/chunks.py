"""The engine step of a describe run: the rows to describe, in chunks, through the executors'
engines (``mapInPandas`` with one cached engine per Python worker). Each chunk is staged by its
engine stage, then committed (``jobs.describe.commit.commit_staged``) and written back, in chunk
order, so a crash costs at most the uncommitted chunks. With ``pipeline_chunks`` the next
chunks' engine stages run while one commits (``jobs.describe.pipeline``).

Each partition's feeding stats (``udfs.runner.feeding.FeedStats``: engine-busy time, tokens, cached
prompt tokens) come back through an accumulator; per chunk they go to MLflow (step = chunk) and
to the progress line, and they add up to the run's figures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.cluster.gpu_layout import engine_stage_profile, session_engine_slots
from jobs.commandline.console import Reporter
from jobs.commandline.progress import (
    ListParam,
    RowProgress,
    StatusCountsParam,
    counting_statuses,
    polling,
)
from jobs.describe.commit import commit_staged, stage_chunk, staging_table_for
from jobs.describe.dedup import IdenticalReuse
from jobs.describe.ledger import TaskLedger, engine_note, per_engine_metrics
from jobs.describe.pending import Chunk, PendingPlan, split_chunks
from jobs.describe.pipeline import PIPELINED_DEPTH, ChunkPipeline
from jobs.describe.start import DescribeRun
from udfs.outputs.structured import structured_columns
from udfs.outputs.tally import Tally
from udfs.runner.describe import result_schema_ddl
from udfs.runner.feed_stats import ENGINE_KEY, task_record
from udfs.runner.feeding import FeedStats, engine_metrics
from udfs.runner.spark_udf import make_partition_fn

if TYPE_CHECKING:
    import pandas as pd
    from pyspark import Accumulator
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class DescribedChunks:
    """What the engine step produced: the rows it had to describe and their chunks, the
    committed rows' tally, the executors' feeding stats summed over every chunk, the cost
    ledger of the engine tasks, and a sample of committed rows for MLflow."""

    rows_to_describe: int
    chunks: int
    tally: Tally
    engine: FeedStats
    ledger: TaskLedger
    samples: tuple[pd.DataFrame, ...]


# Called with each chunk right after its commit, in chunk order (the recipe passes the
# per-chunk write-back, ``jobs.describe.write_back.write_back_chunk``).
AfterCommit = Callable[["SparkSession", DescribeRun, Chunk], None]


def describe_chunks(
    spark: SparkSession, run: DescribeRun, plan: PendingPlan, reused: IdenticalReuse,
    reporter: Reporter, after_commit: AfterCommit,
) -> DescribedChunks:
    """Describe ``reused.to_describe`` chunk by chunk: engine stage (run ahead when pipelined),
    commit, tally, then ``after_commit``. The progress line follows each commit."""
    rows = reused.to_describe
    count = rows.count()
    chunks = split_chunks(spark, rows, count, run.config.chunk_size, run.scope.table)
    reporter.phase(
        f"[describe] {run.scope.key} (fingerprint {run.fingerprint}): {plan.rows_in} input "
        f"rows, {reused.copied.rows} copied from identical images, "
        f"{count} to describe in {len(chunks)} chunk(s)"
    )
    progress = LiveRows(reporter.rows(count, "describe"))
    ledger = TaskLedger(slots=session_engine_slots(spark))
    pipeline = ChunkPipeline(
        spark, run.task.run_id, lambda chunk: run_engine_stage(spark, run, chunk, progress),
        depth=PIPELINED_DEPTH if run.config.pipeline_chunks else 1,
        index=lambda chunk: chunk.index,
    )
    tally, engine_total, samples = Tally(), FeedStats(), []
    with closing(pipeline.staged(chunks)) as staged:
        for chunk, engine in staged:
            wanted = run.config.mlflow.sample_rows - sum(len(s) for s in samples)
            done = commit_staged(
                spark, run.scope.table, run.task.run_id, chunk.index, sample_rows=wanted
            )
            pipeline.committed()  # the next engine stage starts beside the write-back
            tally = tally + done.tally
            engine_total = FeedStats.combined([engine_total, engine.stats])
            progress.committed(chunk.index, tally, engine_total)
            if done.sample is not None:
                samples.append(done.sample)
            log_chunk_costs(run, ledger, chunk, engine)
            after_commit(spark, run, chunk)
    progress.close()
    return DescribedChunks(count, len(chunks), tally, engine_total, ledger, tuple(samples))


@dataclass
class EngineStage:
    """What one chunk's engine stage reported: its feeding stats summed over its tasks, and
    each task's record (``udfs.runner.feed_stats.task_record``)."""

    stats: FeedStats
    tasks: list[dict[str, Any]]


def log_chunk_costs(
    run: DescribeRun, ledger: TaskLedger, chunk: Chunk, engine: EngineStage
) -> None:
    """The chunk's feeding figures and cost ledger to MLflow (step = chunk); its tasks join
    the run's ``ledger``."""
    chunk_ledger = TaskLedger(slots=ledger.slots)
    chunk_ledger.add_tasks(engine.tasks)
    ledger.add_tasks(engine.tasks)
    run.tracker.log_metrics({**engine_metrics(engine.stats, prefix="chunk."),
                             **chunk_ledger.metrics(prefix="chunk."),
                             **per_engine_metrics(engine.tasks)}, step=chunk.index)


def run_engine_stage(
    spark: SparkSession, run: DescribeRun, chunk: Chunk, progress: LiveRows
) -> EngineStage:
    """Run the engine on one chunk into its staging partition (the only action that evaluates
    the rows); while it runs, the progress line gets the statuses of the rows that finished
    tasks described."""
    counts = spark.sparkContext.accumulator({}, StatusCountsParam())
    feeding = spark.sparkContext.accumulator([], ListParam())
    described = engine_output(spark, run, chunk, counts, feeding)
    report = progress.counting(chunk.index)
    with polling(lambda: (dict(counts.value), list(feeding.value)), report):
        stage_chunk(described, staging_table_for(run.scope.table), run.task.run_id, chunk.index)
    tasks = list(feeding.value)
    return EngineStage(FeedStats.combined(FeedStats.from_dict(t) for t in tasks), tasks)


def engine_output(
    spark: SparkSession, run: DescribeRun, chunk: Chunk, counts: Accumulator,
    feeding: Accumulator,
) -> DataFrame:
    """The chunk's result rows as a lazy DataFrame: its rows, spread over the engine tasks,
    through the engine, with the input columns the config carries and the typed JSON view
    (``stage_chunk`` adds the staging columns, ``written_at`` and ``chunk``)."""
    from pyspark.sql import functions as F

    describe = make_partition_fn(run.task, on_stats=lambda stats: feeding.add([task_record(stats)]))
    rows = chunk.rows
    described = (
        rows.select("image_id", "path", "attempts")
        .repartition(engine_tasks(spark, run), "image_id")
        .mapInPandas(counting_statuses(describe, counts), schema=result_schema_ddl(),
                     profile=engine_stage_profile(spark))
    )
    carried = run.config.input.extra_columns
    if carried:  # input columns the config carries into the results
        described = described.join(rows.select("image_id", *carried), "image_id", "left")
    schema = run.prompt.output.json_schema
    if run.prompt.output.mode == "json" and schema:
        # Typed view of the JSON output; schema evolution adds it to the tables on first use.
        ddl = ", ".join(f"`{name}` {kind}" for name, kind in structured_columns(schema))
        described = described.withColumn("structured", F.from_json("structured_json", ddl))
    return described


def engine_tasks(spark: SparkSession, run: DescribeRun) -> int:
    """Tasks per chunk: ``partitions``, or ``tasks_per_slot`` per task slot (GPU), so that an
    engine that is done with its share takes the next task and the chunk's tail is short."""
    return run.config.partitions or session_engine_slots(spark) * run.config.tasks_per_slot


class LiveRows:
    """The progress line over concurrent chunks: the committed rows' figures (handed in after
    each commit) plus what the finished tasks of the chunks still in their engine stage
    reported. Thread-safe: pollers of two engine stages and the commit loop update it."""

    def __init__(self, progress: RowProgress):
        self._progress = progress
        self._committed = Tally()
        self._live: dict[int, dict[str, int]] = {}
        self._tasks: dict[str, dict] = {}  # engine -> its latest finished task's record
        self._busy = ""
        self._lock = threading.Lock()

    def counting(self, chunk: int) -> Callable[[tuple[dict[str, int], list[dict]]], None]:
        """The reporter of one chunk's engine stage: the statuses and the task records of
        its finished tasks so far."""

        def report(seen: tuple[dict[str, int], list[dict]]) -> None:
            counts, tasks = seen
            with self._lock:
                self._live[chunk] = counts
                self._tasks.update((t[ENGINE_KEY], t) for t in tasks)  # latest per engine
                self._render()

        return report

    def committed(self, chunk: int, tally: Tally, engine: FeedStats) -> None:
        """Chunk ``chunk`` committed: the committed chunks' tally and feeding stats so far
        replace its live figures."""
        with self._lock:
            self._live.pop(chunk, None)
            self._committed = tally
            self._busy = f"engine busy {engine.busy_fraction:.0%}"
            self._render()

    def close(self) -> None:
        self._progress.close()

    def _render(self) -> None:
        done = sum(sum(counts.values()) for counts in self._live.values())
        ok = sum(counts.get("ok", 0) for counts in self._live.values())
        committed = self._committed
        note = "; ".join(p for p in (self._busy, engine_note(self._tasks.values())) if p)
        self._progress.update(committed.rows + done, committed.ok + ok,
                              committed.errors + done - ok, note=note)
