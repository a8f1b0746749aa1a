"""The JSON file a labelling page exports (``jobs/review/assets/labelling.js``), read and checked
before anything is written: a file that is not one, or an entry that is malformed, fails with
a message naming the file and the entry, and nothing is imported.

The format, version 1::

    {"format": "candid-labels", "format_version": 1, "label_set": "...", "selection": "...",
     "results_table": "...", "sample": "...", "reviewer": "...", "exported_at": "<ISO 8601>",
     "labels": [{"image_id", "prompt_name", "prompt_version", "model", "run_fingerprint",
                 "verdict", "reviewer", "labelled_at"}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from jobs.review.labelling import EXPORT_FORMAT, EXPORT_FORMAT_VERSION
from jobs.review.vocabulary import VERDICT_IDS
from udfs.images.sources import SourceError, read_bytes

# A page of 500 rows exports about 150 kB; anything near this is not a label file.
MAX_FILE_BYTES = 64_000_000
_KEY_FIELDS = ("image_id", "prompt_name", "prompt_version", "model")


class LabelFileError(ValueError):
    """The file is not a valid label export; the message names the file and the entry."""


@dataclass(frozen=True)
class LabelRecord:
    """One verdict on one output, keyed as the results table keys the output."""

    image_id: str
    prompt_name: str
    prompt_version: str
    model: str
    run_fingerprint: str | None
    reviewer: str
    verdict: str
    labelled_at: datetime

    @property
    def key(self) -> tuple[str | None, ...]:
        """What makes a label unique in the labels table: the output and the reviewer."""
        return (self.image_id, self.prompt_name, self.prompt_version, self.model,
                self.run_fingerprint, self.reviewer)


@dataclass(frozen=True)
class LabelExport:
    """A whole export file: where its rows came from, and its labels (one per output and
    reviewer: when a hand-merged file repeats one, the latest verdict counts)."""

    path: str
    label_set: str
    selection: str
    results_table: str
    sample: str
    exported_at: datetime
    labels: tuple[LabelRecord, ...]


def read_export(path: str) -> LabelExport:
    """Read and check a label export (local path, file:// URI or fsspec URL).

    Raises:
        LabelFileError: unreadable, not JSON, another format, or a malformed entry.
    """
    try:
        doc = json.loads(read_bytes(path, MAX_FILE_BYTES).decode("utf-8"))
    except SourceError as err:
        raise LabelFileError(f"{path}: {err.message}") from err
    except (UnicodeDecodeError, ValueError) as err:
        raise LabelFileError(f"{path}: not a JSON file ({err})") from err
    return parse_export(doc, path)


def parse_export(doc: Any, path: str = "<labels>") -> LabelExport:
    """A parsed export document, checked (see ``read_export``)."""
    if not isinstance(doc, Mapping) or doc.get("format") != EXPORT_FORMAT:
        raise LabelFileError(f"{path}: not a Candid label export (no \"format\": "
                             f"\"{EXPORT_FORMAT}\"); export it from `candid review --label`")
    if doc.get("format_version") != EXPORT_FORMAT_VERSION:
        raise LabelFileError(f"{path}: format_version {doc.get('format_version')!r} is not "
                             f"{EXPORT_FORMAT_VERSION}, the one this version of Candid reads")
    entries = doc.get("labels")
    if not isinstance(entries, list) or not entries:
        raise LabelFileError(f"{path}: \"labels\" must be a non-empty list")
    latest: dict[tuple, LabelRecord] = {}
    for index, entry in enumerate(entries):
        record = _record(entry, f"{path}: labels[{index}]")
        if record.key not in latest or record.labelled_at > latest[record.key].labelled_at:
            latest[record.key] = record
    return LabelExport(
        path=path, label_set=_text(doc, "label_set", path, ""),
        selection=_text(doc, "selection", path, ""),
        results_table=_text(doc, "results_table", path, ""),
        sample=_text(doc, "sample", path, ""),
        exported_at=_time(doc.get("exported_at"), f"{path}: exported_at"),
        labels=tuple(latest.values()),
    )


def _record(entry: Any, where: str) -> LabelRecord:
    if not isinstance(entry, Mapping):
        raise LabelFileError(f"{where} is not an object")
    key = [_text(entry, name, where) for name in _KEY_FIELDS]
    fingerprint = entry.get("run_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise LabelFileError(f"{where}: run_fingerprint must be text or null")
    verdict = _text(entry, "verdict", where)
    if verdict not in VERDICT_IDS:
        raise LabelFileError(f"{where}: unknown verdict {verdict!r}; one of "
                             f"{', '.join(VERDICT_IDS)}")
    reviewer = _text(entry, "reviewer", where).strip()
    if not reviewer:
        raise LabelFileError(f"{where}: reviewer is empty")
    return LabelRecord(*key, run_fingerprint=fingerprint, reviewer=reviewer, verdict=verdict,
                       labelled_at=_time(entry.get("labelled_at"), f"{where}: labelled_at"))


def _text(doc: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = doc.get(name, default)
    if not isinstance(value, str) or (default is None and not value):
        raise LabelFileError(f"{where}: {name} must be non-empty text, got {value!r}")
    return value


def _time(value: Any, where: str) -> datetime:
    """An ISO 8601 time (JavaScript's ``toISOString``: ``2026-12-06T10:00:00.000Z``) in UTC."""
    if not isinstance(value, str):
        raise LabelFileError(f"{where}: expected an ISO 8601 time, got {value!r}")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise LabelFileError(f"{where}: expected an ISO 8601 time, got {value!r}") from err
    if moment.tzinfo is None:
        raise LabelFileError(f"{where}: {value!r} has no time zone")
    return moment.astimezone(timezone.utc)
