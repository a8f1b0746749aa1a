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

from udfs.settings import StrictModel


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field."""


ConfigT = TypeVar("ConfigT", bound=StrictModel)


def load_config(
    model: type[ConfigT], base: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (), **fields: Any,
) -> ConfigT:
    """The one way to build a job config (the CLI, notebooks, tests and benchmarks use it).

    ``base`` (a YAML file, or a mapping of the same shape), then ``overrides`` (``key.sub=value``
    strings parsed as YAML, as ``--set`` gives them), then ``fields`` (Python values, ``a__b``
    naming the nested key ``a.b``); later wins. Validated as ``model``.

    Raises:
        ConfigError: unreadable file, bad override, or validation errors (each names its field).
    """
    data = config_data(base, overrides, **fields)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        where = base if isinstance(base, (str, Path)) else None
        raise ConfigError(format_validation_error(err, where)) from None


def config_data(
    base: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = (),
    **fields: Any,
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
    for key, value in fields.items():
        _set_path(data, key.split("__"), value, key)
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in ``data``; the value is parsed as YAML (numbers, booleans...)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    _set_path(data, key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None, item)


def _set_path(data: dict[str, Any], parts: list[str], value: Any, item: str) -> None:
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:  # `engine.vllm:` left empty, then a field of it set
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value


def format_validation_error(err: ValidationError, path: str | Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for problem in err.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "(root)"
        lines.append(f"  {field}: {problem['msg']}")
    return "\n".join(lines)
