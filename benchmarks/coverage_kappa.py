"""The kappa part of the coverage benchmark (``benchmarks/bench_coverage.py`` runs it): a
person and a signal answer yes/no on n rows, with yes rates (person, signal) and a true Cohen's
kappa from ``KAPPA_SETTINGS``; the 2x2 table is multinomial. Coverage is over the data sets
where kappa is defined (not both raters giving one answer to every row), with how many those
are; beside it the Wald interval of Fleiss, Cohen & Everitt's standard error that the product
printed before, as a baseline.
"""

from __future__ import annotations

from functools import cache
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np

from benchmarks.coverage_tally import BAND, CONFIDENCE, Interval, mark, tally
from udfs.evaluation.agreement import Kappa, cohens_kappa

KAPPA_METHOD = "cohens_kappa"
KAPPA_SIZES = (20, 50, 200)
# (the person's yes rate, the signal's yes rate, the true kappa): a rare error (10 %) that a
# signal misses entirely, half finds, mostly finds; commoner errors; a signal that says yes
# more often than the person.
KAPPA_SETTINGS = ((0.1, 0.1, 0.0), (0.1, 0.1, 0.4), (0.1, 0.1, 0.8), (0.3, 0.3, 0.8),
                  (0.5, 0.5, 0.0), (0.5, 0.5, 0.4), (0.5, 0.5, 0.8), (0.2, 0.4, 0.4))
# The random stream of kappa points (after the six methods of bench_coverage.METHODS).
KAPPA_STREAM = 6


class KappaBounds(NamedTuple):
    """A kappa interval as coverage sees it; ``events``: the rarer rater's yes answers."""

    low: float
    high: float
    events: float


def kappa_cells(yes_a: float, yes_b: float, kappa: float) -> np.ndarray:
    """P(both yes), P(A only), P(B only), P(neither) for two raters with these yes rates
    and this Cohen's kappa: agreement beyond chance moves ``delta`` = kappa (1 - pe) / 2
    from each discordant cell to each concordant one.

    Example:
        >>> kappa_cells(0.5, 0.5, 0.4).round(2).tolist()
        [0.35, 0.15, 0.15, 0.35]
    """
    expected = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    delta = kappa * (1 - expected) / 2
    cells = np.array([yes_a * yes_b + delta, yes_a * (1 - yes_b) - delta,
                      (1 - yes_a) * yes_b - delta, (1 - yes_a) * (1 - yes_b) + delta])
    if (cells < 0).any():
        raise ValueError(f"kappa {kappa} is impossible with yes rates {yes_a}, {yes_b}")
    return cells


@cache
def _kappa(table: tuple[int, int, int, int]) -> Kappa:
    """The product's kappa for a 2x2 table (cached: the same table, the same interval)."""
    both, a_only, b_only, neither = table
    return cohens_kappa([[both, a_only], [b_only, neither]], CONFIDENCE)


def kappa_point(n: int, setting: tuple[float, float, float], sets: int, seed: int
                ) -> dict[str, Any]:
    """Simulated coverage of the kappa interval for n rows at one of ``KAPPA_SETTINGS``;
    under ``wald`` the same for the Wald interval of the standard error kappa also reports
    (the interval the product printed before; not estimable when that error is 0)."""
    yes_a, yes_b, truth = setting
    rng = np.random.default_rng([seed, n, *(int(v * 1000) for v in setting), KAPPA_STREAM])
    outcomes: list[tuple[Interval | None, float]] = []
    wald: list[tuple[Interval | None, float]] = []
    z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)
    for table in rng.multinomial(n, kappa_cells(*setting), size=sets):
        both, a_only, b_only, _ = (int(v) for v in table)
        rarer = min(both + a_only, both + b_only)
        k = _kappa(tuple(int(v) for v in table))
        if k.kappa is None or k.low is None or k.high is None or k.se is None:
            outcomes.append((None, truth))
            wald.append((None, truth))
            continue
        outcomes.append((KappaBounds(k.low, k.high, rarer), truth))
        wald.append((KappaBounds(max(-1.0, k.kappa - z * k.se), min(1.0, k.kappa + z * k.se),
                                 rarer) if k.se > 0 else None, truth))
    return {"method": KAPPA_METHOD, "n": n, "yes_a": yes_a, "yes_b": yes_b, "kappa": truth,
            "sets": sets, **tally(outcomes), "wald": tally(wald)}


def kappa_markdown(result: dict[str, Any], wald: bool = False) -> str:
    """The kappa coverage table: one row per setting, one column per n; a cell says how many
    data sets had an interval when not all did. ``wald``: the Wald baseline's table."""
    rows = ["| person's yes rate | signal's yes rate | true kappa | "
            + " | ".join(f"n={n}" for n in KAPPA_SIZES) + " |",
            "|---:|---:|---:|" + "---:|" * len(KAPPA_SIZES)]
    by_key = {(pt["yes_a"], pt["yes_b"], pt["kappa"], pt["n"]): pt
              for pt in result.get("kappa_points", [])}
    for setting in dict.fromkeys(key[:3] for key in by_key):
        cells = []
        for n in KAPPA_SIZES:
            pt = by_key[(*setting, n)]
            shown = pt["wald"] if wald else pt
            defined = ("" if shown["defined"] == pt["sets"] else
                       f" [{shown['defined']} {'estimable' if wald else 'defined'}]")
            if shown["coverage"] is None:
                cells.append("n/a")
                continue
            flag = (" **(below)**" if shown["coverage"] < BAND[0] else "") if wald else mark(pt)
            cells.append(f"{shown['coverage']:.3f}{flag}{defined}")
        rows.append("| " + " | ".join(f"{v:g}" for v in setting) + " | " + " | ".join(cells)
                    + " |")
    return "\n".join(rows)
