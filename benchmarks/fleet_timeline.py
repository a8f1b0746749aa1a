"""Where a fleet run's GPU time goes, chunk by chunk (``benchmarks/bench_fleet.py``).

From the simulated engines' records (``benchmarks.fleet_engine``: each request's admission
and finish) and the driver's timed steps (``benchmarks.scale_probes.StepTimer``: each chunk's
engine stage job, its commit - count, MERGE, drop - and its write-back), all in seconds from
the run's first request:

- each engine's span (its first request admitted to its last result);
- per chunk, the driver's steps (start and end of each);
- every gap during which no engine held a request (the GPUs all waited), with the driver
  steps running meanwhile, and how much of that wait overlapped a commit or write-back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from statistics import median
from typing import Any

from jobs.describe.ledger import merged

Interval = tuple[float, float]
# The driver's steps that commit a chunk: while only these run, no engine stage can.
COMMIT_STEPS = ("commit", "write_back")


def chunk_timeline(records: Iterable[dict[str, Any]],
                   driver_spans: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The per-chunk timeline and the all-engines-idle gaps (see the module docstring)."""
    requests = [(r["gpu"], start, end) for r in records
                if r["event"] == "served" for start, end in r["requests"]]
    origin = min((start for _, start, _ in requests), default=0.0)
    engines: dict[str, Interval] = {}
    for gpu, start, end in requests:
        engines[gpu] = _widened(engines.get(gpu), (start, end))
    steps: dict[int, dict[str, Interval]] = {}
    for span in driver_spans:
        if span["chunk"] is not None:
            row = steps.setdefault(span["chunk"], {})
            row[span["step"]] = _widened(row.get(span["step"]), (span["start"], span["end"]))
    busy = merged((start, end) for _, start, end in requests)
    return {
        "engines": {gpu: _relative(span, origin) for gpu, span in sorted(engines.items())},
        "chunks": [{"chunk": chunk, **{step: _relative(span, origin)
                                       for step, span in sorted(steps[chunk].items())}}
                   for chunk in sorted(steps)],
        "all_idle": idle_gaps(busy, driver_spans, origin),
        "median_s": _median_lengths(steps),
    }


def idle_gaps(busy: Sequence[Interval], driver_spans: Sequence[dict[str, Any]],
              origin: float) -> dict[str, Any]:
    """The gaps between ``busy`` intervals (merged, in order), each with the driver steps that
    overlapped it; the gaps' seconds in all, and those during which a commit step ran."""
    gaps = [(a_end, b_start) for (_, a_end), (b_start, _) in zip(busy, busy[1:], strict=False)]
    committing = merged((s["start"], s["end"]) for s in driver_spans
                        if s["step"] in COMMIT_STEPS)
    listed = [{
        "at": round(start - origin, 1), "s": round(end - start, 1),
        "driver": sorted({f"{s['step']} {s['chunk']}" for s in driver_spans
                          if s["start"] < end and s["end"] > start}),
    } for start, end in gaps]
    total = sum(end - start for start, end in gaps)
    overlap = sum(_overlap(gap, committing) for gap in gaps)
    return {"s": round(total, 1), "s_while_committing": round(overlap, 1),
            "s_otherwise": round(total - overlap, 1), "gaps": listed}


def _median_lengths(steps: dict[int, dict[str, Interval]]) -> dict[str, float]:
    """The median seconds of each driver step over the chunks."""
    lengths: dict[str, list[float]] = {}
    for row in steps.values():
        for step, (start, end) in row.items():
            lengths.setdefault(step, []).append(end - start)
    return {step: round(median(values), 1) for step, values in sorted(lengths.items())}


def _overlap(gap: Interval, spans: Sequence[Interval]) -> float:
    return sum(max(0.0, min(gap[1], end) - max(gap[0], start)) for start, end in spans)


def _widened(span: Interval | None, other: Interval) -> Interval:
    return other if span is None else (min(span[0], other[0]), max(span[1], other[1]))


def _relative(span: Interval, origin: float) -> list[float]:
    return [round(span[0] - origin, 1), round(span[1] - origin, 1)]
