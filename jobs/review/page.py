"""A static HTML page for reviewing descriptions side by side, one column per prompt version.

The page is one self-contained file: thumbnails are inlined as base64 data URIs, the CSS is
inline, there is no script, no font and no URL to fetch, and a Content-Security-Policy forbids
any request, so it opens the same from an MLflow artifact, a laptop or an air-gapped cluster.
Everything the model wrote is HTML-escaped: outputs are untrusted text.

Rendering is pure (``render_review_page``); ``thumbnail_data_uri`` and ``write_review_page``
are the only functions that touch files. No Spark, no MLflow: the job collects a sample of result
rows, builds ``ReviewRow`` objects (``review_rows_from_records``) and writes the page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from udfs.images.prepare import STATUS_OK
from udfs.images.sources import SourceError, local_path, read_bytes
from udfs.outputs.guardrails import GUARDRAIL_DESCRIPTIONS, GUARDRAILS
from udfs.outputs.tally import Tally

log = logging.getLogger("candid.review_page")

# Thumbnails are for recognising an image, not judging it: 160 px keeps a 500-row page < 5 MB.
THUMBNAIL_MAX_SIDE = 160
THUMBNAIL_JPEG_QUALITY = 80
# Source files above this are not read for a thumbnail (the describe job has its own limit).
THUMBNAIL_MAX_SOURCE_BYTES = 50_000_000
# Decompression-bomb guard, as the describe job's default ``max_decoded_pixels``.
THUMBNAIL_MAX_PIXELS = 64_000_000
# Shown for flag ids this code does not know (rows written by another version).
UNKNOWN_FLAG = "Unknown guardrail id (written by another version of Candid)."
# Forbids every request the page could make; images may only be inline data URIs.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1b1f24; background: #fff; }
h1 { font-size: 20px; margin: 0 0 8px; }
h2 { font-size: 16px; margin: 20px 0 6px; }
table { border-collapse: collapse; }
th, td { border: 1px solid #d0d7de; padding: 6px 8px; vertical-align: top; text-align: left; }
th { background: #f3f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.run-summary { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
dl.run-summary dt { font-weight: 600; }
dl.run-summary dd { margin: 0; }
.rate-hot { background: #ffe3e0; font-weight: 600; }
table.images td.image { width: 200px; }
img.thumb { display: block; max-width: 160px; max-height: 160px; border: 1px solid #d0d7de; }
.thumb-missing {
  width: 150px; height: 100px; display: flex; align-items: center; justify-content: center;
  text-align: center; font-size: 12px; color: #555; border: 1px dashed #999;
  background: repeating-linear-gradient(45deg, #eee, #eee 8px, #f8f8f8 8px, #f8f8f8 16px);
}
.meta { font-size: 12px; color: #57606a; word-break: break-all; }
tr.low-visibility td.image { background: #fff7d6; }
.badge {
  display: inline-block; border-radius: 10px; padding: 1px 8px; margin: 2px 4px 2px 0;
  font-size: 12px; border: 1px solid transparent; cursor: help;
}
.flag { background: #ffebe9; border-color: #ff8182; color: #82071e; }
.status-error { background: #fff1c2; border-color: #d4a72c; color: #4d2d00; }
.lowvis { background: #fff1c2; border-color: #bf8700; color: #4d2d00; }
.desc { white-space: pre-wrap; margin: 0 0 4px; font-family: inherit; }
.finish { font-size: 12px; color: #57606a; }
td.output { min-width: 260px; max-width: 480px; }
td.missing { color: #8c959f; font-style: italic; }
.verdict-better { background: #dafbe1; }
.verdict-worse { background: #ffe3e0; }
.note { font-size: 12px; color: #57606a; max-width: 900px; }
"""


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
class PromptOutput:
    """What one prompt produced for one image (one result row)."""

    description: str | None
    status: str = STATUS_OK
    flags: tuple[str, ...] = ()
    finish_reason: str | None = None
    status_message: str | None = None

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


def thumbnail_data_uri(
    path_or_bytes: str | bytes, max_side: int = THUMBNAIL_MAX_SIDE
) -> str | None:
    """A base64 JPEG data URI of the image, at most ``max_side`` px on its longer side.

    Transparent pixels are put on white and the first frame of animations is used. Returns None
    (and logs why at debug level) when the file cannot be read or decoded; never raises.

    Example:
        >>> thumbnail_data_uri(b"not an image") is None
        True
    """
    try:
        data = (
            path_or_bytes
            if isinstance(path_or_bytes, bytes)
            else read_bytes(path_or_bytes, THUMBNAIL_MAX_SOURCE_BYTES)
        )
        jpeg = _jpeg_thumbnail(data, max_side)
        return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    except SourceError as err:
        log.debug("no thumbnail: %s (%s)", err.message, err.code)
    except Exception as err:  # noqa: BLE001 - Pillow raises many types; a review page must render
        log.debug("no thumbnail for %r: %s: %s", _shown(path_or_bytes), type(err).__name__, err)
    return None


def _jpeg_thumbnail(data: bytes, max_side: int) -> bytes:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height > THUMBNAIL_MAX_PIXELS:
            raise ValueError(f"{image.width}x{image.height} px is over the thumbnail budget")
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at a fraction of full size
        frame = ImageOps.exif_transpose(image).convert("RGBA")
        frame.thumbnail((max_side, max_side))
        flat = Image.new("RGB", frame.size, (255, 255, 255))
        flat.paste(frame, mask=frame.getchannel("A"))
    out = io.BytesIO()
    flat.save(out, format="JPEG", quality=THUMBNAIL_JPEG_QUALITY)
    return out.getvalue()


def prompt_stats_from_rows(prompt_key: str, rows: Sequence[ReviewRow]) -> Tally:
    """One prompt's tally over the page's rows."""
    outputs = [row.outputs[prompt_key] for row in rows if prompt_key in row.outputs]
    return Tally.of_rows((out.status, out.flags) for out in outputs)


def render_review_page(
    title: str,
    prompts: Sequence[PromptColumn],
    rows: Sequence[ReviewRow],
    summary: Mapping[str, Any],
    sections: Sequence[str] = (),
) -> str:
    """The whole review page as one HTML string.

    Args:
        title: page heading.
        prompts: the columns, left to right (e.g. v1, v2, v3).
        rows: one per image, in display order.
        summary: run facts shown above the tables (run id, model, input table...); values are
            shown as text, mappings and lists as JSON.
        sections: HTML fragments shown after the run facts, made by Candid's own renderers
            (``jobs.review.verdicts``), which escape every value they show; never model text.

    Example:
        >>> page = render_review_page("t", [PromptColumn("describe/v2")], [], {"run": "r1"})
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _run_summary(summary),
        *sections,
        _summary_table(prompts, rows),
        _flag_legend(prompts, rows),
        _image_table(prompts, rows),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def write_review_page(
    path: str | Path,
    title: str,
    prompts: Sequence[PromptColumn],
    rows: Sequence[ReviewRow],
    summary: Mapping[str, Any],
    sections: Sequence[str] = (),
) -> str:
    """Render the page (``render_review_page``) and write it (UTF-8) to a local path, file://
    URI or fsspec URL.

    Returns:
        ``path`` as a string.
    """
    page = render_review_page(title, prompts, rows, summary, sections)
    target = str(path)
    local = local_path(target)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(page, encoding="utf-8")
    else:
        import fsspec

        with fsspec.open(target, "w", encoding="utf-8") as handle:
            handle.write(page)
    return target


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
    )


def _opt(value: Any, kind: type) -> Any:
    # Rows from Spark or pandas spell "missing" as None, NaN or pd.NA.
    if value is None or bool(pd.isna(value)):
        return None
    return kind(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _run_summary(summary: Mapping[str, Any]) -> str:
    if not summary:
        return ""
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_as_text(v))}</dd>" for k, v in summary.items())
    return f'<dl class="run-summary">{items}</dl>'


def _summary_table(prompts: Sequence[PromptColumn], rows: Sequence[ReviewRow]) -> str:
    stats = {p.key: p.stats or prompt_stats_from_rows(p.key, rows) for p in prompts}
    flag_ids = _flag_ids(stats.values())
    head = "".join(
        f'<th title="{_e(GUARDRAIL_DESCRIPTIONS.get(g, ""))}">{_e(g)}</th>' for g in flag_ids
    )
    whole = all(p.stats is not None for p in prompts)
    lines = [
        f"<h2>Prompts ({'whole run' if whole else 'rows shown'})</h2>"
        '<table class="summary"><thead><tr><th>prompt</th><th>hash</th><th>fingerprints</th>'
        f"<th>rows</th><th>ok</th><th>errors</th>{head}</tr></thead><tbody>"
    ]
    for prompt in prompts:
        s = stats[prompt.key]
        flag_rates = s.flag_rates()
        rates = "".join(_rate_cell(flag_rates.get(g, 0.0)) for g in flag_ids)
        lines.append(
            f'<tr class="prompt-summary" data-prompt="{_e(prompt.key)}">'
            f'<td title="{_e(prompt.description)}">{_e(prompt.key)}</td>'
            f"<td><code>{_e(prompt.prompt_hash)}</code></td>"
            f"<td>{_fingerprints_cell(prompt.fingerprints)}</td>"
            f'<td class="num">{s.rows}</td><td class="num">{s.ok}</td>'
            f'<td class="num">{s.errors}</td>{rates}</tr>'
        )
    lines.append("</tbody></table>")
    return "".join(lines)


def _fingerprints_cell(fingerprints: Mapping[str, int]) -> str:
    return "<br>".join(
        f'<code class="fingerprint">{_e(fp)}</code> ({n})' for fp, n in fingerprints.items()
    )


def _rate_cell(rate: float) -> str:
    hot = ' class="num rate-hot"' if rate > 0 else ' class="num"'
    return f"<td{hot}>{rate:.1%}</td>"


def _flag_ids(stats: Iterable[Tally]) -> list[str]:
    seen = {gid for s in stats for gid in s.flag_rates()}
    # Known guardrails in their canonical order, then any id this code does not know.
    return [g for g in GUARDRAILS if g in seen] + sorted(seen - set(GUARDRAILS))


def _flag_legend(prompts: Sequence[PromptColumn], rows: Sequence[ReviewRow]) -> str:
    keys = {p.key for p in prompts}
    seen = {f for row in rows for k, out in row.outputs.items() if k in keys for f in out.flags}
    if not seen:
        return ""
    ordered = [g for g in GUARDRAILS if g in seen] + sorted(seen - set(GUARDRAILS))
    items = "".join(
        f"<dt>{_flag_badge(g)}</dt><dd>{_e(GUARDRAIL_DESCRIPTIONS.get(g, UNKNOWN_FLAG))}</dd>"
        for g in ordered
    )
    return f'<h2>Flags</h2><dl class="run-summary flag-legend">{items}</dl>'


def _image_table(prompts: Sequence[PromptColumn], rows: Sequence[ReviewRow]) -> str:
    head = "".join(f'<th data-prompt="{_e(p.key)}">{_e(p.key)}</th>' for p in prompts)
    body = "".join(_image_row(row, prompts) for row in rows)
    return (
        f'<h2>Images ({len(rows)})</h2><table class="images"><thead><tr><th>image</th>{head}'
        f"</tr></thead><tbody>{body}</tbody></table>"
    )


def _image_row(row: ReviewRow, prompts: Sequence[PromptColumn]) -> str:
    low = " low-visibility" if row.low_visibility else ""
    cells = "".join(_output_cell(p.key, row.outputs.get(p.key)) for p in prompts)
    return (
        f'<tr class="image-row{low}" data-image-id="{_e(row.image_id)}">'
        f'<td class="image">{_thumbnail_html(row)}{_image_meta(row)}</td>{cells}</tr>'
    )


def _thumbnail_html(row: ReviewRow) -> str:
    uri = row.thumbnail
    if isinstance(uri, bytes):
        uri = thumbnail_data_uri(uri)
    if isinstance(uri, str) and uri.startswith("data:image/"):
        return f'<img class="thumb" alt="{_e(row.image_id)}" src="{_e(uri)}">'
    reason = row.image_status if row.image_status != STATUS_OK else "no thumbnail"
    return f'<div class="thumb-missing" data-status="{_e(reason)}">{_e(reason)}</div>'


def _image_meta(row: ReviewRow) -> str:
    facts = [f"<b>{_e(row.image_id)}</b>", _e(row.path)]
    if row.orig_width and row.orig_height:
        facts.append(f"{row.orig_width}\u00d7{row.orig_height} px")
    if row.visual_tokens is not None:
        facts.append(f"{row.visual_tokens} visual tokens")
    badge = ""
    if row.low_visibility:
        badge = (
            '<span class="badge lowvis" title="Small or blurry image: little visual evidence, '
            'expect more uncertainty">low visibility</span>'
        )
    return f'<div class="meta">{"<br>".join(facts)}</div>{badge}'


def _output_cell(prompt_key: str, out: PromptOutput | None) -> str:
    if out is None:
        return f'<td class="output missing" data-prompt="{_e(prompt_key)}">no result</td>'
    parts = []
    if not out.ok:
        parts.append(
            f'<span class="badge status-error" data-status="{_e(out.status)}" '
            f'title="{_e(out.status_message or "")}">{_e(out.status)}</span>'
        )
    if out.description:
        parts.append(f'<pre class="desc">{_e(_pretty(out.description))}</pre>')
    parts.extend(_flag_badge(flag) for flag in out.flags)
    if out.finish_reason:
        parts.append(f'<div class="finish">finish: {_e(out.finish_reason)}</div>')
    return f'<td class="output" data-prompt="{_e(prompt_key)}">{"".join(parts)}</td>'


def _flag_badge(flag: str) -> str:
    tip = GUARDRAIL_DESCRIPTIONS.get(flag, UNKNOWN_FLAG)
    return f'<span class="badge flag" data-flag="{_e(flag)}" title="{_e(tip)}">{_e(flag)}</span>'


def _pretty(text: str) -> str:
    """JSON outputs indented for reading; anything else exactly as written."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return text
    try:
        return json.dumps(json.loads(stripped), indent=1, ensure_ascii=False)
    except ValueError:
        return text


def _as_text(value: Any) -> str:
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return str(value)


def _shown(path_or_bytes: str | bytes) -> str:
    return f"<{len(path_or_bytes)} bytes>" if isinstance(path_or_bytes, bytes) else path_or_bytes


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
