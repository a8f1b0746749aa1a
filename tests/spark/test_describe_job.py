"""The describe job on real Spark + Delta + the real vLLM CPU engine + a real MLflow store."""

from pathlib import Path

import pytest
from mlflow import MlflowClient

from jobs.config import IngestConfig
from jobs.describe.run import run_describe
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from jobs.tables.results import RESULT_KEYS
from tests.conftest import ONE_ENGINE, describe_config

pytestmark = [pytest.mark.spark, pytest.mark.engine]


@pytest.fixture(scope="module")
def described(spark, sample_images, tiny_model_dir, tmp_path_factory):
    """Ingest the samples and describe them twice with vLLM (the second run must be a no-op)."""
    tmp = tmp_path_factory.mktemp("describe")
    config = describe_config(
        tmp, tiny_model_dir, source_column__enabled=True, chunk_size=5, mlflow__sample_rows=3,
        **ONE_ENGINE,
    )
    # Fixed ids (a manifest's own): chunks are made of whole results-table buckets, chosen by
    # image_id; ids derived from this run's temp paths put all 8 rows in one of the 2 chunks
    # about once in 128 runs, and the per-chunk figures below would miss a chunk.
    images = sorted(sample_images.paths)
    assert len(images) == 8
    manifest = tmp / "manifest.csv"
    manifest.write_text("image_id,path\n" + "".join(
        f"describe-job-{i},{path}\n" for i, path in enumerate(images)), encoding="utf-8")
    run_ingest(IngestConfig(source=str(manifest), table=config.input_table), spark)
    first = run_describe(config, spark)
    second = run_describe(config, spark)
    return config, first, second


def test_every_image_gets_one_ok_row_with_full_provenance(spark, described):
    config, first, _ = described
    rows = read_table(spark, config.results_table).collect()
    assert len(rows) == 8 and first.tally.statuses == {"ok": 8}
    assert first.chunks == 2  # 8 rows, chunk_size 5
    for row in rows:
        assert row.status == "ok" and row.status_message is None
        assert row.description is not None and row.finish_reason in {"stop", "length"}
        assert row.prompt_tokens > 64 and 0 < row.completion_tokens <= 96
        assert row.latency_ms > 0 and row.written_at is not None
        assert 0 <= row.queue_wait_ms <= row.latency_ms
        assert row.min_logprob <= row.mean_logprob < 0
        assert (row.prompt_name, row.prompt_version, row.model) == ("describe", "v2", "test/tiny-qwen2-vl")
        assert row.prompt_hash == first.prompt_hash and row.run_id == first.run_id
        assert row.engine == "vllm" and row.visual_tokens > 0 and row.attempts == 1
        assert len(row.content_sha256) == 64


def test_rerun_adds_no_rows_and_recomputes_nothing(spark, described):
    config, first, second = described
    results = read_table(spark, config.results_table)
    assert results.count() == 8
    assert results.select(*RESULT_KEYS).distinct().count() == 8
    assert second.rows_pending == 0 and second.rows_processed == 0
    assert {r.run_id for r in results.collect()} == {first.run_id}
    assert second.table_tally.statuses == {"ok": 8}


def test_descriptions_are_merged_back_into_the_input_table(spark, described):
    config, _, _ = described
    inputs = {r.image_id: r.description_v2 for r in read_table(spark, config.input_table).collect()}
    results = {r.image_id: r.description for r in read_table(spark, config.results_table).collect()}
    assert inputs == results and len(inputs) == 8


def test_mlflow_run_has_params_metrics_and_artifacts(described):
    config, first, _ = described
    client = MlflowClient(tracking_uri=config.mlflow.tracking_uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["prompt_version"] == "v2" and params["prompt_hash"] == first.prompt_hash
    assert params["model"] == "test/tiny-qwen2-vl" and params["engine"] == "vllm"
    assert params["input_table"] == config.input_table and params["input_version"].isdigit()
    assert params["sampling.max_tokens"] == "96"
    metrics = run.data.metrics
    assert metrics["rows_in"] == 8 and metrics["rows_ok"] == 8 and metrics["rows_error"] == 0
    assert metrics["images_per_s"] > 0
    # vLLM's own scheduler figures, per chunk (2 chunks): KV cache in use, nothing preempted.
    kv = client.get_metric_history(first.run_id, "chunk.kv_cache_usage_max")
    assert sorted(m.step for m in kv) == [0, 1] and all(0 < m.value <= 1 for m in kv)
    assert {m.value for m in client.get_metric_history(first.run_id, "chunk.preemptions")} == {0}
    assert all(m.value >= 1 for m in
               client.get_metric_history(first.run_id, "chunk.engine_running_peak"))
    # The cost ledger, per chunk and for the run. local[2]: 2 slots; partitions 1: one engine
    # task per chunk, so in a chunk one slot idles throughout (tail share 1). The second chunk's
    # task may run beside the first's (pipelined), in a second Python worker.
    for name in ("images_per_s_per_engine", "gpu_s_per_1000_images", "tokens_per_s"):
        history = client.get_metric_history(first.run_id, f"chunk.{name}")
        assert sorted(m.step for m in history) == [0, 1] and all(m.value > 0 for m in history)
        assert metrics[name] > 0
    assert {m.value for m in client.get_metric_history(first.run_id, "chunk.tail_share")} == {1.0}
    assert {m.value for m in client.get_metric_history(first.run_id, "chunk.engines")} == {1.0}
    assert metrics["engines"] in (1, 2) and 0 < metrics["tail_share"] <= 1
    # GPU-seconds count both slots, busy or not.
    assert metrics["gpu_s_per_1000_images"] == pytest.approx(
        2 * 1000 / (metrics["images_per_s_per_engine"] * metrics["engines"]))
    # vLLM's live figures per engine (Python worker): KV cache in use, requests in flight.
    per_engine = {k: v for k, v in metrics.items() if k.startswith("engine.")}
    kv_per_engine = [v for k, v in per_engine.items() if k.endswith(".kv_cache_usage_mean")]
    assert kv_per_engine and all(0 < v <= 1 for v in kv_per_engine)
    assert all(v > 0 for k, v in per_engine.items() if k.endswith(".in_flight_mean"))
    assert {v for k, v in per_engine.items() if k.endswith(".preemptions")} == {0}
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"config.yaml", "summary.json", "prompt", "samples"} <= artifacts
    prompt_files = {a.path for a in client.list_artifacts(first.run_id, "prompt")}
    assert "prompt/describe_v2.yaml" in prompt_files
    local = client.download_artifacts(first.run_id, "samples/outputs.json")
    import json
    table = json.loads(Path(local).read_text())
    assert len(table["data"]) == 3 and "description" in table["columns"]
