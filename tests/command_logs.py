"""Reading what a ``candid`` subprocess wrote to its run log (``build/logs/<run>/candid.log``):
the console shows a few lines per phase; Spark's, Ivy's and the workers' output is in the log."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOG_LINE_PREFIX = "log: "


def command_log(stdout: str) -> str:
    """The text of the run log whose path a command printed as its first line ('' if none)."""
    lines = stdout.splitlines()
    if not lines or not lines[0].startswith(LOG_LINE_PREFIX):
        return ""
    path = Path(lines[0].removeprefix(LOG_LINE_PREFIX))
    path = path if path.is_absolute() else REPO / path
    return path.read_text(errors="replace") if path.exists() else ""


def failure_report(stdout: str, stderr: str, tail: int = 4000) -> str:
    """What to show when a command failed: its error line and the end of its run log."""
    return f"{stderr[-1000:]}\n--- run log (end) ---\n{command_log(stdout)[-tail:]}"
