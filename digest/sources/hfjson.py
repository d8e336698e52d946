"""The Hugging Face daily-papers API JSON (the ``hf-json`` source kind).

A list of ``{"paper": {"id", "title", "summary", "authors": [{"name"}], "upvotes", "publishedAt"}, ...}``;
``id`` is the arXiv id. Entries without a title are skipped; a document of another shape is a ParseError.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from digest.errors import ParseError
from digest.models import Paper, arxiv_id_from, arxiv_version_from
from digest.sources.feed import plain_text
from digest.sources.listing import Listing


def _day(value: Any) -> date | None:
    """``"2024-11-14T10:00:00.000Z"`` to ``date(2024, 11, 14)``; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _text(value: Any) -> str:
    """A JSON string field; anything else (a number, an object) counts as missing."""
    return value if isinstance(value, str) else ""


def _paper(item: dict[str, Any], source: str) -> Paper | None:
    body = item.get("paper", item)
    if not isinstance(body, dict):
        return None
    title = plain_text(_text(body.get("title")) or _text(item.get("title")), "text/plain")
    if not title:
        return None
    raw_id = _text(body.get("id"))
    listed = body.get("authors")
    authors = tuple(
        a["name"].strip()
        for a in (listed if isinstance(listed, list) else [])
        if isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"].strip()
    )
    upvotes = body.get("upvotes")
    return Paper(
        title=title,
        abstract=plain_text(_text(body.get("summary")) or _text(item.get("summary")), "text/plain"),
        arxiv_id=arxiv_id_from(raw_id) if raw_id else None,
        version=arxiv_version_from(raw_id) if raw_id else None,  # "2502.09992v2": a version it shows
        authors=authors,
        published=_day(body.get("publishedAt") or item.get("publishedAt")),
        upvotes=upvotes
        if isinstance(upvotes, int) and not isinstance(upvotes, bool) and upvotes >= 0
        else None,
        source=source,
    )


def parse_hf_json(data: bytes, *, source: str) -> tuple[list[Paper], int]:
    """Papers in a daily-papers JSON document, and how many entries were skipped (no title, wrong types).

    >>> doc = b'[{"paper": {"id": "2411.04330", "title": "Scaling Laws for Precision", "upvotes": 7}}, 5]'
    >>> papers, skipped = parse_hf_json(doc, source="hf")
    >>> [(p.key, p.upvotes) for p in papers], skipped
    ([('2411.04330', 7)], 1)
    """
    if not data.strip():
        raise ParseError(source, "the response was empty", hint="check the URL")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        looks_html = data.lstrip()[:1] == b"<"
        raise ParseError(
            source, "not JSON (it looks like an HTML page)" if looks_html else f"not valid JSON: {exc}"
        ) from exc
    if isinstance(doc, dict) and isinstance(doc.get("papers"), list):
        doc = doc["papers"]
    if not isinstance(doc, list):
        raise ParseError(source, f"expected a JSON list of papers, got {type(doc).__name__}")
    papers: list[Paper] = []
    for item in doc:
        try:
            paper = _paper(item, source) if isinstance(item, dict) else None
        except (TypeError, ValueError, AttributeError, KeyError):  # one odd entry, not the listing
            paper = None
        if paper is not None:
            papers.append(paper)
    return papers, len(doc) - len(papers)


def parse(data: bytes, listing: Listing) -> tuple[list[Paper], int]:
    """The ``hf-json`` kind: Hugging Face's Daily Papers JSON."""
    return parse_hf_json(data, source=listing.source)
