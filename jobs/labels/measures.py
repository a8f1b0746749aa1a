"""What human labels measure, from labelled rows already joined with their result row (and
audit row): pure Python, no Spark (``jobs.labels.score`` gathers the rows).

Every interval comes from a method whose coverage is measured (docs/EVAL.md). Per output group
(prompt version, model, run fingerprint):

- the human-measured rate of each error kind, with its Clopper-Pearson interval
  (``share_interval``), and the estimated number of rows of that kind among the group's ok rows
  (the population the labelling page sampled at random): N times the rate and N times each
  bound. Without a finite-population correction the interval is slightly conservative when a
  large share of the rows is labelled.
- the same per ``low_visibility`` stratum (each stratum's own N);
- agreement of the guardrails (any flag) with "the person found an error", and of the
  self-check audit (an unconfirmed claim) with "the person found an invented feature": Cohen's
  kappa with its interval (``udfs.evaluation.agreement``), precision and recall with
  Clopper-Pearson intervals (``separation.flag_agreement``);
- how well each confidence column (token log-probability, lower = less sure) separates
  invented features from correct outputs: AUROC with ``separation.auroc_interval``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from jobs.review.vocabulary import CORRECT, ERROR_KINDS, HALLUCINATION
from udfs.evaluation.agreement import Kappa, kappa_of_pairs
from udfs.evaluation.intervals import RateCI, share_interval
from udfs.evaluation.separation import FlagAgreement, auroc_interval, flag_agreement

ANY_ERROR = "any_error"
# Columns a result row may carry (newer tables) whose low values should mean "less sure".
CONFIDENCE_COLUMNS = ("mean_logprob", "min_logprob")
STRATA = {True: "low visibility", False: "normal visibility", None: "visibility unknown"}


@dataclass(frozen=True)
class LabelledRow:
    """One labelled output with what Candid measured about it without a person."""

    verdict: str
    low_visibility: bool | None
    flagged: bool
    # True: the self-check audit found an unconfirmed claim; None: no ok audit row.
    audit_unconfirmed: bool | None = None
    confidence: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class KindEstimate:
    """One error kind: its labelled rate and the rows of that kind it implies in the
    population (``population`` ok rows); ``rate`` and the rows are None without labels."""

    kind: str
    rate: RateCI | None
    population: int
    rows: float | None
    rows_low: float | None
    rows_high: float | None


@dataclass(frozen=True)
class StratumScore:
    """Rates of every error kind among the labelled rows of one stratum."""

    name: str
    labelled: int
    population: int
    kinds: dict[str, KindEstimate]


@dataclass(frozen=True)
class SignalAgreement:
    """A yes/no signal against a person's yes/no on the same ``n`` rows: Cohen's kappa, and
    the signal's precision and recall (``flags``) for the person's answer."""

    n: int
    kappa: Kappa
    flags: FlagAgreement


@dataclass(frozen=True)
class Separation:
    """How well one confidence column separates invented features (``invented`` rows) from
    correct outputs (``correct`` rows); ``auroc`` is None when either kind has no row."""

    invented: int
    correct: int
    auroc: RateCI | None


@dataclass(frozen=True)
class GroupScore:
    """Everything ``candid labels score`` reports for one output group."""

    prompt_name: str
    prompt_version: str
    model: str
    run_fingerprint: str | None
    labelled: int
    population: int
    reviewers: int
    strata: list[StratumScore]
    guardrails: SignalAgreement
    audit: SignalAgreement | None
    confidence: dict[str, Separation]

    @property
    def label(self) -> str:
        return f"{self.prompt_name}/{self.prompt_version}"


def kind_estimates(verdicts: Sequence[str], population: int,
                   confidence: float = 0.95) -> dict[str, KindEstimate]:
    """Each error kind's rate among ``verdicts`` (and any error), scaled to ``population``.

    Example:
        >>> e = kind_estimates(["correct"] * 18 + ["wrong_count"] * 2, 1000)["wrong_count"]
        >>> (e.rate.estimate, e.rows, round(e.rows_low), round(e.rows_high))
        (0.1, 100.0, 12, 317)
    """
    n = len(verdicts)
    counts = {kind: sum(v == kind for v in verdicts) for kind in ERROR_KINDS}
    counts[ANY_ERROR] = sum(v != CORRECT for v in verdicts)
    estimates = {}
    for kind, k in counts.items():
        if n == 0:
            estimates[kind] = KindEstimate(kind, None, population, None, None, None)
            continue
        rate = share_interval(k, n, confidence)
        estimates[kind] = KindEstimate(kind, rate, population, population * rate.estimate,
                                       population * rate.low, population * rate.high)
    return estimates


def stratum_scores(rows: Sequence[LabelledRow], populations: Mapping[bool | None, int],
                   confidence: float = 0.95) -> list[StratumScore]:
    """All rows, then one stratum per ``low_visibility`` value that has rows or population."""
    total = sum(populations.values())
    strata = [StratumScore("all", len(rows), total,
                           kind_estimates([r.verdict for r in rows], total, confidence))]
    for value, name in STRATA.items():
        members = [r.verdict for r in rows if r.low_visibility is value]
        if members or populations.get(value):
            size = populations.get(value, 0)
            strata.append(StratumScore(name, len(members), size,
                                       kind_estimates(members, size, confidence)))
    return strata


def signal_agreement(human: Sequence[bool], signal: Sequence[bool],
                     confidence: float = 0.95) -> SignalAgreement:
    """Kappa of ``signal`` and ``human``, and the signal's precision and recall for it.

    Example:
        >>> a = signal_agreement([True, True, False, False], [True, False, False, False])
        >>> (a.n, a.flags.both, a.flags.precision.estimate, a.flags.recall.estimate)
        (4, 1, 1.0, 0.5)
    """
    return SignalAgreement(len(human), kappa_of_pairs(human, signal, confidence),
                           flag_agreement(signal, human, confidence))


def guardrail_agreement(rows: Sequence[LabelledRow], confidence: float = 0.95) -> SignalAgreement:
    """Any guardrail flag against "the person found an error of any kind"."""
    return signal_agreement([r.verdict != CORRECT for r in rows], [r.flagged for r in rows],
                            confidence)


def audit_agreement(rows: Sequence[LabelledRow],
                    confidence: float = 0.95) -> SignalAgreement | None:
    """An unconfirmed claim in the self-check audit against "the person found an invented
    feature", over the rows the audit covered; None when it covered none."""
    audited = [r for r in rows if r.audit_unconfirmed is not None]
    if not audited:
        return None
    return signal_agreement([r.verdict == HALLUCINATION for r in audited],
                            [bool(r.audit_unconfirmed) for r in audited], confidence)


def confidence_separation(rows: Sequence[LabelledRow], columns: Sequence[str],
                          confidence: float = 0.95) -> dict[str, Separation]:
    """Per confidence column: AUROC of "less sure" for invented features against correct
    outputs; rows of other verdicts, and rows without a value, are left out."""
    result = {}
    for column in columns:
        scored = [(r.verdict == HALLUCINATION, float(r.confidence[column])) for r in rows
                  if r.verdict in (HALLUCINATION, CORRECT)
                  and r.confidence.get(column) is not None]
        invented = sum(label for label, _ in scored)
        result[column] = Separation(invented, len(scored) - invented, auroc_interval(
            [score for _, score in scored], [label for label, _ in scored],
            higher_is_suspicious=False, confidence=confidence))
    return result
