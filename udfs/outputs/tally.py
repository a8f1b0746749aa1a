"""The one way Candid counts result rows: rows per ``status`` and per guardrail flag, and the
flag rates derived from them. A describe run, ``candid status``, the review page and
``candid compare`` all report a ``Tally``; Spark builds one with ``jobs.tables.results.tally``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from udfs.images.prepare import STATUS_OK


@dataclass(frozen=True)
class Tally:
    """Rows per status, and rows per guardrail flag (a row counts once for each flag it has).

    Example:
        >>> t = Tally.of_rows([("ok", ["truncated"]), ("ok", []), ("missing_file", None)])
        >>> (t.rows, t.ok, t.errors, t.flag_rates())
        (3, 2, 1, {'truncated': 0.5})
    """

    statuses: Mapping[str, int] = field(default_factory=dict)
    flags: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of_rows(cls, rows: Iterable[tuple[str, Sequence[str] | None]]) -> Tally:
        """From (status, guardrail_flags) pairs; None flags (Spark's null array) are none."""
        return cls.of_groups((status, row_flags, 1) for status, row_flags in rows)

    @classmethod
    def of_groups(cls, groups: Iterable[tuple[str, Sequence[str] | None, int]]) -> Tally:
        """From (status, guardrail_flags, rows) groups: what one Spark aggregation by status and
        flags returns (``jobs.tables.results.tally``).

        Example:
            >>> t = Tally.of_groups([("ok", ["truncated"], 3), ("ok", None, 1), ("ok", [], 2)])
            >>> (t.statuses, t.flags)
            ({'ok': 6}, {'truncated': 3})
        """
        statuses: Counter[str] = Counter()
        flags: Counter[str] = Counter()
        for status, group_flags, count in groups:
            statuses[status] += int(count)
            for flag in set(group_flags or ()):
                flags[flag] += int(count)
        return cls(dict(statuses), dict(flags))

    @property
    def rows(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(STATUS_OK, 0)

    @property
    def errors(self) -> int:
        return self.rows - self.ok

    def flag_rates(self) -> dict[str, float]:
        """Share of ok rows that carry each flag, sorted by flag id ({} without ok rows).
        Errors have no output to flag, so they are not in the denominator."""
        if not self.ok:
            return {}
        return {flag: self.flags[flag] / self.ok for flag in sorted(self.flags)}

    def __add__(self, other: Tally) -> Tally:
        return Tally(_added(self.statuses, other.statuses), _added(self.flags, other.flags))

    def describe_statuses(self) -> str:
        """``ok=22, missing_file=2`` (sorted), or ``none``."""
        return ", ".join(f"{k}={v}" for k, v in sorted(self.statuses.items())) or "none"


def _added(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    total = dict(a)
    for key, value in b.items():
        total[key] = total.get(key, 0) + int(value)
    return total
