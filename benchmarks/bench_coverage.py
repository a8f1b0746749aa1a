"""Benchmark: the real coverage of every interval the product prints, by simulation.

For each method and each point (n images, true rate p), draw ``--sets`` data sets from a known
truth, compute the product's interval for each (the product's own functions, nothing copied),
and count how often it holds the truth. A 95 % interval should hold it about 95 % of the time;
the goal is 0.93-0.97, except where a method is conservative by design or where the data
cannot vary enough for any interval to land in the band (both said per point).

Data per method (``p`` is always the rate the interval is about):

- ``per_image_rate``: k of n images flagged, k ~ Binomial(n, p). The exact coverage (a sum over
  k) is reported beside the simulated one, with whether any interval method *could* reach the
  band at that point: with k only 0 or 1 in 98 % of data sets, none can.
- ``paired_difference_same``: two versions on the same images, both with rate p, outcomes
  correlated 0.5 (a near-identical prompt); the truth is a difference of 0.
- ``paired_difference_halved``: B is A with half of A's yes images turned to no (a fix that
  works half the time, never breaks a good row); the truth is -p/2.
- ``per_mention_rate``: each image has 1-6 judged mentions; an image's own hallucination
  propensity is drawn from a Beta with mean p and intra-image correlation 0.3 (some
  descriptions invent a lot, most invent nothing), its mentions drawn from it.
- ``paired_mention_difference``: two versions share each image's propensity (the image is what
  makes a model invent) but describe it with their own mentions; the truth is 0.
- ``auroc``: a confidence score for rows hallucinated with probability p, binormal with a true
  AUROC of 0.75; coverage over data sets that have both kinds of rows (p = 0 never does).
- ``cohens_kappa`` (its own table): a person and a signal answer yes/no on n rows, with yes
  rates (person, signal) and a true Cohen's kappa from ``KAPPA_SETTINGS`` (the 2x2 table is
  multinomial); coverage over data sets where kappa is defined (not both raters giving one
  answer to every row), and how many those are.

Run: ``.venv/bin/python benchmarks/bench_coverage.py`` (about 4 minutes on one core; writes
``benchmarks/results/coverage.json``, and the table for ``docs/EVAL.md`` on stdout).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing

from benchmarks.coverage_kappa import (  # noqa: E402
    KAPPA_METHOD,
    KAPPA_SETTINGS,
    KAPPA_SIZES,
    kappa_markdown,
    kappa_point,
)
from benchmarks.coverage_tally import BAND, CONFIDENCE, Interval, mark, tally  # noqa: E402
from udfs.evaluation.intervals import (  # noqa: E402
    RateCI,
    paired_ratio_difference,
    paired_share_difference,
    ratio_interval,
    share_interval,
)
from udfs.evaluation.separation import auroc_interval  # noqa: E402

SIZES = (10, 20, 50, 200)
RATES = (0.0, 0.02, 0.1, 0.5)
DEFAULT_SETS = 2000  # the documented table; simulation standard error about 0.5 point
RESULTS = REPO / "benchmarks" / "results" / "coverage.json"
# Correlation of two versions' outcomes on one image in the "same" paired design.
PAIR_CORRELATION = 0.5
# Intra-image correlation of mentions (Beta-binomial), and mentions per image.
MENTION_ICC = 0.3
MENTIONS = (1, 6)
TRUE_AUROC = 0.75
# Methods conservative by design, and why.
CONSERVATIVE = {
    "per_image_rate": "exact (Clopper-Pearson): coverage >= 95% at every n and p",
    "auroc": "the larger of two variance estimates (DeLong, Hanley-McNeil)",
}

Draw = Callable[[np.random.Generator, int, float], tuple[Interval | None, float]]


@cache
def _share(k: int, n: int) -> RateCI:
    """The product's interval for k of n (the same arguments give the same interval, so a
    cache only saves time)."""
    return share_interval(k, n, CONFIDENCE)


def draw_share(rng: np.random.Generator, n: int, p: float) -> tuple[RateCI | None, float]:
    return _share(int(rng.binomial(n, p)), n), p


def _pairs(rng: np.random.Generator, n: int, cells: tuple[float, float, float]
           ) -> tuple[list[bool], list[bool]]:
    """n images with P(both yes), P(A only), P(B only) as ``cells``."""
    both, a_only, b_only = cells
    u = rng.random(n)
    a = u < both + a_only
    b = (u < both) | ((u >= both + a_only) & (u < both + a_only + b_only))
    return a.tolist(), b.tolist()


def draw_paired_same(rng: np.random.Generator, n: int, p: float) -> tuple[RateCI | None, float]:
    both = p * p + PAIR_CORRELATION * p * (1 - p)
    a, b = _pairs(rng, n, (both, p - both, p - both))
    return paired_share_difference(a, b, CONFIDENCE), 0.0


def draw_paired_halved(rng: np.random.Generator, n: int, p: float
                       ) -> tuple[RateCI | None, float]:
    a, b = _pairs(rng, n, (p / 2, p / 2, 0.0))
    return paired_share_difference(a, b, CONFIDENCE), -p / 2


def _propensities(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    if p == 0:
        return np.zeros(n)
    concentration = 1 / MENTION_ICC - 1
    return rng.beta(p * concentration, (1 - p) * concentration, size=n)


def _mentions(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(MENTIONS[0], MENTIONS[1] + 1, size=n)


def draw_mentions(rng: np.random.Generator, n: int, p: float) -> tuple[RateCI | None, float]:
    mentions = _mentions(rng, n)
    events = rng.binomial(mentions, _propensities(rng, n, p))
    return ratio_interval(events.tolist(), mentions.tolist(), CONFIDENCE), p


def draw_paired_mentions(rng: np.random.Generator, n: int, p: float
                         ) -> tuple[RateCI | None, float]:
    q = _propensities(rng, n, p)
    ma, mb = _mentions(rng, n), _mentions(rng, n)
    xa, xb = rng.binomial(ma, q), rng.binomial(mb, q)
    return paired_ratio_difference(xa.tolist(), ma.tolist(), xb.tolist(), mb.tolist(),
                                   CONFIDENCE), 0.0


def draw_auroc(rng: np.random.Generator, n: int, p: float) -> tuple[RateCI | None, float]:
    labels = rng.random(n) < p
    shift = math.sqrt(2) * NormalDist().inv_cdf(TRUE_AUROC)
    scores = rng.normal(size=n) + shift * labels
    return auroc_interval(scores.tolist(), labels.tolist(), confidence=CONFIDENCE), TRUE_AUROC


METHODS: dict[str, Draw] = {
    "per_image_rate": draw_share,
    "paired_difference_same": draw_paired_same,
    "paired_difference_halved": draw_paired_halved,
    "per_mention_rate": draw_mentions,
    "paired_mention_difference": draw_paired_mentions,
    "auroc": draw_auroc,
}


def coverage_point(method: str, n: int, p: float, sets: int, seed: int) -> dict[str, Any]:
    """Simulated coverage of one method at one point (``_tally``); events are flagged
    images, discordant pairs, hallucinated mentions, hallucinated rows for AUROC."""
    rng = np.random.default_rng([seed, n, int(p * 1000), list(METHODS).index(method)])
    outcomes = [METHODS[method](rng, n, p) for _ in range(sets)]
    return {"method": method, "n": n, "p": p, "sets": sets, **tally(outcomes)}


def exact_share_coverage(n: int, p: float) -> tuple[float, bool]:
    """The per-image rate's exact coverage, and whether ANY interval method could have a
    coverage in the band here: the k each method covers form a run k0..k1, so the coverages
    reachable are the probabilities of such runs."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    covered = sum(pmf[k] for k in range(n + 1)
                  if _share(k, n).low <= p <= _share(k, n).high)
    cumulative = np.concatenate([[0.0], np.cumsum(pmf)])
    reachable = any(BAND[0] <= cumulative[k1 + 1] - cumulative[k0] <= BAND[1]
                    for k0 in range(n + 1) for k1 in range(k0, n + 1))
    return covered, reachable


def verdict(point: dict[str, Any]) -> str:
    """Where the point stands against the band, and why when it is outside."""
    coverage = point["coverage"]
    if coverage is None:
        return "undefined (one class only)"
    if BAND[0] <= coverage <= BAND[1]:
        return "in band"
    if point.get("p") == 0 and coverage > BAND[1]:
        return "above: at p=0 every data set is all-zero and every interval holds 0"
    if coverage > BAND[1] and point.get("band_reachable") is False:
        return "above: no interval can reach the band at this n, p (discrete data)"
    if coverage > BAND[1] and point["method"] in CONSERVATIVE:
        return f"above: conservative by design ({CONSERVATIVE[point['method']]})"
    if coverage > BAND[1]:
        return (f"above: conservative where events are few (at most one event in "
                f"{point['at_most_one_event']:.0%} of data sets)")
    return "BELOW the band"


def run(sets: int, seed: int, methods: list[str]) -> dict[str, Any]:
    points, kappa_points = [], []
    for method in (m for m in methods if m != KAPPA_METHOD):
        for n in SIZES:
            for p in RATES:
                started = time.perf_counter()
                point = coverage_point(method, n, p, sets, seed)
                if method == "per_image_rate":
                    point["exact_coverage"], point["band_reachable"] = exact_share_coverage(n, p)
                point["verdict"] = verdict(point)
                point["seconds"] = round(time.perf_counter() - started, 2)
                points.append(point)
                print(f"{method} n={n} p={p}: {point['coverage']} ({point['verdict']})",
                      file=sys.stderr)
    if KAPPA_METHOD in methods:
        for setting in KAPPA_SETTINGS:
            for n in KAPPA_SIZES:
                started = time.perf_counter()
                point = kappa_point(n, setting, sets, seed)
                point["verdict"] = verdict(point)
                point["seconds"] = round(time.perf_counter() - started, 2)
                kappa_points.append(point)
                print(f"{KAPPA_METHOD} n={n} {setting}: {point['coverage']} "
                      f"({point['verdict']})", file=sys.stderr)
    return {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "numpy": np.__version__,
        "sets_per_point": sets, "seed": seed, "confidence": CONFIDENCE, "band": list(BAND),
        "points": points, "kappa_points": kappa_points,
    }


def markdown(result: dict[str, Any]) -> str:
    """The coverage table for docs/EVAL.md: one row per method and n, one column per p."""
    rows = ["| interval (method) | n | " + " | ".join(f"p={p:g}" for p in RATES) + " |",
            "|---|---:|" + "---:|" * len(RATES)]
    by_key = {(pt["method"], pt["n"], pt["p"]): pt for pt in result["points"]}
    for method in dict.fromkeys(pt["method"] for pt in result["points"]):
        for n in SIZES:
            cells = []
            for p in RATES:
                pt = by_key[(method, n, p)]
                cells.append("n/a" if pt["coverage"] is None else
                             f"{pt['coverage']:.3f}{mark(pt)}")
            rows.append(f"| {method} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, default=DEFAULT_SETS, help="data sets per point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join([*METHODS, KAPPA_METHOD]),
                        help="comma-separated")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--table-from", metavar="JSON", help="print the table of a results "
                        "file (verdicts recomputed) instead of simulating")
    args = parser.parse_args(argv)
    if args.table_from:
        result = json.loads(Path(args.table_from).read_text(encoding="utf-8"))
        for point in result["points"] + result.get("kappa_points", []):
            point["verdict"] = verdict(point)
        Path(args.table_from).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(markdown(result) + "\n\n" + kappa_markdown(result) + "\n\n"
              + kappa_markdown(result, wald=True))
        return 0
    result = run(args.sets, args.seed, args.methods.split(","))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(markdown(result) + "\n\n" + kappa_markdown(result) + "\n\n"
              + kappa_markdown(result, wald=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
