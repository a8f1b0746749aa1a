"""What every coverage point shares (``benchmarks/bench_coverage.py`` and its kappa part,
``benchmarks/coverage_kappa.py``): the level and its band, what an interval must offer, the
tally of a point's simulated intervals, and the footnote mark of a point outside the band."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

CONFIDENCE = 0.95
# Where a 95 % interval's coverage should lie.
BAND = (0.93, 0.97)


class Interval(Protocol):
    """What coverage needs of an interval: its bounds, and the events its data held."""

    @property
    def low(self) -> float: ...

    @property
    def high(self) -> float: ...

    @property
    def events(self) -> float: ...


def tally(outcomes: list[tuple[Interval | None, float]]) -> dict[str, Any]:
    """Share of defined intervals that hold the truth (and that miss it on each side), how
    many were defined, their mean width, how many had zero width, and how often the data held
    at most one event."""
    defined = degenerate = sparse = above = below = 0
    widths = []
    for interval, truth in outcomes:
        if interval is None:
            continue
        defined += 1
        above += truth > interval.high + 1e-12
        below += truth < interval.low - 1e-12
        degenerate += interval.high - interval.low <= 0
        sparse += interval.events <= 1
        widths.append(interval.high - interval.low)

    def share(count: int) -> float | None:
        return count / defined if defined else None

    return {
        "defined": defined, "coverage": share(defined - above - below),
        "truth_above": share(above), "truth_below": share(below),
        "mean_width": float(np.mean(widths)) if widths else None, "zero_width": degenerate,
        "at_most_one_event": share(sparse),
    }


def mark(point: dict[str, Any]) -> str:
    """A footnote mark for a point outside the band (the docs explain each)."""
    text = point["verdict"]
    return {"in band": "", "BELOW the band": " **(below)**"}.get(
        text, " (0)" if "p=0" in text else " (d)" if "discrete" in text else " (c)")
