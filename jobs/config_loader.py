"""Building a job config: a YAML file or a mapping, then ``--set`` overrides, then Python values,
validated as one model. The CLI, the notebooks, the tests and the benchmarks all build their
configs with ``load_config``; ``jobs.config`` declares the models and re-exports these.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from jobs.overrides import (
    ConfigError,
    apply_override,
    apply_spark_conf,
    format_validation_error,
    set_path,
)
from udfs.settings import StrictModel

ConfigT = TypeVar("ConfigT", bound=StrictModel)


def load_config(
    model: type[ConfigT], base: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (), spark_conf: Sequence[str] = (), **fields: Any,
) -> ConfigT:
    """The one way to build a job config (the CLI, notebooks, tests and benchmarks use it).

    ``base`` (a YAML file, or a mapping of the same shape), then ``overrides`` (``key.sub=value``
    strings parsed as YAML, as ``--set`` gives them; ``jobs.overrides``), then ``spark_conf``
    (``KEY=VALUE`` as ``--conf`` gives them, set in ``spark.conf`` as text), then ``fields``
    (Python values, ``a__b`` naming the nested key ``a.b``); later wins. Validated as ``model``.

    Raises:
        ConfigError: unreadable file, bad override, or validation errors (each names its field).
    """
    data = config_data(base, overrides, spark_conf, **fields)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        where = base if isinstance(base, (str, Path)) else None
        raise ConfigError(format_validation_error(err, where)) from None


def config_data(
    base: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = (),
    spark_conf: Sequence[str] = (), **fields: Any,
) -> dict[str, Any]:
    """``load_config``'s data before validation (e.g. to write a YAML file for a CLI run)."""
    data: dict[str, Any] = {}
    if isinstance(base, Mapping):
        data = copy.deepcopy(dict(base))
    elif base is not None:
        try:
            loaded = yaml.safe_load(Path(base).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {base}: {err}") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {base} must be a YAML mapping")
        data = loaded
    for item in overrides:
        apply_override(data, item)
    for item in spark_conf:
        apply_spark_conf(data, item)
    for key, value in fields.items():
        set_path(data, key.split("__"), value, key)
    return data

