"""Labelling mode of the review page (``candid review --label``): verdict buttons on every
output, a reviewer name field, and an export to a JSON file for ``candid labels import``.

The page still needs no server: it opens from a laptop, an MLflow artifact or a notebook's file
browser. The verdicts are kept in memory and in the browser's ``localStorage`` (keyed by the
page's label set and each output's result key), so a reload or a second visit keeps them; the
export is a download made in the page (a ``Blob``). The one script is inline and allowed by its
SHA-256 in the page's Content-Security-Policy, which still forbids every request and every
other script: model text, escaped everywhere, could not run even if it slipped through.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from jobs.review.html_text import escape as _e
from jobs.review.rows import ResultKey
from jobs.review.vocabulary import VERDICTS

# The export's format name and version, checked by ``candid labels import``.
EXPORT_FORMAT = "candid-labels"
EXPORT_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LabelSet:
    """What a labelling page shows and where it came from, written into the page and into
    every file it exports.

    Attributes:
        selection: the rows the page was drawn from, in words (a scope or a run).
        results_table: the results table those rows live in.
        sample: how the shown rows were picked from the selection (the scoring assumes a random
            sample when it scales rates to the whole scope).
    """

    selection: str
    results_table: str
    sample: str

    @property
    def id(self) -> str:
        """A short stable id: the same selection and sample give the same id, so verdicts kept
        by the browser reappear when the page is written again."""
        text = json.dumps([self.results_table, self.selection, self.sample])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@lru_cache(maxsize=1)
def labelling_script() -> str:
    """The page's one script (``assets/labelling.js``)."""
    return resources.files("jobs.review.assets").joinpath("labelling.js").read_text("utf-8")


def script_source_hash() -> str:
    """The CSP source that allows exactly the labelling script: ``'sha256-<base64>'``."""
    digest = hashlib.sha256(labelling_script().encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def label_key(key: ResultKey) -> str:
    """The output's key in the page and in storage: the result key's five parts as JSON.

    Example:
        >>> label_key(ResultKey("img1", "describe", "v2", "m", "fp"))
        '["img1", "describe", "v2", "m", "fp"]'
    """
    parts = [key.image_id, key.prompt_name, key.prompt_version, key.model, key.run_fingerprint]
    return json.dumps(parts, ensure_ascii=False)


def verdict_buttons() -> str:
    """One button per verdict, for an output cell that carries ``data-label-key``."""
    buttons = "".join(
        f'<button type="button" class="verdict" data-verdict="{_e(v.id)}" aria-pressed="false" '
        f'title="{_e(v.meaning)}">{_e(v.label)}</button>' for v in VERDICTS
    )
    return f'<div class="verdicts" role="group" aria-label="verdict">{buttons}</div>'


def labelling_panel(label_set: LabelSet, outputs: int) -> str:
    """The panel above the images: name field, progress, export button and what each verdict
    means (the script fills in progress and status)."""
    legend = "".join(f"<dt>{_e(v.label)}</dt><dd>{_e(v.meaning)}</dd>" for v in VERDICTS)
    return (
        f'<section class="labelling" id="labelling" data-label-set="{_e(label_set.id)}" '
        f'data-selection="{_e(label_set.selection)}" '
        f'data-results-table="{_e(label_set.results_table)}" '
        f'data-sample="{_e(label_set.sample)}">'
        "<h2>Labels</h2>"
        '<div class="controls"><label>Reviewer <input id="reviewer" type="text" size="24" '
        'autocomplete="name" placeholder="your name"></label>'
        f'<span id="label-count">0 of {outputs} outputs labelled</span>'
        '<button type="button" id="export-labels">Export labels (JSON)</button>'
        '<span id="label-status" role="status"></span></div>'
        f'<p class="note">One verdict per output; when several apply, the first that applies in '
        f"this list. A second click takes a verdict back. Verdicts stay in this browser; "
        f"export them and load the file with <code>candid labels import FILE</code>. Rows: "
        f"{_e(label_set.sample)}.</p>"
        "<details><summary>What the verdicts mean</summary>"
        f'<dl class="run-summary verdict-legend">{legend}</dl></details></section>'
    )


def labelling_script_tag() -> str:
    return f"<script>{labelling_script()}</script>"
