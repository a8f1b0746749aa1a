"""``candid compare`` through the command line (``jobs.cli.main``, in this process and its Spark
session), on a sample that spans several strata (two ingest sources), with a test engine
injected the way library callers inject one."""

from __future__ import annotations

import pytest
import yaml

from jobs.cli import main as candid_main
from jobs.config import IngestConfig
from jobs.demo.run import make_sample_images
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.command_logs import failure_report
from tests.conftest import describe_config
from tests.fakes import make_fake_engine

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


def test_compare_from_the_command_line_over_two_strata(spark, tmp_path, capsys):
    config = describe_config(tmp_path, "fake", mlflow__sample_rows=2)
    for source, seed in (("catalogue-a", 41), ("catalogue-b", 42)):
        folder = make_sample_images(tmp_path / source, count=4, seed=seed).folder
        run_ingest(IngestConfig(source=str(folder), table=config.input_table), spark)
    config_file = tmp_path / "job.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    out = tmp_path / "compare"
    capsys.readouterr()
    code = candid_main(["compare", "--config", str(config_file), "--prompts", "v1,v2",
                        "--sample", "4", "--out", str(out)], make_engine=make_fake_engine)
    stdout, stderr = capsys.readouterr()
    assert code == 0, failure_report(stdout, stderr)

    sample = read_table(spark, str(out / "sample")).collect()
    strata = {r.stratum for r in sample}
    assert len(strata) == 2, strata  # one per source; size and visibility are unknown yet
    assert all(s.split(" | ")[0] in {str(tmp_path / "catalogue-a"), str(tmp_path / "catalogue-b")}
               for s in strata)
    assert f"compared v1, v2 on {len(sample)} sampled images" in stdout
    for version in ("v1", "v2"):
        line = next(line for line in stdout.splitlines() if f"describe/{version} (" in line)
        assert f"ok {len(sample)}/{len(sample)}" in line
    side = read_table(spark, str(out / "side_by_side")).collect()
    assert len(side) == len(sample)
    assert all(r.description_v1 and r.description_v2 for r in side)
    assert (out / "review.html").is_file()
    assert stdout.splitlines()[-1].startswith("MLflow run: ")
