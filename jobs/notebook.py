"""What the notebooks in ``notebooks/`` share: their widgets, the job config built from them, and
the SparkSession they run on, so that the notebooks themselves hold no logic.

On Databricks a notebook reads ``dbutils.widgets`` and runs on the cluster's ``spark`` (with
Delta on the classpath). Run as a plain Python file (``python notebooks/describe_images.py``,
or ``runpy`` in the tests) there is no ``dbutils``: ``WidgetShim`` answers instead, with the
values the caller put in the notebook's globals as ``widget_values``, else the environment's
``CANDID_WIDGET_<NAME>``, else each widget's default; and without a ``spark`` global the
session is built from the config's Spark settings, as the CLI builds it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from jobs.config import ConfigError, DescribeConfig, load_config
from jobs.job_settings import SparkSettings, project_file

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENV_PREFIX = "CANDID_WIDGET_"


class Widgets(Protocol):
    """The part of ``dbutils.widgets`` the notebooks use."""

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None: ...  # noqa: N803

    def get(self, name: str) -> str: ...


@dataclass(frozen=True)
class Widget:
    """A text widget: its name, default value and label."""

    name: str
    default: str
    label: str


CONFIG = Widget("config", "conf/cluster-example.yaml", "Config YAML")
TABLE_WIDGETS = (
    Widget("input_table", "", "Input table (blank: from config)"),
    Widget("results_table", "", "Results table (blank: from config)"),
)
OVERRIDES = Widget("overrides", "", "Overrides (key=value, one per line)")
DESCRIBE_WIDGETS = (
    CONFIG, *TABLE_WIDGETS, Widget("prompt_version", "", "Prompt version (blank: from config)"),
    OVERRIDES,
)
COMPARE_WIDGETS = (
    CONFIG, *TABLE_WIDGETS, Widget("prompts", "v1,v2,v3", "Prompt versions"),
    Widget("sample", "200", "Sample size"), Widget("out", "/dbfs/candid/compare", "Output folder"),
    OVERRIDES,
)


class WidgetShim:
    """``dbutils.widgets`` for a notebook run outside Databricks (see module docstring)."""

    def __init__(self, values: Mapping[str, Any] | None = None):
        self._given = {k: str(v) for k, v in (values or {}).items()}
        self._values: dict[str, str] = {}

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:  # noqa: N803
        from_env = os.environ.get(ENV_PREFIX + name.upper())
        self._values[name] = self._given.get(name, from_env if from_env is not None
                                             else defaultValue)

    def get(self, name: str) -> str:
        if name not in self._values:
            raise ConfigError(f"widget {name!r} was never declared")
        return self._values[name]


def widgets_of(namespace: Mapping[str, Any]) -> Widgets:
    """Databricks' widgets when the notebook has ``dbutils``, else the shim."""
    dbutils = namespace.get("dbutils")
    if dbutils is not None:
        return dbutils.widgets
    return WidgetShim(namespace.get("widget_values"))


def read_widgets(namespace: Mapping[str, Any], specs: tuple[Widget, ...]) -> dict[str, str]:
    """Declare ``specs`` (so Databricks shows them) and return their current values."""
    widgets = widgets_of(namespace)
    for spec in specs:
        widgets.text(spec.name, spec.default, spec.label)
    return {spec.name: widgets.get(spec.name).strip() for spec in specs}


def config_from_widgets(values: Mapping[str, str]) -> DescribeConfig:
    """The validated describe config: the YAML file, then the table and prompt widgets, then
    the free-form overrides (later wins). Blank widgets leave the file's value."""
    overrides = [
        f"{field}={values[name]}" for name, field in (
            ("input_table", "input_table"), ("results_table", "results_table"),
            ("prompt_version", "prompt.version"),
        ) if values.get(name)
    ]
    overrides += [line.strip() for line in values.get("overrides", "").splitlines()
                  if line.strip()]
    path = values.get("config")
    return load_config(DescribeConfig, project_file(path) if path else None, overrides)


def prompt_versions(values: Mapping[str, str]) -> list[str]:
    """The compare widget's comma-separated versions, checked like the CLI checks them."""
    versions = [v.strip() for v in values["prompts"].split(",") if v.strip()]
    if len(versions) < 2:
        raise ConfigError(f"prompts: need at least two versions, got {values['prompts']!r}")
    return versions


def sample_size(values: Mapping[str, str]) -> int:
    try:
        size = int(values["sample"])
    except ValueError:
        raise ConfigError(f"sample: {values['sample']!r} is not a whole number") from None
    if size < 1:
        raise ConfigError("sample: must be at least 1")
    return size


def notebook_spark(namespace: Mapping[str, Any], settings: SparkSettings) -> SparkSession:
    """The notebook's ``spark`` (Databricks: the cluster's session, with Delta), checked for a
    GPU layout that would make tasks share a GPU; else a session built like the CLI's."""
    from jobs.cluster.spark_session import build_spark, check_session_gpus

    spark = namespace.get("spark")
    if spark is None:
        from udfs.engines.vllm_env import prepare_process_env

        prepare_process_env()
        return build_spark(settings)
    check_session_gpus(spark, settings)
    return spark
