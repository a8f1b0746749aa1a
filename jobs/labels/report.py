"""``candid labels score`` in words (the lines the CLI prints and logs) and as MLflow metrics.

A figure that the data cannot support (kappa when both sides gave one answer to every row,
precision with nothing flagged, AUROC with a class without rows) is printed as "not
estimable" with the counts, never as a zero-width interval; every interval printed comes from a
method whose coverage is measured (docs/EVAL.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.labels.measures import (
    GroupScore,
    KindEstimate,
    Separation,
    SignalAgreement,
    StratumScore,
)
from jobs.review.html_text import words
from udfs.evaluation.agreement import Kappa
from udfs.evaluation.intervals import RateCI

# MLflow metric names: letters, digits, _ - . / and spaces; anything else becomes _.
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


@dataclass(frozen=True)
class ScoreSources:
    """The tables ``candid labels score`` reads, and whose labels it counts."""

    results_table: str
    labels_table: str
    audit_table: str | None = None
    reviewer: str | None = None


@dataclass
class LabelsReport:
    """What ``candid labels score`` measured; printed by the CLI and logged to MLflow."""

    sources: ScoreSources
    run_id: str
    labels: int
    outputs: int
    not_in_results: int
    reviewers: list[str]
    audit_used: bool
    confidence_columns: list[str]
    groups: list[GroupScore] = field(default_factory=list)
    tracking_failures: list[str] = field(default_factory=list)


def score_lines(report: LabelsReport) -> list[str]:
    """What the CLI prints: per group the error rates (scaled to its rows) and agreements."""
    s = report.sources
    lines = [f"labels: {report.labels} from {len(report.reviewers)} reviewer(s) on "
             f"{report.outputs} outputs; {report.not_in_results} of them are not ok rows of "
             f"{s.results_table} now and were left out"]
    if not report.audit_used:
        where = f" at {s.audit_table}" if s.audit_table else ""
        lines.append(f"  (no self-check audit table{where}: run candid audit to compare it with "
                     "the labels)")
    for group in report.groups:
        lines += _group_lines(group)
    return lines


def _group_lines(group: GroupScore) -> list[str]:
    fingerprint = group.run_fingerprint or "unknown"
    lines = [f"{group.label} on {group.model} (fingerprint {fingerprint}): {group.labelled} "
             f"labelled of {group.population} ok rows, {group.reviewers} reviewer(s) at most "
             "per output"]
    for stratum in group.strata:
        lines += _stratum_lines(stratum)
    lines.append(f"  guardrail flags vs any error: {agreement_text(group.guardrails)}")
    if group.audit is not None:
        lines.append(f"  self-check audit vs invented feature: {agreement_text(group.audit)}")
    for column, separation in group.confidence.items():
        lines.append(f"  {column} separating invented features from correct outputs: "
                     f"{auroc_text(separation)}")
    return lines


def _stratum_lines(stratum: StratumScore) -> list[str]:
    head = f"  {stratum.name}: {stratum.labelled} labelled of {stratum.population} ok rows"
    if not stratum.labelled:
        return [head + " (no labels: nothing measured)"]
    return [head] + [f"    {words(kind)}: {estimate_text(e)}" for kind, e in
                     stratum.kinds.items()]


def rate_text(ci: RateCI | None) -> str:
    """``12.5% (95% CI 4.2%..26.8%, 5 of 40)``; ``no data`` without labels."""
    if ci is None:
        return "no data"
    return (f"{ci.estimate:.1%} ({ci.confidence:.0%} CI {ci.low:.1%}..{ci.high:.1%}, "
            f"{ci.events:g} of {ci.total:g})")


def estimate_text(e: KindEstimate) -> str:
    """The rate and the rows of this kind it implies among the stratum's ok rows."""
    if e.rate is None or e.rows is None or e.rows_low is None or e.rows_high is None:
        return "no data"
    return (f"{rate_text(e.rate)}: about {e.rows:,.0f} rows ({e.rows_low:,.0f}.."
            f"{e.rows_high:,.0f}) of {e.population:,}")


def kappa_text(k: Kappa) -> str:
    """Kappa with its interval, or why there is neither (never a zero-width interval)."""
    if k.kappa is None or k.low is None or k.high is None:
        return f"kappa undefined, not estimable (both sides gave one answer to all {k.n} rows)"
    return f"kappa {k.kappa:.2f} ({k.confidence:.0%} CI {k.low:.2f}..{k.high:.2f}, n={k.n})"


def agreement_text(a: SignalAgreement) -> str:
    flags = a.flags
    precision = (rate_text(flags.precision) if flags.precision is not None
                 else "not estimable (nothing flagged)")
    recall = (rate_text(flags.recall) if flags.recall is not None
              else "not estimable (the person marked no row)")
    return f"{kappa_text(a.kappa)}; precision {precision}; recall {recall}"


def auroc_text(s: Separation) -> str:
    counts = f"{s.invented} invented vs {s.correct} correct"
    if s.auroc is None:
        return f"not estimable ({counts})"
    a = s.auroc
    return f"AUROC {a.estimate:.2f} ({a.confidence:.0%} CI {a.low:.2f}..{a.high:.2f}, {counts})"


def score_metrics(groups: Sequence[GroupScore]) -> dict[str, float]:
    """Every figure with its bounds, as MLflow metrics named ``<group>.<stratum>.<kind>.rate``
    (with ``.ci_low``, ``.ci_high``) and ``.rows`` (with ``.rows.ci_low``, ``.rows.ci_high``),
    ``<group>.guardrails.kappa`` and so on; figures that are not estimable are left out."""
    metrics: dict[str, float] = {}
    for name, group in zip(group_names(groups), groups, strict=True):
        metrics[f"{name}.labelled"] = group.labelled
        metrics[f"{name}.population"] = group.population
        for stratum in group.strata:
            for kind, e in stratum.kinds.items():
                metrics.update(_estimate_metrics(f"{name}.{_safe(stratum.name)}.{kind}", e))
        for signal, agreement in (("guardrails", group.guardrails), ("audit", group.audit)):
            if agreement is not None:
                metrics.update(_agreement_metrics(f"{name}.{signal}", agreement))
        for column, separation in group.confidence.items():
            metrics.update(_rate_metrics(f"{name}.{column}.auroc", separation.auroc))
    return metrics


def group_names(groups: Sequence[GroupScore]) -> list[str]:
    """``describe.v2``, with the fingerprint's start when two groups share a prompt version."""
    plain = [_safe(f"{g.prompt_name}.{g.prompt_version}") for g in groups]
    return [name if plain.count(name) == 1 else f"{name}.{(g.run_fingerprint or 'unknown')[:8]}"
            f".{_safe(g.model)[-24:]}" for name, g in zip(plain, groups, strict=True)]


def _estimate_metrics(prefix: str, e: KindEstimate) -> dict[str, float]:
    if e.rate is None or e.rows is None or e.rows_low is None or e.rows_high is None:
        return {}
    return {**_rate_metrics(f"{prefix}.rate", e.rate),
            **_interval_metrics(f"{prefix}.rows", e.rows, e.rows_low, e.rows_high)}


def _agreement_metrics(prefix: str, a: SignalAgreement) -> dict[str, float]:
    metrics = _interval_metrics(f"{prefix}.kappa", a.kappa.kappa, a.kappa.low, a.kappa.high)
    metrics.update(_rate_metrics(f"{prefix}.precision", a.flags.precision))
    metrics.update(_rate_metrics(f"{prefix}.recall", a.flags.recall))
    metrics[f"{prefix}.n"] = a.n
    return metrics


def _rate_metrics(key: str, ci: RateCI | None) -> dict[str, float]:
    return {} if ci is None else _interval_metrics(key, ci.estimate, ci.low, ci.high)


def _interval_metrics(key: str, estimate: float | None, low: float | None,
                      high: float | None) -> dict[str, float]:
    if estimate is None or low is None or high is None:  # not estimable: nothing logged
        return {}
    return {key: estimate, f"{key}.ci_low": low, f"{key}.ci_high": high}


def _safe(text: str) -> str:
    return _METRIC_UNSAFE.sub("_", text).replace(" ", "_")
