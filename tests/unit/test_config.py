from pathlib import Path

import pytest
import yaml

from jobs.config import ConfigError, DescribeConfig, IngestConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def test_demo_config_validates_and_absolutises_local_tables():
    config = load_config(DescribeConfig, REPO / "conf" / "demo.yaml")
    assert config.engine.backend == "vllm"
    assert Path(config.input_table).is_absolute()
    assert config.prompt.version == "v2"


def test_unknown_key_names_the_field(tmp_path):
    raw = yaml.safe_load((REPO / "conf" / "demo.yaml").read_text())
    raw["engine"]["dtpye"] = "float32"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(DescribeConfig, path)
    assert "engine.dtpye" in str(err.value) and "Extra inputs" in str(err.value)


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"batch_size: Input should be greater than or equal to 1"):
        load_config(DescribeConfig, REPO / "conf" / "demo.yaml", ["batch_size=0"])
    with pytest.raises(ConfigError, match=r"engine.backend: Input should be 'vllm' or 'transformers'"):
        load_config(DescribeConfig, REPO / "conf" / "demo.yaml", ["engine.backend=onnx"])


def test_overrides_are_parsed_as_yaml_values():
    config = load_config(
        DescribeConfig, REPO / "conf" / "demo.yaml",
        ["batch_size=32", "source_column.enabled=false", "engine.vllm.max_num_seqs=4"],
    )
    assert config.batch_size == 32 and config.source_column.enabled is False
    assert config.engine.vllm.max_num_seqs == 4


def test_malformed_yaml_and_bad_override_are_config_errors(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("input_table: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(DescribeConfig, path)
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        load_config(DescribeConfig, REPO / "conf" / "demo.yaml", ["batch_size"])


def test_ingest_extensions_must_be_suffixes():
    with pytest.raises(ConfigError, match="extensions must start with '.'"):
        load_config(IngestConfig, None, ["source=/x", "table=/t", "extensions=[jpg]"])


def test_cluster_example_config_validates():
    config = load_config(DescribeConfig, REPO / "conf" / "cluster-example.yaml")
    assert config.engine.model == "Qwen/Qwen2-VL-7B-Instruct"
    assert config.engine.dtype == "bfloat16"


def test_image_pixel_bounds_are_checked():
    with pytest.raises(ConfigError, match="min_pixels .* must not exceed max_pixels"):
        load_config(DescribeConfig, REPO / "conf" / "demo.yaml",
                    ["images.min_pixels=300000", "images.max_pixels=200000"])
    with pytest.raises(ConfigError, match="images.max_decoded_pixels"):
        load_config(DescribeConfig, REPO / "conf" / "demo.yaml", ["images.max_decoded_pixels=999999999"])
