"""Shared fixtures: one SparkSession (real, local, with Delta), one tiny model, one engine of
each backend per test session. Everything heavy is session-scoped to keep the suite short."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from tests.jvm_archive import SESSION_JVM_OPTIONS, child_java_options
from tests.mlflow_store import fresh_store, remove_template
from tests.small_spark import SMALL_DATA_CONFS
from udfs.engines.vllm_env import prepare_process_env

REPO = Path(__file__).resolve().parents[1]
TEST_BUILD = REPO / "build" / "test"
LOCAL_PROFILE = REPO / "conf" / "spark" / "local.yaml"
PROMPT_DIR = REPO / "conf" / "prompts"
TINY_KV_CACHE_BYTES = 64 << 20

# CI (.ci/run sets HYPOTHESIS_PROFILE=ci) draws the same examples on every run, so a failure
# there is reproducible; locally hypothesis explores new ones.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Markers follow from what a test starts: its folder, or the session fixtures it uses.
_FOLDER_MARKERS = {"spark": "spark", "e2e": "e2e"}
_FIXTURE_MARKERS = {"spark": "spark", "vllm_engine": "engine", "hf_engine": "engine"}


def pytest_configure(config):
    # Every JVM started from here on (the sessions', spark-submit, CLI drivers, standalone
    # clusters) uses the parallel collector and, once ``make test`` has built it, maps the class
    # archive and skips the optimising JIT (tests.jvm_archive).
    options = child_java_options()
    inherited = os.environ.get("JAVA_TOOL_OPTIONS", "")
    if options and options not in inherited:  # xdist's workers inherit the controller's
        os.environ["JAVA_TOOL_OPTIONS"] = f"{inherited} {options}".strip()


def pytest_sessionfinish(session, exitstatus):
    remove_template()


# ``make test`` runs tests/spark and tests/e2e on two test processes (pytest-xdist,
# ``--dist loadgroup``); each group runs whole on one of them:
# - "engine": every module that feeds the shared engine server (``ONE_ENGINE``), so it loads once;
# - "processes": the modules whose work runs in the JVMs and Python processes they start
#   (CLI drivers, spark-submit, standalone clusters, the demo, browsers), one after the other;
# - every other tests/spark module is a group of its own, which xdist hands to whichever process
#   is free (both hold a SparkSession), so neither waits idle at the end. With all of tests/spark
#   in one group, that process ended about 50 s after the other (one sampled warm run); from a
#   fresh clone the whole tier took 882.8 s before and 879.0 s after, within the noise.
# "processes" leaves a core half idle while its processes start, which the other fills.
ENGINE_GROUP, PROCESS_GROUP = "engine", "processes"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = _tier(item)
        wanted = {_FOLDER_MARKERS[folder]} if folder in _FOLDER_MARKERS else set()
        wanted |= {m for f, m in _FIXTURE_MARKERS.items() if f in getattr(item, "fixturenames", ())}
        if folder == "unit" and wanted:
            raise pytest.UsageError(
                f"{item.nodeid} is a unit test but starts {sorted(wanted)}: move it to tests/spark "
                "or tests/e2e"
            )
        for marker in wanted - {m.name for m in item.iter_markers()}:
            item.add_marker(marker)
    warm = _warm_engine_modules_first(items)
    for item in items:
        folder = _tier(item)
        if folder != "unit":
            item.add_marker(pytest.mark.xdist_group(_group(item, folder, warm)))


def _group(item, folder: str, warm: set[str]) -> str:
    """The test's xdist group (see above)."""
    if item.module.__name__ in warm:
        return ENGINE_GROUP
    return item.module.__name__ if folder == "spark" else PROCESS_GROUP


def _tier(item) -> str:
    """The test's tier: its folder under tests/ (unit, spark or e2e)."""
    return Path(str(item.fspath)).parent.name


def pytest_collection_finish(session):
    if getattr(session.config.option, "loadgroup", False):  # set in xdist workers
        scattered = [i.nodeid for i in session.items if "@" not in i.nodeid]
        if scattered:
            raise pytest.UsageError(
                f"pytest-xdist gave {scattered[0]} no group: with this pytest, its loadgroup would "
                "scatter the test groups (pyproject.toml's dev extra pins the versions that work)"
            )


def _warm_engine_modules_first(items) -> set[str]:
    """Unit tests first; then the modules that run the real engine inside the Spark session,
    back to back, so that the engine server they share (``ONE_ENGINE``) is built once and
    kept busy; then the rest.
    Whole modules move, in their collected order, so module fixtures are set up once."""
    warm = {item.module.__name__ for item in items
            if item.get_closest_marker("spark") and item.get_closest_marker("engine")}

    def rank(item) -> int:
        if _tier(item) == "unit":
            return 0
        return 1 if item.module.__name__ in warm else 2

    items.sort(key=rank)  # stable: the collected order within each rank
    return warm


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny random-weight Qwen2-VL, built once (and reused across runs via its marker)."""
    from jobs.demo.tiny_model import make_tiny_model

    return make_tiny_model(TEST_BUILD / "tiny-qwen2-vl")


# vLLM on this CPU, for the tiny model (docs: ENVIRONMENT.md's "Settings that made it fast").
TINY_VLLM = {"enforce_eager": True, "kv_cache_memory_bytes": TINY_KV_CACHE_BYTES,
             "max_model_len": 2048, "max_num_seqs": 16}


def tiny_engine_settings(model_dir: Path, backend: str = "vllm", **extra):
    """The tiny model's engine settings; the vLLM group only when the backend is vLLM."""
    from udfs.settings import EngineSettings

    group = {"vllm": dict(TINY_VLLM)} if backend == "vllm" else {}
    return EngineSettings.model_validate({
        "backend": backend, "model": str(model_dir), "model_id": "test/tiny-qwen2-vl",
        "dtype": "float32", **group, **extra,
    })


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local[2] SparkSession with Delta for the whole run."""
    from jobs.cluster.spark_session import build_spark
    from jobs.job_settings import SparkSettings

    prepare_process_env(str(REPO / "build"))
    # Executors import test helpers (tests.fakes) by module name.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
    )
    scratch = tmp_path_factory.mktemp("spark")
    session = build_spark(SparkSettings(
        profile=str(LOCAL_PROFILE), app_name="candid-tests", ivy_home=str(REPO / "build" / "ivy"),
        conf={
            **SMALL_DATA_CONFS,
            "spark.sql.warehouse.dir": str(scratch / "warehouse"),
            # This JVM lives through the whole suite: both JIT tiers (tests.jvm_archive). The
            # "processes" group's own session (ingests, local reference runs) is no exception:
            # with the quick tier only there, the suite took 1,096 s instead of 979-1,027 s.
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={scratch} {SESSION_JVM_OPTIONS}",
        },
    ), log_file=TEST_BUILD / "logs" / f"spark-{os.getpid()}.log")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory):
    from jobs.demo.run import make_sample_images

    return make_sample_images(tmp_path_factory.mktemp("samples"), count=8, seed=1)


# Real-engine describe runs in the test session pass ``**ONE_ENGINE``: every Python worker then
# feeds the engine server (engine.placement: server), which outlives Spark's idle workers, so
# the tiny model loads once for all of them instead of once per worker that a task lands on
# (two here, local[2]) and again after each idle-worker timeout.
ONE_ENGINE = {"engine__placement": "server"}


def describe_config(tmp: Path, model_dir: Path | str, **overrides):
    """A DescribeConfig writing into ``tmp``, tracking into a sqlite store there; ``overrides``
    as ``jobs.config.load_config`` takes them (``a__b=value`` for nested keys)."""
    from jobs.config import DescribeConfig, load_config

    base = {
        "input_table": str(tmp / "images"),
        "results_table": str(tmp / "results"),
        "engine": {"backend": "vllm", "model": str(model_dir), "model_id": "test/tiny-qwen2-vl",
                   "dtype": "float32", "vllm": dict(TINY_VLLM)},
        "images": {"max_pixels": 200704},
        "prompt": {"version": "v2", "dir": str(PROMPT_DIR)},
        "batch_size": 4,
        "partitions": 1,
        "spark": {"profile": str(LOCAL_PROFILE), "conf": dict(SMALL_DATA_CONFS)},
        "mlflow": {
            "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
            "artifact_location": str(tmp / "mlartifacts"),
            "experiment": "candid-tests",
        },
    }
    config = load_config(DescribeConfig, base, **overrides)
    if config.mlflow.enabled and config.mlflow.tracking_uri == base["mlflow"]["tracking_uri"]:
        fresh_store(tmp)  # a migrated store, copied (tests.mlflow_store)
    return config


@pytest.fixture(scope="session")
def image_settings():
    from udfs.settings import ImageSettings

    return ImageSettings(max_pixels=200704)


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_dir, image_settings):
    """The real vLLM engine (CPU build here) on the tiny model, in this process."""
    prepare_process_env(str(REPO / "build"))
    from udfs.engines import create_engine

    engine = create_engine(tiny_engine_settings(tiny_model_dir), image_settings)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def hf_engine(tiny_model_dir, image_settings):
    from udfs.engines import create_engine

    engine = create_engine(tiny_engine_settings(tiny_model_dir, "transformers"), image_settings)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def prepared_samples(sample_images, image_settings):
    """The sample images decoded and sized exactly as the describe job does."""
    from udfs.images.prepare import load_image

    prepared = [load_image(str(p), image_settings) for p in sample_images.paths]
    assert all(p.ok for p in prepared), [p.message for p in prepared if not p.ok]
    return [p.image for p in prepared]
