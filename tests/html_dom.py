"""A minimal HTML parser for structural assertions on rendered review pages."""

from __future__ import annotations

from html.parser import HTMLParser


class Dom(HTMLParser):
    """Start tags with their attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)

    def having(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        """Attributes of every ``tag`` element (with class ``cls`` when given)."""
        return [
            attrs for t, attrs in self.tags
            if t == tag and (cls is None or cls in attrs.get("class", "").split())
        ]

    def count(self, tag: str, cls: str) -> int:
        return len(self.having(tag, cls))
