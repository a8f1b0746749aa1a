"""``candid eval`` and ``candid audit`` refuse bad arguments before Spark starts (exit 2, one
line naming the problem), and read only the spark and mlflow sections of a job config."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.cli import EXIT_CONFIG, build_parser, main
from jobs.commandline.commands import config_from
from jobs.config import ConfigError
from jobs.evaluation.commands import EVAL_EXPERIMENT, EvalSettings

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "conf" / "demo.yaml")


def _fails_before_spark(argv: list[str], capsys, expected: str) -> None:
    assert main(argv) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert expected in err, err
    assert "[spark]" not in err


def test_a_metastore_table_needs_an_images_folder(capsys):
    _fails_before_spark(["eval", "make-dataset", "--out", "db.scenes"], capsys,
                        "--images is needed: 'db.scenes' is a metastore name")


def test_scene_count_is_checked(capsys):
    _fails_before_spark(["eval", "make-dataset", "--out", "/tmp/x", "--n", "0"], capsys,
                        "--n must be within 1..")


def test_score_checks_the_difference_to_detect(capsys):
    _fails_before_spark(["eval", "score", "--results", "/r", "--truth", "/t", "--detect",
                         "1.5"], capsys, "--detect must be a difference between 0 and 1, got 1.5")


def test_compare_checks_the_difference_to_detect(capsys):
    _fails_before_spark(["compare", "--config", DEMO, "--prompts", "v1,v2", "--detect", "0"],
                        capsys, "--detect must be a difference between 0 and 1, got 0.0")


def test_audit_checks_its_probe_prompt_and_sample(capsys, tmp_path):
    bad = tmp_path / "probe_v9.yaml"
    bad.write_text("name: probe\nversion: v9\nsystem: s\ninstructions: no placeholder\n")
    _fails_before_spark(["audit", "--config", DEMO, "--probe-prompt", str(bad)], capsys,
                        "instructions must contain {question} exactly once")
    _fails_before_spark(["audit", "--config", DEMO, "--sample", "0"], capsys,
                        "--sample and --batch-rows must be at least 1")


def test_eval_settings_take_spark_and_mlflow_from_any_job_config():
    args = build_parser().parse_args(["eval", "score", "--results", "r", "--truth", "t",
                                      "--config", DEMO])
    settings = config_from(args, EvalSettings)
    assert settings.mlflow.experiment == "candid-demo"  # the demo config's own
    assert settings.spark.profile == "conf/spark/local.yaml"
    plain = build_parser().parse_args(["eval", "score", "--results", "r", "--truth", "t"])
    assert config_from(plain, EvalSettings).mlflow.experiment == EVAL_EXPERIMENT


def test_eval_settings_stay_strict_inside_their_sections():
    args = build_parser().parse_args(["eval", "score", "--results", "r", "--truth", "t",
                                      "--set", "mlflow.experimnt=x"])
    with pytest.raises(ConfigError, match="mlflow.experimnt"):
        config_from(args, EvalSettings)
