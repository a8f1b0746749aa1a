"""Job configuration: one typed, validated object per job, loaded from YAML on the driver.

Validation happens before Spark starts, so a wrong key or value fails in a second with a message
naming the field, not after minutes of cluster start-up. Relative paths are taken relative to
the working directory (run jobs from the repository root, as the Makefile does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

# Configs are built by jobs.config_loader; these two are re-exported as the config's public face.
from jobs.config_loader import ConfigError, load_config  # noqa: F401
from jobs.job_settings import (
    SparkSettings,
    TrackingSettings,
    absolute_table_ref,
    project_file,  # noqa: F401 - re-exported: a config's paths are read with it
)
from udfs.settings import (
    KEEPS_OUTPUT,
    BatchSize,
    EngineSettings,
    ImageSettings,
    MaxWaitingImages,
    PrepThreads,
    SamplingOverrides,
    StrictModel,
)

DEFAULT_PROMPT_DIR = "conf/prompts"
class PromptRef(StrictModel):
    """Which prompt to use: a version in the prompt folder, or an MLflow registry URI.

    These fields only locate the prompt, so they declare they keep the output: what changes it
    is the prompt's own content (rendered messages, output schema, sampling), which the run
    fingerprint covers whichever folder, version label or registry URI it came from."""

    version: str = Field(
        "v2", description="Prompt version label in `dir`, e.g. v2.", json_schema_extra=KEEPS_OUTPUT
    )
    name: str | None = Field(
        None, description="Prompt name when several share a version.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    dir: str = Field(
        DEFAULT_PROMPT_DIR, description="Folder of prompt YAML files.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    uri: str | None = Field(
        None, pattern=r"^prompts:/[^/@]+(/[0-9]+|@[A-Za-z0-9_-]+)$",
        description="Load from MLflow's Prompt Registry instead (prompts:/candid-describe/3 or "
        "prompts:/candid-describe@production); `version`, `name` and `dir` are then ignored.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    register_in_mlflow: bool = Field(
        True, description="Register the prompt in MLflow's Prompt Registry on each run (same "
        "content reuses its registry version).",
        json_schema_extra=KEEPS_OUTPUT,
    )


class SourceColumnSettings(StrictModel):
    """Optionally write descriptions back onto the input table as a column per prompt version."""

    enabled: bool = Field(
        False,
        description="MERGE descriptions into the input table, only where the value is new or "
        "different (a rerun with nothing new commits nothing). Off: the input table is never "
        "written; join it with the results table instead (a view, docs/operations.md).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    column_prefix: str = Field(
        "description_", pattern=r"^[a-z_][a-z0-9_]*$",
        description="Column name = prefix + prompt version (e.g. description_v2).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    every_chunk: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Write each chunk's descriptions back right after the chunk commits "
        "(always), or only once at the end of the run (never). auto: after every chunk when the "
        "input table has deletion vectors (delta.enableDeletionVectors), which make an update "
        "write only the changed rows; without them every chunk would rewrite each data file "
        "holding one of its rows (with hash chunks: about the whole table), so once at the end.",
        json_schema_extra=KEEPS_OUTPUT,
    )


class InputSettings(StrictModel):
    """How the input table's columns map onto Candid's (``jobs.tables.inputs.read_inputs``): any
    Delta table with an id and a path per image works, e.g. a product catalogue owned by another
    team; the table written by ``candid ingest`` matches the defaults."""

    id_column: str | None = Field(
        "image_id", min_length=1,
        description="Column with a unique id per image (any type; stored as a string in the "
        "results). None: derive the id from the path exactly as ingest does (first 24 hex "
        "characters of sha256 of the path's UTF-8 bytes), so both give one image one id.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    path_column: str = Field(
        "path", min_length=1,
        description="Column with the image's location (local/FUSE path, file:// or fsspec URL).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    filter: str | None = Field(
        None, min_length=1,
        description="Spark SQL condition on the input table's own columns; only matching rows "
        "are described, counted and written back (e.g. \"category = 'shoes'\"). Rows without an "
        "id or a path are always skipped.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    extra_columns: list[str] = Field(
        default_factory=list,
        description="Input columns copied unchanged into every result row (e.g. a category for "
        "later analysis); added to the results table by schema evolution on first use.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    content_hash_column: str | None = Field(
        "content_sha256",
        description="Column with a hash of each file's bytes (ingest writes content_sha256): "
        "rows that share it are described once (jobs/describe/dedup.py). Used when the table "
        "has it; None: never.",
        json_schema_extra=KEEPS_OUTPUT,
    )

    @model_validator(mode="after")
    def _distinct_and_unreserved(self) -> InputSettings:
        from udfs.runner.describe import RESULT_COLUMN_NAMES

        named = [self.id_column, self.path_column, *self.extra_columns]
        named = [name for name in named if name is not None]
        if len(set(named)) != len(named):
            raise ValueError(f"id_column, path_column and extra_columns repeat a name: {named}")
        # Result rows already have these columns (and the tables' own bookkeeping ones).
        reserved = {*RESULT_COLUMN_NAMES, "written_at", "bucket", "chunk"}
        clashing = sorted(reserved.intersection(self.extra_columns))
        if clashing:
            raise ValueError(f"extra_columns {clashing} are result columns already; rename "
                             "them in a view of the input table")
        return self


class DescribeConfig(StrictModel):
    """The describe job: input table in, results table out."""

    input_table: str = Field(
        ..., description="Delta table (path or metastore name) of images: the one `candid "
        "ingest` writes, or any table with an id and a path column (see `input`).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    input: InputSettings = Field(
        default_factory=InputSettings,
        description="The input table's column names, row filter and columns carried along.",
    )
    results_table: str = Field(
        ..., description="Delta table (path or name) for result rows.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    engine: EngineSettings = Field(..., description="Model and engine settings.")
    images: ImageSettings = Field(default_factory=ImageSettings, description="Image handling.")
    prompt: PromptRef = Field(default_factory=PromptRef, description="Prompt to run.")
    sampling: SamplingOverrides = Field(
        default_factory=SamplingOverrides,
        description="Sampling fields set over the prompt's own, field by field (the effective "
        "sampling: `candid describe --explain`).",
    )
    batch_size: BatchSize
    prep_threads: PrepThreads
    max_waiting_images: MaxWaitingImages
    partitions: int | None = Field(
        None, ge=1,
        description="Engine tasks per chunk; default: `tasks_per_slot` per task slot (Spark's "
        "default parallelism: one per core or GPU).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    tasks_per_slot: int = Field(
        4, ge=1,
        description="Engine tasks per chunk and task slot (GPU), when `partitions` is not set. "
        "More tasks: an engine done with its share takes another task, so a slower GPU holds "
        "the others less at the chunk's end (docs/operations.md, \"Chunks, tasks and the "
        "tail\"); each task also drains its engine once at its end.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    pipeline_chunks: bool = Field(
        True,
        description="Run the next chunk's engine stage while one commits (MERGE, staging "
        "cleanup, write-back), in Spark FAIR scheduler pools: the GPUs do not wait for the "
        "driver. Off: each chunk commits before the next one starts. Crash safety is the same.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    chunk_size: int = Field(
        50_000, ge=1,
        description="Rows per committed chunk. A crash loses at most the chunk in flight; "
        "smaller chunks commit more often (more Delta versions, more small files).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    max_attempts: int = Field(
        3, ge=1, description="Attempts per row for retryable failures, across reruns.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    retry_statuses: list[str] = Field(
        default_factory=lambda: ["engine_error", "read_error"],
        description="Row status codes worth retrying on a rerun (transient causes). Other codes "
        "(bad files) are final: rerunning cannot fix a truncated JPEG.",
        json_schema_extra=KEEPS_OUTPUT,
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
        json_schema_extra=KEEPS_OUTPUT,
    )
    replace: bool = Field(
        False,
        description="Describe again the rows of this prompt version and model that another run "
        "fingerprint made (the prompt's content or a setting that changes the output differs: "
        "sampling, model revision, dtype, pixel bounds...). Off: such a run refuses to start. "
        "The table's Delta history keeps the old rows.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    run_name: str | None = Field(
        None, description="MLflow run name; default derived.", json_schema_extra=KEEPS_OUTPUT
    )
    plan_run: str | None = Field(
        None,
        description="MLflow run id of a `candid plan` (`candid describe --plan RUN`): the run "
        "logs and prints its actual figures against the planned ones.",
        json_schema_extra=KEEPS_OUTPUT,
    )

    _absolute_tables = field_validator("input_table", "results_table")(absolute_table_ref)

    @field_validator("sampling", mode="before")
    @classmethod
    def _no_overrides(cls, value: Any) -> Any:
        return {} if value is None else value  # `sampling:` left empty in a YAML file

    @field_validator("max_flag_rate")
    @classmethod
    def _known_flags_and_rates(cls, value: dict[str, float]) -> dict[str, float]:
        from udfs.outputs.guardrails import check_max_flag_rate

        check_max_flag_rate(value)
        return value


class IngestConfig(StrictModel):
    """The ingest job: a folder of images or a manifest into the input Delta table."""

    source: str = Field(
        ..., description="A manifest (.txt/.csv/.jsonl/.parquet file or folder, or a Delta "
        "table: read by Spark on the executors, any size, any Hadoop filesystem), or a folder "
        "of images (listed on the driver: for local folders of up to ~100 k files; list an "
        "object store into a manifest instead, docs/operations.md).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    source_format: Literal["auto", "folder", "txt", "csv", "jsonl", "parquet", "delta"] = Field(
        "auto",
        description="auto: by the source's ending (.txt, .csv, .jsonl, .parquet), else a Delta "
        "table if it is one, else a folder of images. Set it for a Parquet folder or a manifest "
        "without an ending.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    path_column: str = Field(
        "path", min_length=1,
        description="Column of image paths in a .csv/.jsonl/Parquet/Delta manifest (a .txt "
        "manifest is one path per line).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    id_column: str = Field(
        "image_id", min_length=1,
        description="Optional column of ids in a .csv/.jsonl/Parquet/Delta manifest; a row "
        "without one gets the id derived from its path (as for folders).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    table: str = Field(
        ..., description="Input Delta table (path or metastore name).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    recursive: bool = Field(
        True, description="Descend into sub-folders of `source`.", json_schema_extra=KEEPS_OUTPUT
    )
    hash_content: bool = Field(
        True,
        description="Read every new file once on the executors and store its sha256, so the "
        "describe job describes identical images once. Costs one read of the data at ingest.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    max_file_bytes: int = Field(
        50_000_000, ge=1, description="Files larger than this get no content hash.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    extensions: list[str] = Field(
        default_factory=lambda: [".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"],
        description="File endings taken from a folder (case-insensitive); manifests take all.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    spark: SparkSettings = Field(default_factory=SparkSettings, description="SparkSession.")

    _absolute_table = field_validator("table")(absolute_table_ref)

    @field_validator("source")
    @classmethod
    def _absolute_source(cls, value: str) -> str:
        # Spark resolves relative paths against its own working directory, not ours.
        if "://" not in value and Path(value).exists():
            return str(Path(value).resolve())
        return absolute_table_ref(value)

    @model_validator(mode="after")
    def _extensions_are_suffixes(self) -> IngestConfig:
        bad = [e for e in self.extensions if not e.startswith(".")]
        if bad:
            raise ValueError(f"extensions must start with '.', got {bad}")
        return self
