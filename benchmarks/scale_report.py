"""The markdown section of ``benchmarks/bench_scale.py``'s figures (docs/benchmarks.md)."""

from __future__ import annotations

import os
import platform
from typing import Any

# What the issue asks of the layout: the last chunk's MERGE at most this much above the first.
MERGE_GROWTH_GOAL = 1.5


def _n(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            name = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        name = platform.processor() or "unknown CPU"
    return f"{name} ({os.cpu_count()} CPUs)"


def _ingest_table(result: dict[str, Any]) -> list[str]:
    lines = ["| manifest lines | seconds | rows/s | driver Python peak | driver JVM peak |",
             "|---:|---:|---:|---:|---:|"]
    for size, figures in result["ingest"].items():
        lines.append(
            f"| {int(size):,} | {_n(figures['seconds'])} | {_n(figures['rows_per_s'])} | "
            f"{figures['driver_python_peak_mib']:,} MiB | {figures['driver_jvm_peak_mib']:,} MiB |"
        )
    return lines


def _chunk_table(describe: dict[str, Any]) -> list[str]:
    steps, merges = describe["chunk_steps"], describe["results_merge_ms"]
    lines = ["| chunk | stage (engine + staging write) s | results MERGE s | Delta's MERGE "
             "executionTimeMs | drop staged s | write-back s |", "|---|---:|---:|---:|---:|---:|"]
    picks = [("first", 0), ("last", len(steps) - 1)] if steps else []
    for label, index in picks:
        row = steps[index]
        delta_ms = merges[index] if index < len(merges) else 0
        seconds = [row.get(f"{step}_s", 0.0) for step in ("stage", "merge")]
        lines.append(
            f"| {label} ({row['chunk']}) | {seconds[0]:.1f} | {seconds[1]:.1f} | {delta_ms:,} | "
            f"{row.get('drop_s', 0):.1f} | {row.get('write_back_s', 0):.1f} |"
        )
    return lines


def merge_growth(describe: dict[str, Any]) -> float | None:
    """Last chunk's MERGE seconds over the first's (wall clock), or None with one chunk."""
    steps = describe["chunk_steps"]
    if len(steps) < 2 or not steps[0].get("merge_s"):
        return None
    return steps[-1].get("merge_s", 0) / steps[0]["merge_s"]


def markdown(result: dict[str, Any]) -> str:
    params, describe, rerun = result["params"], result["describe"], result["rerun"]
    growth = merge_growth(describe)
    verdict = "n/a" if growth is None else (
        f"{growth:.2f}x ({'met' if growth <= MERGE_GROWTH_GOAL else 'missed'}: goal "
        f"<= {MERGE_GROWTH_GOAL}x)")
    rows = params["rows"]
    lines = [
        "## Scale: 1 M rows, chunked commits, write-back (simulation)", "",
        f"Measured {result.get('measured_at', '?')} on {_cpu()}, `local[2]`, a shared machine. "
        f"An engine that answers instantly (every row's file is still read, decoded and checked), "
        f"{params['thumbnails']:,} distinct {params.get('thumbnail_px', 96)}-px thumbnails reused "
        "under many paths (folder symlinks; content hashing off), chunk size "
        f"{params['chunk_size']:,}, write-back on (the input table has deletion vectors, so "
        "after every chunk).", "",
        "**Ingest** of a `.txt` manifest (Spark's text reader, ids in Spark SQL, one MERGE):", "",
        *_ingest_table(result), "",
        f"**Describe** {rows:,} rows: {describe['rows_processed']:,} described in "
        f"{describe['chunks']} chunks, {_n(describe['seconds'])} s, **{_n(describe['rows_per_s'])}"
        f" rows/s** end to end (planning {describe['plan_s']:.1f} s of it); driver Python peak "
        f"{describe['driver_python_peak_mib']:,} MiB, JVM peak {describe['driver_jvm_peak_mib']:,}"
        " MiB.", "",
        *_chunk_table(describe), "",
        f"Last chunk's results MERGE over the first's: **{verdict}**.", "",
        f"**Write-back**: the first run updated **{describe['write_back_rows_updated']:,}** input "
        f"rows in {describe['write_back_commits']} commits for {describe['chunks']} chunks (the "
        f"end-of-run pass over every row took {describe['final_write_back_s']:.1f} s). The rerun "
        "described "
        f"{rerun['rows_processed']:,} rows and updated **{rerun['write_back_rows_updated']:,}** "
        f"input rows; the input table's version stayed at {rerun['input_version_before']} -> "
        f"{rerun['input_version_after']} (goal: 0 rows, same version). Rerun: "
        f"{_n(rerun['seconds'])} s, planning {rerun['plan_s']:.1f} s, end-of-run write-back "
        f"pass {rerun['final_write_back_s']:.1f} s.", "",
        f"**Status and planning** on the {rows:,}-row tables (Spark jobs; the driver holds "
        "counts only):", "",
        "| job | seconds | driver Python peak |", "|---|---:|---:|",
        f"| `candid status` | {_n(result['status']['seconds'])} | "
        f"{result['status']['driver_python_peak_mib']:,} MiB |",
        f"| pending-row planning, first run ({rows:,} pending) | {describe['plan_s']:.1f} | - |",
        f"| pending-row planning, rerun (0 pending) | {rerun['plan_s']:.1f} | - |",
        f"| dedup planning ({result['dedup_planning']['representatives']:,} representatives, "
        f"{result['dedup_planning']['duplicates']:,} duplicates) | "
        f"{_n(result['dedup_planning']['seconds'])} | "
        f"{result['dedup_planning']['driver_python_peak_mib']:,} MiB |", "",
        f"Reproduce: `{result.get('command', '.venv/bin/python benchmarks/bench_scale.py')}`; "
        "raw numbers in `benchmarks/results/scale.json`.", "",
    ]
    return "\n".join(lines)
