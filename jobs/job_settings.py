"""The settings every job shares: how the driver builds its SparkSession (``SparkSettings``) and
where runs are logged (``TrackingSettings``), and how paths in a config are read. Each job's
config (``jobs.config``) holds these as its ``spark`` and ``mlflow`` fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from udfs.settings import KEEPS_OUTPUT, StrictModel

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


class SparkSettings(StrictModel):
    """How the driver builds its SparkSession."""

    profile: str | None = Field(
        DEFAULT_SPARK_PROFILE,
        description="YAML file of Spark confs (conf/spark/*.yaml); None uses only `conf`.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    master: str | None = Field(
        None, description="Overrides the profile's master; leave unset under spark-submit.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    app_name: str = Field(
        "candid", description="Spark application name.", json_schema_extra=KEEPS_OUTPUT
    )
    conf: dict[str, str] = Field(
        default_factory=dict, description="Extra Spark confs, applied after the profile.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    delta_jars: Literal["resolve", "provided"] = Field(
        "resolve",
        description="resolve: Spark fetches Delta's jars and their dependencies from Maven "
        "Central only (`ivy_settings`) into `ivy_home`, whatever ~/.m2 or ~/.ivy2* hold. "
        "provided: Delta is on the classpath already (Databricks, a cluster image): nothing is "
        "resolved.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    ivy_settings: str | None = Field(
        DEFAULT_IVY_SETTINGS,
        description="Ivy settings file (spark.jars.ivySettings) whose only resolver is Maven "
        "Central; relative paths are taken from the working directory, then the project root. "
        "None: Spark's own chain, which looks in ~/.m2 first (breaks where ~/.m2 holds a pom "
        "without its jar).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    ivy_home: str = Field(
        DEFAULT_IVY_HOME,
        description="Ivy home for the resolved jars (spark.jars.ivy). Project-local, so a broken "
        "user-wide Ivy cache cannot poison it; delete it to resolve afresh.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    archive: str | None = Field(
        None,
        description="Packed Python environment for spark-submit (`make dist`: "
        "build/dist/candid-env-gpu.tar.gz, or an hdfs:// / s3:// URI of it). submit-args "
        "ships it with --archives as ./environment and runs the Python workers with "
        "./environment/bin/python. None: the nodes' own Python (the wheel installed by an init "
        "script), or this interpreter for a local master.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    deploy_mode: Literal["client", "cluster"] = Field(
        "client",
        description="spark-submit's deploy mode. client: the driver runs where spark-submit "
        "runs, with this interpreter. cluster (YARN, Kubernetes): the driver runs on the "
        "cluster, from the archive.",
        json_schema_extra=KEEPS_OUTPUT,
    )

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_values_as_text(cls, value: Any) -> Any:
        """YAML and ``--set`` read ``8`` and ``true`` as a number and a boolean; Spark confs
        are text (``spark.sql.shuffle.partitions: 8`` means "8", a boolean is "true")."""
        if not isinstance(value, dict):
            return value
        return {k: (str(v).lower() if isinstance(v, bool) else str(v))
                if isinstance(v, (bool, int, float)) else v for k, v in value.items()}


class TrackingSettings(StrictModel):
    """Where and how runs are logged to MLflow (from the driver only)."""

    enabled: bool = Field(
        True, description="Log the run to MLflow.", json_schema_extra=KEEPS_OUTPUT
    )
    tracking_uri: str = Field(
        "sqlite:///build/mlflow/mlflow.db",
        description="MLflow tracking URI; the default is a project-local sqlite store.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    artifact_location: str | None = Field(
        "build/mlflow/artifacts",
        description="Artifact root for a newly created experiment (local folder or URI).",
        json_schema_extra=KEEPS_OUTPUT,
    )
    experiment: str = Field(
        "candid-describe", description="Experiment name.", json_schema_extra=KEEPS_OUTPUT
    )
    sample_rows: int = Field(
        20, ge=0, description="Result rows logged with mlflow.log_table for a quick look.",
        json_schema_extra=KEEPS_OUTPUT,
    )
    on_error: Literal["warn", "fail"] = Field(
        "warn",
        description="If MLflow is unreachable: warn loudly and continue (Delta is the source "
        "of truth), or fail the job after the results are written.",
        json_schema_extra=KEEPS_OUTPUT,
    )
