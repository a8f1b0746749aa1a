"""The describe job: input Delta table -> vLLM (or transformers) in pandas UDFs -> results table.

Run it as ``candid describe --config conf/demo.yaml``, or under spark-submit as
``spark-submit $(candid submit-args --config F) jobs/cli.py describe --config F``.

``run_describe`` is the whole run, one step per line; each step lives in its own module and
returns what it produced, and ``finish_run`` assembles the summary from those returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobs.commandline.console import Reporter
from jobs.config import DescribeConfig
from jobs.describe.chunks import describe_chunks
from jobs.describe.dedup import fan_out_duplicates, reuse_identical
from jobs.describe.pending import plan_pending
from jobs.describe.report import StepResults, finish_run
from jobs.describe.start import DescribeSummary, open_run
from jobs.describe.write_back import write_back, write_back_chunk
from jobs.tracking.prompt_store import resolve_prompt
from udfs.prompts import PromptSpec

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def run_describe(
    config: DescribeConfig,
    spark: SparkSession,
    prompt: PromptSpec | None = None,
    reporter: Reporter | None = None,
    make_engine: Callable | None = None,
) -> DescribeSummary:
    """Describe every pending input row of ``config``, committing chunk by chunk.

    Args:
        config: the validated job config.
        spark: a session with Delta.
        prompt: the resolved prompt (default: resolved from ``config.prompt``).
        reporter: where phases and row progress go (default: the log).
        make_engine: ``(EngineSettings, ImageSettings) -> Engine``, pickled to the executors;
            default: the backend registry (``udfs.engines.registry``). Tests pass fakes here.

    Raises:
        FingerprintMismatch: rows of this prompt version and model were made by another run
            fingerprint, and ``config.replace`` is off (nothing is written).
        FlagRateExceeded: guardrail rates above ``config.max_flag_rate`` (results are written).
        TrackingError: MLflow failed and ``mlflow.on_error`` is ``fail`` (results are written).
    """
    prompt = prompt or resolve_prompt(config.prompt, config.mlflow.tracking_uri)
    reporter = reporter or Reporter()
    started = time.perf_counter()
    run = open_run(config, spark, prompt, make_engine)  # recover, check fingerprints, track
    try:
        with plan_pending(spark, run) as plan:
            reused = reuse_identical(spark, run, plan)
            described = describe_chunks(
                spark, run, plan, reused, reporter, after_commit=write_back_chunk
            )
            fanned_out = fan_out_duplicates(spark, run, reused.duplicates)
        write_back(spark, run, reporter)
    except BaseException:
        # Committed chunks stay committed; the MLflow run must not stay RUNNING forever.
        run.tracker.finish("FAILED")
        raise
    return finish_run(spark, run, started, StepResults(plan, reused, described, fanned_out))
