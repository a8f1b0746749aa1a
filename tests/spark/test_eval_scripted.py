"""The honesty measurements end to end on Spark + Delta + MLflow, with a scripted engine whose
every output this test chooses (tests/scripted_engine.py): ``candid eval make-dataset`` ->
describe v1, v2, v3 -> ``candid eval score`` pins every rate; ``candid audit`` pins the
self-check rates; ``candid compare`` reports intervals and McNemar. The expected values are
worked out by hand in the comments, from the scenes' truth (asserted first, so a change in the
generator fails here with a clear message, not as a wrong rate)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from mlflow import MlflowClient

from jobs.cli import EXIT_CONFIG
from jobs.cli import main as candid_main
from jobs.describe.run import run_describe
from jobs.tables.delta_io import read_table
from tests.conftest import describe_config
from tests.html_dom import Dom
from tests.scripted_engine import key_for_path, make_scripted_engine, write_script
from udfs.evaluation.scenes import render_scene

pytestmark = [pytest.mark.spark]
SEED, N = 5, 6
# What the scenes of seed 5 hold (subject, counted item, count, distractor): checked first.
SCENES = [("table", "leg", 2, "lamp"), ("mug", "mug", 3, "house"), ("chair", "leg", 4, "lamp"),
          ("flower", "petal", 8, "chair"), ("flower", "petal", 8, None), ("car", "wheel", 3, "table")]
V1 = [  # forced-category style: every row invents something
    "A blue table with four legs and a drawer, next to a lamp.",  # drawer; legs 4 != 2; lamp: scope
    "Three orange mugs with handles and a red stripe.",  # handle, stripe; count ok; red drawn nowhere
    "A brown chair with four legs, a backrest and a cushion.",  # cushion; count ok
    "A red flower with five petals, a stem and green leaves next to a chair.",  # leaf; 5 != 8; chair: scope
    "An orange flower with eight petals and a leaf in a pot.",  # pot; count ok
    "A purple car with four wheels and a headlight.",  # headlight; 4 != 3
]
V2 = [  # grounded: nothing invented, counts stated only when right, else abstained
    "A blue table with two legs.",
    "Orange mugs; the exact number cannot be seen clearly.",  # count abstention
    "A brown chair with a backrest; the legs cannot be seen clearly.",  # count abstention
    "A red flower with a green stem.",  # count not stated
    "An orange flower with eight petals and a leaf.",
    "A purple car with three wheels.",
]
V3 = [  # JSON mode (the model's own text; the describe job validates and stores it)
    '{"subject":"a table","colors":["blue"],"count":1,"visible_features":["two legs"],'
    '"not_visible":["drawer"],"confidence":"medium"}',  # count from the features: correct
    '{"subject":"mugs","colors":["orange"],"count":"uncertain","visible_features":[],'
    '"not_visible":["handle"],"confidence":"low"}',  # abstains; handle not a hallucination
    '{"subject":"a chair","colors":"not_visible","count":1,"visible_features":["backrest",'
    '"cushion"],"not_visible":["legs"],"confidence":"low"}',  # cushion invented; legs abstained
    '{"subject":"a flower","colors":["red"],"count":1,"visible_features":["stem","chair"],'
    '"not_visible":[],"confidence":"medium"}',  # the chair is the distractor: scope
    '{"subject":"a flower","colors":["orange"],"count":1,"visible_features":["8 petals",'
    '"leaf"],"not_visible":["pot"],"confidence":"high"}',  # count correct
    "sorry, no JSON today",  # invalid: claims nothing
]
OBJECTS = ("car", "chair", "flower", "house", "lamp", "mug", "table")


def _question(text: str) -> str:
    return f"{text} Answer yes or no."


def _no_other_objects(subject: str) -> dict[str, str]:
    """Controls (absent objects) answered no; every other question takes the default, yes."""
    return {_question(f"Is there a {o} in this image?"): "no" for o in OBJECTS if o != subject}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval-scripted")
    script = tmp / "script.json"
    config = describe_config(tmp, script, input_table=str(tmp / "scenes"), mlflow__sample_rows=2)
    config_file = tmp / "job.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert candid_main(["eval", "make-dataset", "--n", str(N), "--seed", str(SEED), "--out",
                        str(tmp / "scenes"), "--config", str(config_file)]) == 0
    rows = read_table(spark, str(tmp / "scenes")).orderBy("scene_index").collect()
    keys = [key_for_path(r.path, config.images) for r in rows]
    answers = {key: _no_other_objects(subject) for key, (subject, *_) in zip(keys, SCENES, strict=True)}
    answers[keys[0]][_question("Are there exactly 2 legs in this image?")] = "No, there are four."
    answers[keys[1]][_question("Is the mug orange?")] = "I cannot tell."
    answers[keys[2]] = {}  # says yes to everything, controls included
    answers[keys[3]][_question("Is there a stem in this image?")] = "No."
    write_script(script, {v: dict(zip(keys, texts, strict=True)) for v, texts in
                          (("v1", V1), ("v2", V2), ("v3", V3))}, answers, default_answer="yes")
    for version in ("v1", "v2", "v3"):
        described = describe_config(tmp, script, input_table=str(tmp / "scenes"),
                                    prompt__version=version)
        run_describe(described, spark, make_engine=make_scripted_engine)
    return SimpleNamespace(tmp=tmp, config=config, config_file=config_file, rows=rows)


def test_the_scenes_are_the_ones_the_scripts_were_written_for(run):
    seen = [(r.subject, r.count_of, r.true_count, json.loads(r.truth_json)["distractor"])
            for r in run.rows]
    assert seen == SCENES


def test_dataset_is_a_valid_input_table_whose_files_and_truth_match_the_generator(spark, run):
    table = read_table(spark, str(run.tmp / "scenes"))
    assert {"image_id", "path", "source", "ingested_at", "content_sha256"} <= set(table.columns)
    assert [r.image_id for r in run.rows] == [f"scene-5-{i:06d}" for i in range(N)]
    for i, row in enumerate(run.rows):
        scene = render_scene(SEED, i)
        data = Path(row.path).read_bytes()
        assert data == scene.image
        assert row.content_sha256 == hashlib.sha256(data).hexdigest()
        assert json.loads(row.truth_json) == scene.truth
        assert (row.true_count, row.has_distractor) == (scene.truth["count"],
                                                         scene.truth["distractor"] is not None)
    assert Path(run.rows[0].path).parent == run.tmp / "scenes_images"
    results = read_table(spark, run.config.results_table)
    assert results.where("status = 'ok'").count() == 3 * N  # every scripted output arrived


def _content(spark, table: str) -> list[tuple]:
    rows = read_table(spark, table).drop("ingested_at", "path").orderBy("image_id").collect()
    return [tuple(r) for r in rows]


def test_same_seed_same_table_through_the_cli(spark, run):
    again, other = run.tmp / "again", run.tmp / "other"
    for out, seed in ((again, SEED), (other, SEED + 1)):
        assert candid_main(["eval", "make-dataset", "--n", str(N), "--seed", str(seed),
                            "--out", str(out), "--config", str(run.config_file)]) == 0
    assert _content(spark, str(again)) == _content(spark, str(run.tmp / "scenes"))
    assert _content(spark, str(other)) != _content(spark, str(again))
    for a, b in zip(sorted((run.tmp / "scenes_images").iterdir()),
                    sorted((run.tmp / "again_images").iterdir()), strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_make_dataset_refuses_to_overwrite_an_input_table(spark, run, capsys):
    assert candid_main(["eval", "make-dataset", "--n", "2", "--out", run.config.results_table,
                        "--config", str(run.config_file)]) == EXIT_CONFIG
    assert "is not an eval dataset" in capsys.readouterr().err


@pytest.fixture(scope="module")
def scored(run):
    import contextlib
    import io

    page = run.tmp / "eval.html"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = candid_main(["eval", "score", "--results", run.config.results_table, "--truth",
                            str(run.tmp / "scenes"), "--config", str(run.config_file),
                            "--page", str(page)])
    assert code == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    run_id = next(line for line in lines if line.startswith("MLflow run: ")).split(": ")[1]
    client = MlflowClient(tracking_uri=run.config.mlflow.tracking_uri)
    return SimpleNamespace(lines=lines, page=page, run_id=run_id, client=client,
                           metrics=client.get_run(run_id).data.metrics)


# Every rate of every version, worked out by hand from the scripts above.
EXPECTED = {
    "v1": {
        # judged mentions: 3 + 3 + 4 + 4 + 4 + 3 = 21 (scope items out); invented: 7.
        "hallucination_per_mention": 7 / 21, "hallucination_per_description": 1.0,
        "count_correct": 3 / 6, "count_wrong": 3 / 6, "count_abstain": 0.0,
        "count_not_stated": 0.0, "count_accuracy_when_stated": 3 / 6,
        "scope_violation": 2 / 5,  # 5 scenes have a distractor; rows 0 and 3 describe it
        "coverage": (1 + 1 + 1 + 2 / 3 + 1) / 5,  # the mug scene has no present feature
        "color_error": 1 / 8, "subject_named": 1.0,
    },
    "v2": {
        "hallucination_per_mention": 0.0, "hallucination_per_description": 0.0,
        "count_correct": 3 / 6, "count_wrong": 0.0, "count_abstain": 2 / 6,
        "count_not_stated": 1 / 6, "count_accuracy_when_stated": 1.0, "scope_violation": 0.0,
        "coverage": (1 + 1 / 2 + 1 / 2 + 2 / 3 + 1) / 5, "color_error": 0.0,
        "subject_named": 1.0,
    },
    "v3": {
        # judged: 2 + 1 + 3 + 2 + 3 + 0 = 11; invented: the cushion.
        "hallucination_per_mention": 1 / 11, "hallucination_per_description": 1 / 6,
        "count_correct": 2 / 6, "count_wrong": 0.0, "count_abstain": 2 / 6,
        "count_not_stated": 2 / 6, "count_accuracy_when_stated": 1.0,
        "scope_violation": 1 / 5, "coverage": (1 + 1 / 2 + 1 / 2 + 2 / 3 + 0) / 5,
        "color_error": 0.0, "subject_named": 5 / 6, "json_invalid": 1 / 6,
    },
}


def test_score_pins_every_rate_per_prompt_version(scored):
    for version, rates in EXPECTED.items():
        for name, value in rates.items():
            assert scored.metrics[f"{version}.{name}"] == pytest.approx(value), (version, name)
            low, high = (scored.metrics[f"{version}.{name}.ci_{s}"] for s in ("low", "high"))
            assert low <= value + 1e-9 and value - 1e-9 <= high, (version, name, low, high)
        assert scored.metrics[f"{version}.n_images"] == N
    # Rates that no resample can move have a zero-width interval.
    assert scored.metrics["v1.hallucination_per_description.ci_low"] == 1.0
    assert scored.metrics["v2.count_wrong.ci_high"] == 0.0
    assert "v2.json_invalid" not in scored.metrics  # text mode has no JSON to fail


def test_score_pins_the_paired_verdicts(scored):
    m = scored.metrics
    # Every image had a hallucination under v1 and none under v2: 6 discordant pairs, one way.
    assert m["v2_vs_v1.hallucination_per_description.diff"] == -1.0
    assert (m["v2_vs_v1.hallucination_per_description.diff_ci_low"],
            m["v2_vs_v1.hallucination_per_description.diff_ci_high"]) == (-1.0, -1.0)
    assert m["v2_vs_v1.hallucination_per_description.mcnemar_p"] == pytest.approx(2 / 2**6)
    assert m["v2_vs_v1.count_wrong.mcnemar_p"] == pytest.approx(2 / 2**3)  # 3 fixed, 0 broken
    assert m["v2_vs_v1.count_correct.mcnemar_p"] == 1.0  # 2 fixed, 2 broken
    assert m["v2_vs_v1.scope_violation.mcnemar_p"] == pytest.approx(0.5)
    assert m["v3_vs_v2.hallucination_per_description.diff"] == pytest.approx(1 / 6)
    assert "v2_vs_v1.coverage.mcnemar_p" not in m  # not one yes/no per image
    assert "  v2 vs v1: hallucination_per_description 1.00 -> 0.00, diff -1.00 (95% CI " \
        "-1.00..-1.00), McNemar p=0.031 (n=6)" in scored.lines


def test_score_prints_rates_and_logs_the_per_image_table_and_the_page(scored, run):
    summary = next(line for line in scored.lines if line.startswith("scored "))
    assert summary == (f"scored 18 ok result rows of {run.config.results_table} against "
                       f"{run.tmp / 'scenes'} (0 result rows have no truth)")
    v3 = next(line for line in scored.lines if line.startswith("  v3 (describe/v3"))
    assert "JSON mode" in v3 and "count_abstain 0.33 (95% CI" in v3
    table = json.loads(Path(scored.client.download_artifacts(
        scored.run_id, "eval/per_image.json")).read_text())
    assert len(table["data"]) == 3 * N
    assert {a.path for a in scored.client.list_artifacts(scored.run_id, "review")} == {
        "review/eval.html"}
    dom = Dom()
    dom.feed(scored.page.read_text(encoding="utf-8"))
    assert dom.count("tr", "ab-rate") >= len(EXPECTED["v3"])
    assert dom.count("tr", "image-row") == N and dom.count("tr", "prompt-summary") == 3
    assert "verdict-better" in {c for r in dom.having("tr", "ab-verdict") for c in r["class"].split()}


def test_audit_pins_the_self_check_rates(spark, run, capsys):
    out = run.tmp / "audit"
    code = candid_main(["audit", "--config", str(run.config_file), "--sample", "10", "--out",
                        str(out)], make_engine=make_scripted_engine)
    printed = capsys.readouterr().out
    assert code == 0, printed
    # v2 claims: table/leg/blue/2 legs (4), mug/orange (2), chair/backrest/brown (3),
    # flower/stem/green/red (4), flower/leaf/petal/orange/8 petals (5), car/wheel/purple/3 (4).
    assert "audited 6 of 6 sampled ok rows of describe/v2 on test/tiny-qwen2-vl: 22 claims and " \
        "12 controls asked (controls from truth)" in printed
    rows = {r.image_id: r for r in read_table(spark, str(out)).collect()}
    assert rows["scene-5-000000"].unconfirmed == ["count:leg=2"]
    assert rows["scene-5-000001"].unconfirmed == ["color:orange"]  # "I cannot tell": unclear
    assert rows["scene-5-000001"].denied == []
    assert len(rows["scene-5-000002"].control_yes) == 2
    assert rows["scene-5-000003"].denied == ["stem"]
    assert {(r.probe_prompt_name, r.probe_prompt_version, r.described_prompt_version)
            for r in rows.values()} == {("probe", "v1", "v2")}
    run_id = printed.splitlines()[-1].split(": ")[1]
    metrics = MlflowClient(tracking_uri=run.config.mlflow.tracking_uri).get_run(run_id).data.metrics
    assert metrics["unconfirmed_per_claim"] == pytest.approx(3 / 22)
    assert metrics["denied_per_claim"] == pytest.approx(2 / 22)
    assert metrics["rows_with_unconfirmed"] == pytest.approx(3 / 6)
    assert metrics["control_yes_per_control"] == pytest.approx(2 / 12)
    assert metrics["unconfirmed_per_claim.ci_low"] <= 3 / 22 <= metrics["unconfirmed_per_claim.ci_high"]


def test_compare_prints_intervals_and_mcnemar(run, capsys):
    code = candid_main(["compare", "--config", str(run.config_file), "--prompts", "v1,v2",
                        "--sample", "6", "--out", str(run.tmp / "compare")],
                       make_engine=make_scripted_engine)
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "compared v1, v2 on 6 sampled images" in printed
    assert any("describe/v1 (" in line and "ok 6/6" in line for line in printed.splitlines())
    # v2 forbids counts: "two legs", "eight petals", "three wheels" are flagged; v1 lists no
    # such guardrail. 3 discordant images, all one way: p = 2 / 2^3.
    assert "  v2 vs v1: stated_count 0% -> 50%, diff +50% (95% CI " in printed
    assert "McNemar p=0.25 (n=6)" in printed
    assert "  v2 rates (95% CI): ok_rate 100% (95% CI 100%..100%); stated_count 50% (" in printed
