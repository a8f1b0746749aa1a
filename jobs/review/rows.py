"""What a review page shows, as plain values: one ``ReviewRow`` per image with each prompt
version's output, built from result rows (``review_rows_from_records``). No Spark, no HTML."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from jobs.review.thumbnails import THUMBNAIL_MAX_SIDE, thumbnail_data_uri
from udfs.images.prepare import STATUS_OK
from udfs.outputs.tally import Tally


@dataclass(frozen=True)
class PromptColumn:
    """One prompt version shown as a column. ``stats``: its figures over the whole run (the
    page then says so); None: counted from the rows the page shows."""

    key: str
    prompt_hash: str = ""
    description: str = ""
    stats: Tally | None = None
    # Run fingerprints of this prompt version's rows -> rows (what produced them).
    fingerprints: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultKey:
    """What identifies one result row exactly as the results table keys it, plus the run
    fingerprint of what produced it (a label judges that output, not a later one)."""

    image_id: str
    prompt_name: str
    prompt_version: str
    model: str
    run_fingerprint: str | None = None


@dataclass(frozen=True)
class PromptOutput:
    """What one prompt produced for one image (one result row).

    ``fields``: a JSON-mode output's validated object (``structured_json``), shown as a table
    of fields; ``key``: the result row's key, needed to label the output.
    """

    description: str | None
    status: str = STATUS_OK
    flags: tuple[str, ...] = ()
    finish_reason: str | None = None
    status_message: str | None = None
    fields: Mapping[str, Any] | None = None
    key: ResultKey | None = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@dataclass(frozen=True)
class ReviewRow:
    """One image: its thumbnail, metrics and every prompt's output, keyed by prompt key.

    ``thumbnail`` is a ``data:image/...`` URI, raw image bytes (downscaled here), or None for a
    placeholder naming ``image_status``.
    """

    image_id: str
    path: str
    outputs: Mapping[str, PromptOutput]
    thumbnail: str | bytes | None = None
    image_status: str = STATUS_OK
    low_visibility: bool | None = None
    orig_width: int | None = None
    orig_height: int | None = None
    visual_tokens: int | None = None


def prompt_stats_from_rows(prompt_key: str, rows: Sequence[ReviewRow]) -> Tally:
    """One prompt's tally over the page's rows."""
    outputs = [row.outputs[prompt_key] for row in rows if prompt_key in row.outputs]
    return Tally.of_rows((out.status, out.flags) for out in outputs)


def review_rows_from_records(
    records: Iterable[Mapping[str, Any]], max_side: int | None = THUMBNAIL_MAX_SIDE
) -> list[ReviewRow]:
    """Group result rows (``udfs.runner.describe.RESULT_COLUMNS`` dicts) by ``image_id``: one
    ``ReviewRow`` per image, with each row's output under ``"<prompt_name>/<prompt_version>"``.

    Images keep the order in which they first appear. Thumbnails are read from ``path`` unless
    ``max_side`` is None; image metrics come from the first ok row of the image.
    """
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        grouped.setdefault(str(record.get("image_id")), []).append(record)
    rows = []
    for image_id, group in grouped.items():
        first = next((r for r in group if r.get("status") == STATUS_OK), group[0])
        path = str(first.get("path") or "")
        any_ok = any(r.get("status") == STATUS_OK for r in group)
        status = STATUS_OK if any_ok else str(first.get("status"))
        rows.append(
            ReviewRow(
                image_id=image_id,
                path=path,
                outputs={_record_key(r): _record_output(r) for r in group},
                thumbnail=thumbnail_data_uri(path, max_side) if max_side and path else None,
                image_status=status,
                low_visibility=_opt(first.get("low_visibility"), bool),
                orig_width=_opt(first.get("orig_width"), int),
                orig_height=_opt(first.get("orig_height"), int),
                visual_tokens=_opt(first.get("visual_tokens"), int),
            )
        )
    return rows


def _record_key(record: Mapping[str, Any]) -> str:
    return f"{record.get('prompt_name')}/{record.get('prompt_version')}"


def _record_output(record: Mapping[str, Any]) -> PromptOutput:
    flags = record.get("guardrail_flags")
    return PromptOutput(
        description=_text(record.get("description")),
        status=_text(record.get("status")) or "unknown",
        flags=tuple(str(f) for f in flags) if flags is not None else (),
        finish_reason=_text(record.get("finish_reason")),
        status_message=_text(record.get("status_message")),
        fields=json_object(_text(record.get("structured_json"))),
        key=_result_key(record),
    )


def _result_key(record: Mapping[str, Any]) -> ResultKey | None:
    parts = [_text(record.get(c)) for c in ("image_id", "prompt_name", "prompt_version", "model")]
    if any(p is None for p in parts):
        return None
    return ResultKey(*parts, run_fingerprint=_text(record.get("run_fingerprint")))


def json_object(text: str | None) -> dict[str, Any] | None:
    """``text`` parsed when it is one JSON object, else None (plain prose, broken JSON).

    Example:
        >>> json_object('{"subject": "a mug"}'), json_object("A mug."), json_object("{broken")
        ({'subject': 'a mug'}, None, None)
    """
    if text is None or not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _opt(value: Any, kind: type) -> Any:
    # Rows from Spark or pandas spell "missing" as None, NaN or pd.NA.
    if value is None or bool(pd.isna(value)):
        return None
    return kind(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
