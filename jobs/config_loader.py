"""Building a job config: a YAML file or a mapping, then ``--set`` and ``--conf`` overrides,
then Python values, validated as one model. The CLI, the notebooks, the tests and the
benchmarks all build their configs with ``load_config``; ``jobs.config`` declares the models
and re-exports it.

``--set a.b.c=value`` sets a nested field (the value parsed as YAML); a key part in double
quotes is one key even when it holds dots, which is how maps keyed by dotted names (Spark confs)
are reached. ``--conf KEY=VALUE`` sets ``spark.conf[KEY]`` as spark-submit does. Overrides are
applied to the config's data before it is validated; validation errors come back in words.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from udfs.settings import StrictModel

ConfigT = TypeVar("ConfigT", bound=StrictModel)


def load_config(
    model: type[ConfigT], base: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (), spark_conf: Sequence[str] = (), **fields: Any,
) -> ConfigT:
    """The one way to build a job config (the CLI, notebooks, tests and benchmarks use it).

    ``base`` (a YAML file, or a mapping of the same shape), then ``overrides`` (``key.sub=value``
    strings parsed as YAML, as ``--set`` gives them; below), then ``spark_conf``
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


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field."""


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in ``data``; the value is parsed as YAML (numbers, booleans...).

    A key part in double quotes is one key even when it holds dots, which is how a map keyed
    by dotted names is reached: ``spark.conf."spark.hadoop.fs.s3a.endpoint"=http://minio:9000``
    (quote the whole argument for the shell). ``--conf KEY=VALUE`` says the same for Spark
    confs without the quoting (``apply_spark_conf``).

    Example:
        >>> data = {}
        >>> apply_override(data, 'spark.conf."spark.sql.shuffle.partitions"=8')
        >>> data
        {'spark': {'conf': {'spark.sql.shuffle.partitions': 8}}}
    """
    key, raw = _split_override(item)
    set_path(data, _key_parts(key, item), yaml.safe_load(raw) if raw.strip() else None, item)


def set_path(data: dict[str, Any], parts: list[str], value: Any, item: str) -> None:
    """Set ``data[parts[0]][parts[1]]... = value``, making mappings on the way; ``item`` names
    the override in errors."""
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if child is None:  # `conf:` or `engine.vllm:` left empty in a YAML file
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value


def apply_spark_conf(data: dict[str, Any], item: str) -> None:
    """``--conf KEY=VALUE``, as spark-submit has it: sets ``spark.conf[KEY]`` to VALUE as text
    (Spark conf values are strings; nothing is parsed), after every ``--set``.

    Example:
        >>> data = {}
        >>> apply_spark_conf(data, "spark.hadoop.fs.s3a.endpoint=http://minio:9000")
        >>> data
        {'spark': {'conf': {'spark.hadoop.fs.s3a.endpoint': 'http://minio:9000'}}}
    """
    key, sep, value = item.partition("=")
    if not sep or not key.strip() or any(c.isspace() for c in key.strip()):
        raise ConfigError(f"--conf {item!r} must look like KEY=VALUE, e.g. "
                          "spark.hadoop.fs.s3a.endpoint=http://minio:9000")
    spark = data.get("spark")
    if spark is None:
        spark = data["spark"] = {}
    if not isinstance(spark, dict):
        raise ConfigError(f"--conf {item!r}: spark is not a mapping")
    if spark.get("conf") is None:
        spark["conf"] = {}
    if not isinstance(spark["conf"], dict):
        raise ConfigError(f"--conf {item!r}: spark.conf is not a mapping")
    spark["conf"][key.strip()] = value


def _split_override(item: str) -> tuple[str, str]:
    """``key`` and ``value`` of ``key=value``, split at the first ``=`` outside quotes."""
    quoted = False
    for i, char in enumerate(item):
        if char == '"':
            quoted = not quoted
        elif char == "=" and not quoted:
            if item[:i].strip():
                return item[:i].strip(), item[i + 1:]
            break
    raise ConfigError(f"override {item!r} must look like key.sub=value (a key part in double "
                      'quotes may hold dots: spark.conf."spark.x.y"=value)')


def _key_parts(key: str, item: str) -> list[str]:
    """``a."b.c".d`` -> ``["a", "b.c", "d"]``; an empty or half-quoted part is an error."""
    parts: list[str] = []
    current, quoted, was_quoted = "", False, False
    for char in key + ".":
        if char == '"':
            if current and not quoted:
                raise ConfigError(f"override {item!r}: a quote must open a key part")
            quoted, was_quoted = not quoted, True
        elif char == "." and not quoted:
            if not current:
                raise ConfigError(f"override {item!r}: empty key part in {key!r}")
            parts.append(current)
            current, was_quoted = "", False
        elif was_quoted and not quoted:
            raise ConfigError(f"override {item!r}: a quoted key part must end at a dot")
        else:
            current += char
    if quoted:
        raise ConfigError(f"override {item!r}: unbalanced double quote in {key!r}")
    return parts


def format_validation_error(err: ValidationError, path: Any) -> str:
    """Pydantic's errors, one line per field, named as ``--set`` spells them."""
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for problem in err.errors():
        field = ".".join(_shown_part(p) for p in problem["loc"]) or "(root)"
        lines.append(f"  {field}: {problem['msg']}")
    if any(tuple(p["loc"][:2]) == ("spark", "conf") for p in err.errors()):
        lines.append("  (Spark conf keys hold dots: give them as --conf KEY=VALUE, or quote the "
                     "key in --set 'spark.conf.\"KEY\"=VALUE')")
    return "\n".join(lines)


def _shown_part(part: Any) -> str:
    """A field path part as ``--set`` would spell it: dotted map keys in double quotes."""
    text = str(part)
    return f'"{text}"' if "." in text else text
