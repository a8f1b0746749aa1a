"""Text on the review pages: every value is HTML-escaped (model outputs are untrusted), and
identifiers shown to a person are written as words."""

from __future__ import annotations

import html
from typing import Any


def escape(text: Any) -> str:
    """``text`` as HTML text or attribute value (quotes escaped too)."""
    return html.escape(str(text), quote=True)


def words(identifier: str) -> str:
    """An identifier as words for a heading: ``hallucination_per_mention`` ->
    ``hallucination per mention``. The identifier itself stays in a ``data-`` attribute.

    Example:
        >>> words("visible_features")
        'visible features'
    """
    return identifier.replace("_", " ")
