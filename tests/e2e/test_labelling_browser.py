"""Labelling end to end, as a reviewer does it: ``candid review --label`` on a real describe run
(Spark + Delta + MLflow, a scripted engine whose every output this test chooses) -> the page in
headless Chromium: a name typed, verdicts clicked with the mouse, kept across a reload,
exported as a download -> ``candid labels import`` (twice: the second adds nothing) ->
``candid labels score`` against the results and a real ``candid audit`` table, logged to MLflow.

Expected figures are worked out here from the verdicts this test clicks and from the flags
and audit answers asserted first: kappa and AUROC estimates from sklearn, Clopper-Pearson
bounds from scipy, kappa's posterior interval drawn with scipy, and the AUROC interval's
variances written out."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from scipy import stats
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from jobs.cli import main as candid_main
from jobs.config import IngestConfig
from jobs.describe.run import run_describe
from jobs.tables.delta_io import read_table
from jobs.tables.ingest import run_ingest
from tests.chromium import Browser
from tests.conftest import describe_config
from tests.scripted_engine import key_for_path, make_scripted_engine, write_script
from tests.unit.test_agreement import _posterior_reference

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

# scene index -> (the model's description, the verdict this test's reviewer gives it).
SCRIPT = {
    0: ("A red square on a grey background.", "correct"),
    1: ("This image shows a blue circle.", "correct"),  # generic opener: style, not an error
    2: ("A green triangle with a small handle.", "invented_feature"),
    3: ("Four yellow stars.", "wrong_count"),
    4: ("A shape. A shape. A shape. A shape. A shape.", "unreadable"),
    5: ("A purple ring next to a table in the background.", "out_of_scope"),
    6: ("A white box.", "correct"),
    7: ("A black wheel with a red handle.", "invented_feature"),
}
# The self-check audit: these rows' probes are answered "no" (their claims go unconfirmed).
DENIED = {0, 2, 7}
# Token log-probabilities: one invented feature least sure of all, the other in between.
MEAN_LOGPROB = {0: -0.4, 1: -0.6, 2: -1.9, 3: -0.8, 4: -2.5, 5: -0.7, 6: -0.3, 7: -0.5}
REVIEWER = "Zoë Ångström"
SECOND_REVIEWER = "Second Reviewer"


@pytest.fixture(scope="module")
def run(spark, sample_images, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labelling")
    script = tmp / "script.json"
    config = describe_config(tmp, script)
    config_file = tmp / "job.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json")), encoding="utf-8")
    run_ingest(IngestConfig(source=str(sample_images.folder), table=config.input_table), spark)
    keys = [key_for_path(str(p), config.images) for p in sample_images.paths]
    texts = {keys[i]: text for i, (text, _) in SCRIPT.items()}
    write_script(script, {"v2": texts}, default_answers={keys[i]: "no" for i in DENIED},
                 default_answer="yes")
    described = run_describe(config, spark, make_engine=make_scripted_engine)
    results = config.results_table
    scene = {r.image_id: int(Path(r.path).stem.split("_")[1])
             for r in read_table(spark, results).collect()}
    _add_confidence_columns(spark, results, scene)
    return SimpleNamespace(tmp=tmp, config=config, config_file=config_file, scene=scene,
                           run_id=described.run_id, results=results)


def _add_confidence_columns(spark, results: str, scene: dict[str, int]) -> None:
    """This test's log-probabilities in the columns every results table has (the scripted
    engine records none)."""
    values = spark.createDataFrame(
        [(image_id, MEAN_LOGPROB[i], MEAN_LOGPROB[i] - 1.0) for image_id, i in scene.items()],
        "image_id STRING, mean DOUBLE, low DOUBLE")
    values.createOrReplaceTempView("confidence_values")
    spark.sql(f"MERGE INTO delta.`{results}` t USING confidence_values s "
              "ON t.image_id = s.image_id WHEN MATCHED THEN UPDATE SET "
              "t.mean_logprob = s.mean, t.min_logprob = s.low")


@pytest.fixture(scope="module")
def audited(spark, run):
    out = run.tmp / "results_audit"  # the default name beside the results: score finds it
    code = candid_main(["audit", "--config", str(run.config_file), "--sample", "10",
                        "--out", str(out)], make_engine=make_scripted_engine)
    assert code == 0
    rows = read_table(spark, str(out)).collect()
    unconfirmed = {run.scene[r.image_id] for r in rows if r.unconfirmed}
    assert unconfirmed == DENIED, "the audit did not go as scripted"
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    root = tmp_path_factory.mktemp("chromium")
    (root / "downloads").mkdir()
    chromium = Browser(root / "profile", root / "downloads")
    yield chromium
    chromium.close()


def test_flags_are_the_ones_the_script_was_written_for(spark, run):
    flags = {run.scene[r.image_id]: set(r.guardrail_flags)
             for r in read_table(spark, run.results).collect()}
    assert {i for i, f in flags.items() if f} == {1, 3, 4, 5}
    assert flags[1] == {"generic_opener"} and "stated_count" in flags[3]
    assert "repetition_loop" in flags[4] and flags[5] == {"scope_drift"}


def test_label_click_export_import_score(spark, run, audited, browser, capsys, tmp_path):
    page = tmp_path / "label.html"
    code = candid_main(["review", "--config", str(run.config_file), "--run-id", run.run_id,
                        "--label", "--limit", "8", "--out", str(page)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"labelling page (8 sampled rows): {page}" in printed

    exported = _label_in_the_browser(browser, page, run, tmp_path)
    labels = json.loads(exported.read_text(encoding="utf-8"))
    assert labels["results_table"] == run.results and labels["reviewer"] == REVIEWER
    assert {(run.scene[x["image_id"]], x["verdict"]) for x in labels["labels"]} == {
        (i, verdict) for i, (_, verdict) in SCRIPT.items()}
    assert {x["run_fingerprint"] for x in labels["labels"]} == {
        r.run_fingerprint for r in read_table(spark, run.results).collect()}

    _import_twice(spark, run, exported, capsys)
    _score(run, capsys)


def _label_in_the_browser(browser: Browser, page: Path, run, tmp_path: Path) -> Path:
    browser.open(page)
    assert browser.evaluate("document.getElementById('labelling').dataset.ready") == "true"
    browser.type_into("#reviewer", REVIEWER)
    for image_id, i in run.scene.items():
        row = f'tr[data-image-id="{image_id}"]'
        if i == 6:  # a change of mind: a second click takes the first verdict back
            browser.click(f'{row} button[data-verdict="wrong_count"]')
            browser.click(f'{row} button[data-verdict="wrong_count"]')
        browser.click(f'{row} button[data-verdict="{SCRIPT[i][1]}"]')
    assert browser.evaluate("document.getElementById('label-count').textContent") == \
        "8 of 8 outputs labelled"
    browser.reload()  # kept by the browser, name included
    assert browser.evaluate("document.getElementById('label-count').textContent") == \
        "8 of 8 outputs labelled"
    assert browser.evaluate("document.getElementById('reviewer').value") == REVIEWER
    pressed = browser.evaluate(
        "[...document.querySelectorAll('button.verdict[aria-pressed=\"true\"]')].map(b => "
        "[b.closest('tr').dataset.imageId, b.dataset.verdict])")
    assert {(run.scene[i], v) for i, v in pressed} == {(i, v) for i, (_, v) in SCRIPT.items()}
    browser.screenshot(tmp_path / "labelled.png")
    exported = browser.download("#export-labels")
    assert browser.console == [], browser.console  # no CSP violation, no script error
    return exported


def _import_twice(spark, run, exported: Path, capsys) -> None:
    labels_table = f"{run.results}_labels"
    for attempt, expected in ((1, "8 new, 0 updated, 0 already in"),
                              (2, "0 new, 0 updated, 8 already in")):
        code = candid_main(["labels", "import", str(exported), "--config", str(run.config_file)])
        printed = capsys.readouterr().out
        assert code == 0, printed
        assert f"8 labels in {exported}: {expected} {labels_table}" in printed, attempt
        assert "WARNING" not in printed
    rows = read_table(spark, labels_table).collect()
    assert len(rows) == 8 and {r.reviewer for r in rows} == {REVIEWER}
    assert {(run.scene[r.image_id], r.verdict) for r in rows} == {
        (i, v) for i, (_, v) in SCRIPT.items()}

    # A later file: the same reviewer confirms one label later (an update), a second reviewer
    # agrees on another output (a new row); the rest is already there.
    doc = json.loads(exported.read_text(encoding="utf-8"))
    first, second = doc["labels"][0], dict(doc["labels"][1])
    first["labelled_at"] = "2099-01-01T00:00:00.000Z"
    second["reviewer"] = SECOND_REVIEWER
    doc["labels"].append(second)
    later = exported.with_name("later.json")
    later.write_text(json.dumps(doc), encoding="utf-8")
    assert candid_main(["labels", "import", str(later), "--results", run.results]) == 0
    assert f"9 labels in {later}: 1 new, 1 updated, 7 already in {labels_table}" in \
        capsys.readouterr().out
    rows = read_table(spark, labels_table).collect()
    assert len(rows) == 9 and {r.reviewer for r in rows} == {REVIEWER, SECOND_REVIEWER}
    assert max(r.labelled_at for r in rows).year == 2099


def _exact(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(method="exact")
    return ci.low, ci.high


def _rate_line(kind: str, k: int, n: int, population: int) -> str:
    low, high = _exact(k, n)
    return (f"{kind}: {k / n:.1%} (95% CI {low:.1%}..{high:.1%}, {k} of {n}): about "
            f"{population * k / n:,.0f} rows ({population * low:,.0f}..{population * high:,.0f})"
            f" of {population:,}")


def _auroc_bounds(positives: list[float], negatives: list[float]) -> tuple[float, float]:
    """The AUROC interval written out: the larger of DeLong's and Hanley-McNeil's variance,
    as an effective sample size for Clopper-Pearson."""
    pos, neg = np.array(positives), np.array(negatives)
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    area, m, n = wins.mean(), pos.size, neg.size
    delong = wins.mean(axis=1).var(ddof=1) / m + wins.mean(axis=0).var(ddof=1) / n
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    hanley = (area * (1 - area) + (m - 1) * (q1 - area**2) + (n - 1) * (q2 - area**2)) / (m * n)
    n_eff = area * (1 - area) / max(delong, hanley)
    return (stats.beta.ppf(0.025, area * n_eff, n_eff - area * n_eff + 1),
            stats.beta.ppf(0.975, area * n_eff + 1, n_eff - area * n_eff))


def _score(run, capsys) -> None:
    code = candid_main(["labels", "score", "--results", run.results, "--config",
                        str(run.config_file)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "labels: 9 from 2 reviewer(s) on 8 outputs; 0 of them are not ok rows" in printed
    # 8 ok rows, all labelled: 2 invented features (25%), 5 errors of any kind.
    assert _rate_line("invented feature", 2, 8, 8) in printed
    assert _rate_line("any error", 5, 8, 8) in printed
    assert "invented feature: 25.0% (95% CI 3.2%..65.1%, 2 of 8): about 2 rows (0..5) of 8" in \
        printed  # the same line, written out
    run_id = printed.strip().splitlines()[-1].removeprefix("MLflow run: ")
    client = MlflowClient(tracking_uri=run.config.mlflow.tracking_uri)
    metrics = client.get_run(run_id).data.metrics
    human = [verdict != "correct" for _, verdict in SCRIPT.values()]
    flagged = [i in {1, 3, 4, 5} for i in SCRIPT]
    assert metrics["describe.v2.guardrails.kappa"] == pytest.approx(cohen_kappa_score(human, flagged))
    # Rows both flagged and errors: 3, 4, 5 (1 is flagged but correct; 2 and 7 unflagged).
    table = [[3, 2], [1, 2]]  # rows: error yes/no; columns: flagged yes/no
    low, high = _posterior_reference(table)
    assert metrics["describe.v2.guardrails.kappa.ci_low"] == pytest.approx(low, abs=0.012)
    assert metrics["describe.v2.guardrails.kappa.ci_high"] == pytest.approx(high, abs=0.012)
    assert metrics["describe.v2.guardrails.precision"] == pytest.approx(3 / 4)
    assert (metrics["describe.v2.guardrails.precision.ci_low"],
            metrics["describe.v2.guardrails.precision.ci_high"]) == pytest.approx(_exact(3, 4))
    assert metrics["describe.v2.guardrails.recall"] == pytest.approx(3 / 5)
    assert (metrics["describe.v2.guardrails.recall.ci_low"],
            metrics["describe.v2.guardrails.recall.ci_high"]) == pytest.approx(_exact(3, 5))
    invented = [verdict == "invented_feature" for _, verdict in SCRIPT.values()]
    denied = [i in DENIED for i in SCRIPT]
    assert metrics["describe.v2.audit.kappa"] == pytest.approx(cohen_kappa_score(invented, denied))
    assert metrics["describe.v2.audit.recall"] == 1.0 and metrics["describe.v2.audit.n"] == 8
    assert metrics["describe.v2.audit.recall.ci_low"] == pytest.approx(_exact(2, 2)[0])
    correct_or_invented = [i for i, (_, v) in SCRIPT.items() if v in ("correct", "invented_feature")]
    reference = roc_auc_score([SCRIPT[i][1] == "invented_feature" for i in correct_or_invented],
                              [-MEAN_LOGPROB[i] for i in correct_or_invented])
    assert metrics["describe.v2.mean_logprob.auroc"] == pytest.approx(reference) == 5 / 6
    low, high = _auroc_bounds([-MEAN_LOGPROB[i] for i in (2, 7)],
                              [-MEAN_LOGPROB[i] for i in (0, 1, 6)])
    assert metrics["describe.v2.mean_logprob.auroc.ci_low"] == pytest.approx(low)
    assert metrics["describe.v2.mean_logprob.auroc.ci_high"] == pytest.approx(high)
    assert metrics["describe.v2.all.invented_feature.rows"] == pytest.approx(2.0)
    artifacts = {a.path for a in client.list_artifacts(run_id, "labels")}
    assert artifacts == {"labels/score.json", "labels/score.txt"}
    report = json.loads(Path(client.download_artifacts(run_id, "labels/score.json")).read_text())
    assert report["groups"][0]["labelled"] == 8
    assert report["reviewers"] == sorted([REVIEWER, SECOND_REVIEWER])
    assert report["groups"][0]["reviewers"] == 2  # one output has two labels: the latest counts
