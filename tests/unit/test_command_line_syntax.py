"""The command line's override syntax for dotted map keys (``--conf KEY=VALUE`` and quoted
``--set`` key parts) and the browse hint after a run, per kind of tracking URI."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.cli import build_parser, main
from jobs.commandline.browse import browse_hint
from jobs.commandline.commands import config_from
from jobs.config import ConfigError, DescribeConfig, load_config

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "conf" / "demo.yaml")
ENDPOINT = "spark.hadoop.fs.s3a.endpoint"


def _config(*argv: str) -> DescribeConfig:
    return config_from(build_parser().parse_args(["describe", "--config", DEMO, *argv]))


# --- reaching dotted keys ---------------------------------------------------------------------


def test_the_unquoted_dotted_key_of_the_issue_does_not_reach_spark_conf():
    # What users typed (issue 19): the dots split the Spark key into nested fields.
    with pytest.raises(ConfigError) as err:
        _config("--set", f"spark.conf.{ENDPOINT}=http://minio:9000")
    # ... and the error says how to write it instead.
    assert "spark.conf.spark: Input should be a valid string" in str(err.value)
    assert "--conf KEY=VALUE" in str(err.value)


def test_conf_sets_a_spark_conf_key_with_dots_as_text():
    config = _config("--conf", f"{ENDPOINT}=http://minio:9000",
                     "--conf", "spark.sql.shuffle.partitions=8")
    assert config.spark.conf[ENDPOINT] == "http://minio:9000"
    assert config.spark.conf["spark.sql.shuffle.partitions"] == "8"


def test_conf_keeps_equals_signs_and_yaml_lookalikes_in_the_value():
    config = _config("--conf", "spark.driver.extraJavaOptions=-Da=b -Dc=d",
                     "--conf", "spark.x.flag=yes", "--conf", "spark.x.list=[1, 2]")
    assert config.spark.conf["spark.driver.extraJavaOptions"] == "-Da=b -Dc=d"
    assert config.spark.conf["spark.x.flag"] == "yes"  # not YAML's True
    assert config.spark.conf["spark.x.list"] == "[1, 2]"


def test_a_quoted_set_key_part_may_hold_dots():
    config = _config("--set", f'spark.conf."{ENDPOINT}"=http://minio:9000',
                     "--set", 'spark.conf."spark.sql.shuffle.partitions"=8',
                     "--set", 'spark.conf."spark.ui.enabled"=false')
    assert config.spark.conf == {**config.spark.conf, ENDPOINT: "http://minio:9000",
                                 "spark.sql.shuffle.partitions": "8",
                                 "spark.ui.enabled": "false"}


def test_conf_wins_over_set_and_the_file():
    config = _config("--set", 'spark.conf."spark.sql.shuffle.partitions"=4',
                     "--conf", "spark.sql.shuffle.partitions=16")
    assert config.spark.conf["spark.sql.shuffle.partitions"] == "16"


def test_plain_set_overrides_still_work_and_keep_yaml_values():
    config = _config("--set", "batch_size=32", "--set", "source_column.enabled=false")
    assert config.batch_size == 32 and config.source_column.enabled is False


@pytest.mark.parametrize(("item", "message"), [
    ('spark.conf."spark.x=1', "must look like key.sub=value"),
    ('spark.conf."a"b=1', "quoted key part must end at a dot"),
    ('spark.conf.a"b"=1', "a quote must open a key part"),
    ("spark..conf=1", "empty key part"),
    ('spark.conf.""=1', "empty key part"),
    ("=1", "must look like key.sub=value"),
])
def test_malformed_quoted_keys_are_config_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DescribeConfig, DEMO, [item])


@pytest.mark.parametrize("item", ["no-equals-sign", "=value", "two words=x"])
def test_malformed_conf_is_a_config_error(item):
    with pytest.raises(ConfigError, match="--conf .* must look like KEY=VALUE"):
        load_config(DescribeConfig, DEMO, spark_conf=[item])


def test_validation_errors_spell_dotted_keys_as_set_takes_them():
    with pytest.raises(ConfigError) as err:
        load_config(DescribeConfig, DEMO, ['spark.conf."spark.x.y"=[1, 2]'])
    assert 'spark.conf."spark.x.y": Input should be a valid string' in str(err.value)


def test_conf_reaches_the_printed_spark_submit_options(capsys):
    code = main(["submit-args", "--config", DEMO, "--conf", f"{ENDPOINT}=http://minio:9000",
                 "--set", 'spark.conf."spark.sql.shuffle.partitions"=3'])
    printed = capsys.readouterr().out.split()
    assert code == 0
    assert f"{ENDPOINT}=http://minio:9000" in printed
    assert "spark.sql.shuffle.partitions=3" in printed


def test_every_command_with_a_config_takes_conf():
    parser = build_parser()
    for argv in (["describe", "--config", DEMO], ["review", "--config", DEMO],
                 ["eval", "score", "--results", "r", "--truth", "t"]):
        args = parser.parse_args([*argv, "--conf", "spark.a.b=c"])
        assert args.spark_conf == ["spark.a.b=c"], argv


# --- the browse hint --------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "expected"), [
    ("sqlite:///build/mlflow/mlflow.db",
     "mlflow ui --backend-store-uri sqlite:///build/mlflow/mlflow.db"),
    ("sqlite:////abs/path/my runs.db",
     "mlflow ui --backend-store-uri 'sqlite:////abs/path/my runs.db'"),
    ("postgresql://mlflow@db:5432/mlflow",
     "mlflow ui --backend-store-uri postgresql://mlflow@db:5432/mlflow"),
    ("file:///srv/mlruns",
     "MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri file:///srv/mlruns"),
    ("./mlruns", "MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri ./mlruns"),
])
def test_local_stores_get_a_ui_command(uri, expected):
    assert browse_hint(uri, "0123abcd") == expected


@pytest.mark.parametrize(("uri", "experiment", "expected"), [
    ("http://mlflow:5000", None, "http://mlflow:5000/#/runs/0123abcd"),
    ("https://mlflow.example.com/", None, "https://mlflow.example.com/#/runs/0123abcd"),
    ("https://example.com/mlflow", "12", "https://example.com/mlflow/#/experiments/12/runs/0123abcd"),
    ("HTTPS://example.com", None, "HTTPS://example.com/#/runs/0123abcd"),
])
def test_a_tracking_server_gets_the_runs_url_not_a_ui_command(uri, experiment, expected):
    hint = browse_hint(uri, "0123abcd", experiment)
    assert hint == expected
    assert "mlflow ui" not in hint


def test_a_server_url_without_a_run_is_the_server_itself():
    assert browse_hint("http://mlflow:5000") == "http://mlflow:5000/"


def test_credentials_in_the_uri_are_never_printed():
    hint = browse_hint("https://alice:s3cret@mlflow.example.com", "r1")
    assert "s3cret" not in hint and hint.endswith("mlflow.example.com/#/runs/r1")
    assert "s3cret" not in browse_hint("postgresql://alice:s3cret@db/mlflow")


def test_databricks_points_at_the_workspace():
    assert browse_hint("databricks", "r1") == "in the Databricks workspace: Experiments, run r1"
    assert "mlflow ui" not in browse_hint("databricks://my-profile", "r1")
