"""A static HTML page for reviewing descriptions side by side, one column per prompt version.

The page is one self-contained file: thumbnails are inlined as base64 data URIs, the CSS is
inline, there is no font and no URL to fetch, and a Content-Security-Policy forbids any
request, so it opens the same from an MLflow artifact, a laptop or an air-gapped cluster.
Everything the model wrote is HTML-escaped: outputs are untrusted text. A plain page has no
script at all; a labelling page (``label_set``) has exactly one, allowed by its hash
(``jobs.review.labelling``).

Rendering is pure (``render_review_page``); ``write_review_page`` is the only function here that
touches files. The parts: ``rows`` (what is shown), ``thumbnails``, ``cells`` (one output),
``labelling`` (verdict buttons and export), ``verdicts`` (A/B sections), ``assets/`` (CSS, JS).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jobs.review.cells import UNKNOWN_FLAG, flag_badge, output_cell
from jobs.review.html_text import escape as _e
from jobs.review.html_text import words
from jobs.review.labelling import (
    LabelSet,
    labelling_panel,
    labelling_script_tag,
    script_source_hash,
)
from jobs.review.rows import (
    PromptColumn,
    PromptOutput,
    ResultKey,
    ReviewRow,
    prompt_stats_from_rows,
    review_rows_from_records,
)
from jobs.review.thumbnails import thumbnail_data_uri
from udfs.images.prepare import STATUS_OK
from udfs.images.sources import local_path
from udfs.outputs.guardrails import GUARDRAIL_DESCRIPTIONS, GUARDRAILS
from udfs.outputs.tally import Tally

# The page's building blocks, importable from here as before the split.
__all__ = [
    "CSP", "LabelSet", "PromptColumn", "PromptOutput", "ResultKey", "ReviewRow",
    "page_csp", "render_review_page", "review_rows_from_records", "thumbnail_data_uri",
    "write_review_page",
]

# Forbids every request the page could make; images may only be inline data URIs.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@lru_cache(maxsize=1)
def page_css() -> str:
    return resources.files("jobs.review.assets").joinpath("review.css").read_text("utf-8")


def page_csp(labelling: bool) -> str:
    """``CSP``, plus the labelling script's hash (and nothing else) when the page has it."""
    return f"{CSP}; script-src {script_source_hash()}" if labelling else CSP


def render_review_page(
    title: str,
    prompts: Sequence[PromptColumn],
    rows: Sequence[ReviewRow],
    summary: Mapping[str, Any],
    sections: Sequence[str] = (),
    label_set: LabelSet | None = None,
) -> str:
    """The whole review page as one HTML string.

    Args:
        title: page heading.
        prompts: the columns, left to right (e.g. v1, v2, v3).
        rows: one per image, in display order.
        summary: run facts shown above the tables (run id, model, input table...); mappings
            are shown as "key: value" lines, lists one item per line.
        sections: HTML fragments shown after the run facts, made by Candid's own renderers
            (``jobs.review.verdicts``), which escape every value they show; never model text.
        label_set: labelling mode: verdict buttons on every ok output with a result key, the
            reviewer's panel and the export (``jobs.review.labelling``).

    Example:
        >>> page = render_review_page("t", [PromptColumn("describe/v2")], [], {"run": "r1"})
        >>> page.startswith("<!DOCTYPE html>") and "<script" not in page
        True
    """
    labelling = label_set is not None
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(page_csp(labelling))}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{page_css()}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _run_summary(summary),
        *sections,
        labelling_panel(label_set, _labellable(prompts, rows)) if label_set else "",
        _summary_table(prompts, rows),
        _flag_legend(prompts, rows),
        _image_table(prompts, rows, labelling),
        labelling_script_tag() if labelling else "",
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
    label_set: LabelSet | None = None,
) -> str:
    """Render the page (``render_review_page``) and write it (UTF-8) to a local path, file://
    URI or fsspec URL.

    Returns:
        ``path`` as a string.
    """
    page = render_review_page(title, prompts, rows, summary, sections, label_set)
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


def _labellable(prompts: Sequence[PromptColumn], rows: Sequence[ReviewRow]) -> int:
    keys = {p.key for p in prompts}
    return sum(1 for row in rows for k, out in row.outputs.items()
               if k in keys and out.ok and out.key is not None)


def _run_summary(summary: Mapping[str, Any]) -> str:
    if not summary:
        return ""
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_fact(v)}</dd>" for k, v in summary.items())
    return f'<dl class="run-summary">{items}</dl>'


def _fact(value: Any) -> str:
    """A fact in words: a mapping as "key: value" lines, a list one item per line."""
    if isinstance(value, Mapping):
        lines = [f"{_e(k)}: {_e(v)}" for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        lines = [_e(v) for v in value]
    else:
        return _e(value)
    return '<ul class="fact-list">' + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"


def _summary_table(prompts: Sequence[PromptColumn], rows: Sequence[ReviewRow]) -> str:
    stats = {p.key: p.stats or prompt_stats_from_rows(p.key, rows) for p in prompts}
    flag_ids = _flag_ids(stats.values())
    head = "".join(
        f'<th data-flag="{_e(g)}" title="{_e(GUARDRAIL_DESCRIPTIONS.get(g, UNKNOWN_FLAG))}">'
        f"{_e(words(g))}</th>" for g in flag_ids
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
        f"<dt>{flag_badge(g)}</dt><dd>{_e(GUARDRAIL_DESCRIPTIONS.get(g, UNKNOWN_FLAG))}</dd>"
        for g in ordered
    )
    return f'<h2>Flags</h2><dl class="run-summary flag-legend">{items}</dl>'


def _image_table(prompts: Sequence[PromptColumn], rows: Sequence[ReviewRow],
                 labelling: bool) -> str:
    head = "".join(f'<th data-prompt="{_e(p.key)}">{_e(p.key)}</th>' for p in prompts)
    body = "".join(_image_row(row, prompts, labelling) for row in rows)
    return (
        f'<h2>Images ({len(rows)})</h2><table class="images"><thead><tr>'
        f'<th class="image">image</th>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _image_row(row: ReviewRow, prompts: Sequence[PromptColumn], labelling: bool) -> str:
    low = " low-visibility" if row.low_visibility else ""
    cells = "".join(output_cell(p.key, row.outputs.get(p.key), labelling) for p in prompts)
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
