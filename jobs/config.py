"""Job configuration: one typed, validated object per job, loaded from YAML on the driver.

Validation happens before Spark starts, so a wrong key or value fails in a second with a message
naming the field, not after minutes of cluster start-up. Relative paths are taken relative to
the working directory (run jobs from the repository root, as the Makefile does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from udfs.settings import EngineSettings, ImageSettings, SamplingSettings, StrictModel

DEFAULT_PROMPT_DIR = "conf/prompts"
DEFAULT_SPARK_PROFILE = "conf/spark/local.yaml"
DEFAULT_IVY_SETTINGS = "conf/spark/ivysettings.xml"
DEFAULT_IVY_HOME = "build/ivy"
# The source checkout (or the folder an editable install points at): conf/ lives here.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def absolute_table_ref(ref: str) -> str:
    """Relative table paths become absolute (executors may not share the driver's working
    directory); metastore names (no '/') and URLs are kept as given."""
    if "/" in ref and "://" not in ref and not ref.startswith("/"):
        return str(Path(ref).resolve())
    return ref


def project_file(path: str) -> Path:
    """An absolute path for a file named relative to the working directory or, when it is not
    there, to the project root (so `conf/...` defaults work from any directory)."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate.resolve()
    return (PROJECT_ROOT / candidate).resolve()


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field."""


class SparkSettings(StrictModel):
    """How the driver builds its SparkSession."""

    profile: str | None = Field(
        DEFAULT_SPARK_PROFILE,
        description="YAML file of Spark confs (conf/spark/*.yaml); None uses only `conf`.",
    )
    master: str | None = Field(
        None, description="Overrides the profile's master; leave unset under spark-submit."
    )
    app_name: str = Field("candid", description="Spark application name.")
    conf: dict[str, str] = Field(
        default_factory=dict, description="Extra Spark confs, applied after the profile."
    )
    delta_jars: Literal["resolve", "provided"] = Field(
        "resolve",
        description="resolve: Spark fetches Delta's jars and their dependencies from Maven "
        "Central only (`ivy_settings`) into `ivy_home`, whatever ~/.m2 or ~/.ivy2* hold. "
        "provided: Delta is on the classpath already (Databricks, a cluster image): nothing is "
        "resolved.",
    )
    ivy_settings: str | None = Field(
        DEFAULT_IVY_SETTINGS,
        description="Ivy settings file (spark.jars.ivySettings) whose only resolver is Maven "
        "Central; relative paths are taken from the working directory, then the project root. "
        "None: Spark's own chain, which looks in ~/.m2 first (breaks where ~/.m2 holds a pom "
        "without its jar).",
    )
    ivy_home: str = Field(
        DEFAULT_IVY_HOME,
        description="Ivy home for the resolved jars (spark.jars.ivy). Project-local, so a broken "
        "user-wide Ivy cache cannot poison it; delete it to resolve afresh.",
    )


class TrackingSettings(StrictModel):
    """Where and how runs are logged to MLflow (from the driver only)."""

    enabled: bool = Field(True, description="Log the run to MLflow.")
    tracking_uri: str = Field(
        "sqlite:///build/mlflow/mlflow.db",
        description="MLflow tracking URI; the default is a project-local sqlite store.",
    )
    artifact_location: str | None = Field(
        "build/mlflow/artifacts",
        description="Artifact root for a newly created experiment (local folder or URI).",
    )
    experiment: str = Field("candid-describe", description="Experiment name.")
    sample_rows: int = Field(
        20, ge=0, description="Result rows logged with mlflow.log_table for a quick look."
    )
    on_error: Literal["warn", "fail"] = Field(
        "warn",
        description="If MLflow is unreachable: warn loudly and continue (Delta is the source "
        "of truth), or fail the job after the results are written.",
    )


class PromptRef(StrictModel):
    """Which prompt to use: a version in the prompt folder, or an MLflow registry URI."""

    version: str = Field("v2", description="Prompt version label in `dir`, e.g. v2.")
    name: str | None = Field(None, description="Prompt name when several share a version.")
    dir: str = Field(DEFAULT_PROMPT_DIR, description="Folder of prompt YAML files.")
    uri: str | None = Field(
        None, pattern=r"^prompts:/[^/@]+(/[0-9]+|@[A-Za-z0-9_-]+)$",
        description="Load from MLflow's Prompt Registry instead (prompts:/candid-describe/3 or "
        "prompts:/candid-describe@production); `version`, `name` and `dir` are then ignored.",
    )
    register_in_mlflow: bool = Field(
        True, description="Register the prompt in MLflow's Prompt Registry on each run (same "
        "content reuses its registry version).",
    )


class SourceColumnSettings(StrictModel):
    """Optionally write descriptions back onto the input table as a column per prompt version."""

    enabled: bool = Field(False, description="MERGE descriptions into the input table.")
    column_prefix: str = Field(
        "description_", pattern=r"^[a-z_][a-z0-9_]*$",
        description="Column name = prefix + prompt version (e.g. description_v2).",
    )


class DescribeConfig(StrictModel):
    """The describe job: input table in, results table out."""

    input_table: str = Field(..., description="Delta table (path or metastore name) of images.")
    results_table: str = Field(..., description="Delta table (path or name) for result rows.")
    engine: EngineSettings = Field(..., description="Model and engine settings.")
    images: ImageSettings = Field(default_factory=ImageSettings, description="Image handling.")
    prompt: PromptRef = Field(default_factory=PromptRef, description="Prompt to run.")
    sampling: SamplingSettings | None = Field(
        None, description="Overrides the prompt's own sampling defaults when set."
    )
    batch_size: int = Field(
        16, ge=1, le=4096,
        description="Rows per Arrow batch between Spark and the Python worker, and images per "
        "generate call for engines without streaming (transformers). Not a throughput knob for "
        "vLLM, which keeps engine.max_num_seqs requests in flight whatever this is.",
    )
    prep_threads: int = Field(
        2, ge=0, le=32,
        description="Threads per Python worker that read, decode and resize upcoming images "
        "while the engine works (0: decode inline). Each costs a share of a core.",
    )
    max_waiting_images: int = Field(
        64, ge=1,
        description="Cap on decoded images waiting for the engine per worker (bounded memory: a "
        "resized thumbnail is ~0.5 MB); enough to refill the engine as requests finish.",
    )
    partitions: int | None = Field(
        None, ge=1,
        description="Partitions per chunk; default: Spark's default parallelism (one per core "
        "or GPU slot).",
    )
    chunk_size: int = Field(
        50_000, ge=1,
        description="Rows per committed chunk. A crash loses at most the chunk in flight; "
        "smaller chunks commit more often (more Delta versions, more small files).",
    )
    max_attempts: int = Field(
        3, ge=1, description="Attempts per row for retryable failures, across reruns."
    )
    retry_statuses: list[str] = Field(
        default_factory=lambda: ["engine_error", "read_error"],
        description="Row status codes worth retrying on a rerun (transient causes). Other codes "
        "(bad files) are final: rerunning cannot fix a truncated JPEG.",
    )
    source_column: SourceColumnSettings = Field(
        default_factory=SourceColumnSettings, description="Description columns on the input."
    )
    spark: SparkSettings = Field(default_factory=SparkSettings, description="SparkSession.")
    mlflow: TrackingSettings = Field(default_factory=TrackingSettings, description="MLflow.")
    max_flag_rate: dict[str, float] = Field(
        default_factory=dict,
        description="Guardrail id -> highest acceptable share of this run's ok outputs with that "
        "flag (0-1). Above it the job exits non-zero after writing results, listing examples.",
    )
    replace: bool = Field(
        False,
        description="Describe again the rows of this prompt version and model that another run "
        "fingerprint made (the prompt text, sampling, model revision, dtype or pixel bounds "
        "changed). Off: such a run refuses to start. The table's Delta history keeps the old "
        "rows.",
    )
    run_name: str | None = Field(None, description="MLflow run name; default derived.")

    _absolute_tables = field_validator("input_table", "results_table")(absolute_table_ref)

    @field_validator("max_flag_rate")
    @classmethod
    def _known_flags_and_rates(cls, value: dict[str, float]) -> dict[str, float]:
        from udfs.guardrails import check_max_flag_rate

        check_max_flag_rate(value)
        return value


class IngestConfig(StrictModel):
    """The ingest job: a folder of images or a manifest file into the input Delta table."""

    source: str = Field(..., description="Folder of images, or a manifest (.txt/.csv/.jsonl).")
    table: str = Field(..., description="Input Delta table (path or metastore name).")
    recursive: bool = Field(True, description="Descend into sub-folders of `source`.")
    hash_content: bool = Field(
        True,
        description="Read every new file once on the executors and store its sha256, so the "
        "describe job describes identical images once. Costs one read of the data at ingest.",
    )
    max_file_bytes: int = Field(
        50_000_000, ge=1, description="Files larger than this get no content hash."
    )
    extensions: list[str] = Field(
        default_factory=lambda: [".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"],
        description="File endings taken from a folder (case-insensitive); manifests take all.",
    )
    spark: SparkSettings = Field(default_factory=SparkSettings, description="SparkSession.")

    _absolute_table = field_validator("table")(absolute_table_ref)

    @model_validator(mode="after")
    def _extensions_are_suffixes(self) -> IngestConfig:
        bad = [e for e in self.extensions if not e.startswith(".")]
        if bad:
            raise ValueError(f"extensions must start with '.', got {bad}")
        return self


def load_config(model: type[StrictModel], path: str | Path | None, overrides: list[str] = ()):
    """Load YAML ``path`` (optional), apply ``key.sub=value`` overrides, validate as ``model``.

    Raises:
        ConfigError: unreadable file, bad override, or validation errors (each names its field).
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a YAML mapping")
        data = loaded
    for item in overrides:
        apply_override(data, item)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, path)) from None


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in ``data``; the value is parsed as YAML (numbers, booleans...)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is not a mapping")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def format_validation_error(err: ValidationError, path: str | Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "(root)"
        lines.append(f"  {field}: {problem['msg']}")
    return "\n".join(lines)
