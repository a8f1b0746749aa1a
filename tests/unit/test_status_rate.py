"""``candid status``'s rate and ETA of the latest run, from its commits."""

from __future__ import annotations

import pytest

from jobs.describe.status import RunStatus, commit_rate, format_status


def test_rate_counts_the_rows_committed_after_the_first_commit():
    # Commits at 100 s (500 rows), 150 s (400 rows) and 200 s (600 rows).
    assert commit_rate([(100.0, 500), (150.0, 400), (200.0, 600)]) == pytest.approx(10.0)


def test_one_commit_gives_no_rate():
    assert commit_rate([(100.0, 500)]) is None
    assert commit_rate([]) is None


def test_status_shows_rate_and_eta_of_the_latest_run():
    status = RunStatus("in", "out", "describe:v2", "m", "fp", pending=1200, ok=800,
                       latest_run="r9", rate=4.0)
    assert status.eta_s == pytest.approx(300.0)
    assert "  latest run r9: 4.0 images/s, ETA 300s for the pending rows" in format_status(status)
    status.rate = None
    assert "latest run r9: rate unknown (one commit)" in format_status(status)
