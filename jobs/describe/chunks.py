"""The engine step of a describe run: the rows to describe, in chunks, through the executors'
engines (``mapInPandas`` with one cached engine per Python worker), each chunk committed by
``jobs.describe.commit.commit_chunk`` before the next one starts, so a crash costs at most one
chunk.

Each partition's feeding stats (``udfs.runner.feeding.FeedStats``: engine-busy time, tokens, cached
prompt tokens) come back through an accumulator; per chunk they go to MLflow (step = chunk) and
to the progress line, and they add up to the run's figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from jobs.commandline.console import Reporter
from jobs.commandline.progress import (
    ListParam,
    RowProgress,
    StatusCountsParam,
    counting_statuses,
    polling,
)
from jobs.describe.commit import CommittedChunk, commit_chunk
from jobs.describe.pending import split_chunks
from jobs.describe.start import DescribeRun, DescribeSummary
from jobs.describe.write_back import write_back_chunk
from udfs.outputs.structured import structured_columns
from udfs.runner.describe import result_schema_ddl
from udfs.runner.feeding import FeedStats, engine_metrics
from udfs.runner.spark_udf import make_partition_fn

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def describe_chunks(
    spark: SparkSession, run: DescribeRun, rows: DataFrame, reporter: Reporter
) -> None:
    """Describe ``rows`` chunk by chunk; the summary and the progress line follow each commit."""
    summary = run.summary
    summary.rows_to_describe = rows.count()
    chunks = split_chunks(
        spark, rows, summary.rows_to_describe, run.config.chunk_size, run.scope.table
    )
    summary.chunks = len(chunks)
    reporter.phase(
        f"[describe] {run.scope.key} (fingerprint {run.fingerprint}): {summary.rows_in} input "
        f"rows, {summary.rows_reused} copied from identical images, "
        f"{summary.rows_to_describe} to describe in {summary.chunks} chunk(s)"
    )
    progress = reporter.rows(summary.rows_to_describe, "describe")
    for chunk in chunks:
        done, engine = describe_chunk(
            spark, run, chunk.rows, chunk.index, _progress_updater(progress, summary)
        )
        summary.tally += done.tally
        summary.rows_processed += done.tally.rows
        summary.engine = FeedStats.combined([summary.engine, engine])
        if done.sample is not None:
            run.samples.append(done.sample)
        run.tracker.log_metrics(engine_metrics(engine, prefix="chunk."), step=chunk.index)
        progress.update(summary.rows_processed, summary.tally.ok, summary.tally.errors,
                        note=f"engine busy {summary.engine.busy_fraction:.0%}")
        write_back_chunk(spark, run, chunk)
    progress.close()


def describe_chunk(
    spark: SparkSession, run: DescribeRun, rows: DataFrame, chunk: int,
    on_counts: Callable[[dict[str, int]], None],
) -> tuple[CommittedChunk, FeedStats]:
    """Run the engine on one chunk and commit it; while it runs, ``on_counts`` gets the
    statuses of the rows that finished tasks described. Returns what was committed and the
    chunk's feeding stats (summed over its partitions)."""
    from pyspark.sql import functions as F

    partitions = run.config.partitions or spark.sparkContext.defaultParallelism
    counts = spark.sparkContext.accumulator({}, StatusCountsParam())
    feeding = spark.sparkContext.accumulator([], ListParam())
    describe = make_partition_fn(run.task, on_stats=lambda stats: feeding.add([stats.to_dict()]))
    described = (
        rows.select("image_id", "path", "attempts").repartition(partitions, "image_id")
        .mapInPandas(counting_statuses(describe, counts), schema=result_schema_ddl())
        .withColumn("written_at", F.current_timestamp())
        .withColumn("chunk", F.lit(chunk).cast("int"))
    )
    carried = run.config.input.extra_columns
    if carried:  # input columns the config carries into the results
        described = described.join(rows.select("image_id", *carried), "image_id", "left")
    schema = run.prompt.output.json_schema
    if run.prompt.output.mode == "json" and schema:
        # Typed view of the JSON output; schema evolution adds it to the tables on first use.
        ddl = ", ".join(f"`{name}` {kind}" for name, kind in structured_columns(schema))
        described = described.withColumn("structured", F.from_json("structured_json", ddl))
    wanted = run.config.mlflow.sample_rows - sum(len(s) for s in run.samples)
    done = commit_chunk(
        spark, described, run.scope.table, run.task.run_id, chunk, sample_rows=wanted,
        watch_staging=lambda: polling(lambda: dict(counts.value), on_counts),
    )
    return done, FeedStats.combined(FeedStats.from_dict(part) for part in feeding.value)


def _progress_updater(
    progress: RowProgress, summary: DescribeSummary
) -> Callable[[dict[str, int]], None]:
    """Moves the progress line with the statuses the chunk's finished tasks report."""
    base = summary.tally
    processed = summary.rows_processed

    def update(counts: dict[str, int]) -> None:
        done, ok = sum(counts.values()), counts.get("ok", 0)
        progress.update(processed + done, base.ok + ok, base.errors + done - ok)

    return update
