"""``input.*``: the input table's column names, checked before Spark starts; and the canary
runs of ``candid compare``, whose sample has Candid's own columns whatever the input's are."""

from pathlib import Path

import pytest

from jobs.config import ConfigError, DescribeConfig, InputSettings, load_config
from jobs.evaluation.compare import _canary_config
from udfs.prompts import PromptSpec

BASE = ["input_table=/t", "results_table=/r", "engine.model=m"]


def _config(*overrides: str) -> DescribeConfig:
    return load_config(DescribeConfig, None, [*BASE, *overrides])


def test_defaults_read_the_table_candid_ingest_writes():
    settings = _config().input
    assert (settings.id_column, settings.path_column, settings.filter) == ("image_id", "path", None)
    assert (settings.extra_columns, settings.content_hash_column) == ([], "content_sha256")


def test_a_users_column_names_filter_and_derived_ids_are_accepted():
    settings = _config("input.id_column=null", "input.path_column=image_uri",
                       "input.filter=category = 'shoes'", "input.extra_columns=[category]").input
    assert settings.id_column is None
    assert (settings.path_column, settings.filter) == ("image_uri", "category = 'shoes'")
    assert settings.extra_columns == ["category"]


def test_a_column_named_twice_is_refused_with_the_names():
    with pytest.raises(ConfigError, match=r"repeat a name: \['sku', 'sku'\]"):
        _config("input.id_column=sku", "input.path_column=sku")


def test_compare_canaries_read_the_sample_with_candids_own_columns(tmp_path: Path):
    config = _config("input.id_column=sku", "input.path_column=image_uri",
                     "input.filter=category = 'shoes'", "input.extra_columns=[category]")
    prompt = PromptSpec(name="describe", version="v9", system="s", instructions="i")
    canary = _canary_config(config, prompt, tmp_path)
    assert canary.input_table == str(tmp_path / "sample")
    assert canary.input == InputSettings()
    assert canary.input.filter is None and canary.input.id_column == "image_id"
