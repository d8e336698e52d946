"""RSS and Atom listings through feedparser (the ``feed`` source kind), arXiv's feeds in particular.

arXiv RSS items carry the id in ``link``/``guid`` (``oai:arXiv.org:2411.00001v2``), the authors in one
``dc:creator`` string, and a description of the form ``arXiv:2411.00001v2 Announce Type: new \\nAbstract: ...``.
Announce types ``new`` and ``cross`` are new papers; ``replace`` and ``replace-cross`` are new versions of
papers listed before: they come out flagged as ``revision`` (the store keeps them only as a newer version of
a paper it has, never as a new paper). The version is read from the id (``…v2``). Plain RSS and Atom
(arXiv's API export included) work the same way without announce types.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING

from digest.errors import ParseError
from digest.models import Paper, arxiv_id_from, arxiv_version_from
from digest.sources.listing import Listing

if TYPE_CHECKING:  # feedparser and lxml are imported when a feed is parsed, not by every run that starts
    import feedparser

NEW_ANNOUNCE_TYPES = frozenset({"new", "cross"})
REVISION_ANNOUNCE_TYPES = frozenset({"replace", "replace-cross"})
_ANNOUNCE = re.compile(r"Announce Type:\s*([\w-]+)", re.IGNORECASE)
_ABSTRACT = re.compile(r"Abstract:\s*", re.IGNORECASE)
_OLD_TITLE_SUFFIX = re.compile(
    r"\s*\(arXiv:[^)]*\)\s*$"
)  # pre-2024 arXiv RSS: "Title. (arXiv:2401.1v1 [cs.CL])"
_SPACE = re.compile(r"\s+")
_CATEGORY = re.compile(r"[a-z][a-z-]{0,15}(\.[A-Za-z-]{1,15})?")


def plain_text(value: str, content_type: str = "text/html") -> str:
    """Markup to the text a reader sees, whitespace folded; markup is dropped, never kept.

    >>> plain_text("We study <b>speculative</b>\\n decoding &amp; more.")
    'We study speculative decoding & more.'
    """
    if "html" in content_type and value.strip():
        import lxml.html

        value = lxml.html.fromstring(f"<div>{value}</div>").text_content()
    return _SPACE.sub(" ", value).strip()


def split_creators(creator: str) -> tuple[str, ...]:
    """arXiv's one-string author list to names.

    >>> split_creators("Alice Smith, Bob Jones and Carol Wu")
    ('Alice Smith', 'Bob Jones', 'Carol Wu')
    """
    parts = re.split(r",\s*|\s+and\s+", creator)
    return tuple(p.strip() for p in parts if p.strip())


def _authors(entry: feedparser.FeedParserDict) -> tuple[str, ...]:
    names: list[str] = []
    for a in entry.get("authors", []):
        names.extend(split_creators(a.get("name", "")))
    if not names and entry.get("author"):
        names.extend(split_creators(entry["author"]))
    return tuple(dict.fromkeys(names))


def categories_of(entry: feedparser.FeedParserDict) -> tuple[str, ...]:
    """An entry's categories, the primary first: arXiv's API names it (``arxiv:primary_category``); its
    RSS lists the primary first, then the cross-lists. Only arXiv-shaped terms ("cs.CL", "math.PR",
    "hep-th") are kept, at most 20."""
    terms = [str((entry.get("arxiv_primary_category") or {}).get("term", ""))]
    terms += [str(t.get("term", "")) for t in entry.get("tags", [])]
    return tuple(dict.fromkeys(t.strip() for t in terms if _CATEGORY.fullmatch(t.strip())))[:20]


def _published(entry: feedparser.FeedParserDict) -> date | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    return date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday) if parsed else None


def _entry_to_paper(entry: feedparser.FeedParserDict, source: str) -> Paper | None:
    """One feed entry to a Paper (flagged ``revision`` for a new version's announcement); None for an entry
    with no title or an announce type not known."""
    detail = entry.get("summary_detail") or {}
    description = entry.get("summary", "")
    announce = entry.get("arxiv_announce_type")
    if not announce:
        m = _ANNOUNCE.search(description)
        announce = m.group(1) if m else None
    kind = announce.lower() if announce else "new"
    if kind not in NEW_ANNOUNCE_TYPES and kind not in REVISION_ANNOUNCE_TYPES:
        return None
    text = plain_text(description, detail.get("type", "text/html"))
    m = _ABSTRACT.search(text)
    abstract = text[m.end() :] if m else text
    title = plain_text(_OLD_TITLE_SUFFIX.sub("", entry.get("title", "")), "text/plain").rstrip(".")
    if not title:
        return None
    link = entry.get("link", "")
    arxiv_id = arxiv_id_from(entry.get("id", "")) or arxiv_id_from(link)
    version = arxiv_version_from(entry.get("id", "")) or arxiv_version_from(link)
    return Paper(
        title=title,
        abstract=abstract,
        arxiv_id=arxiv_id,
        authors=_authors(entry),
        published=_published(entry),
        categories=categories_of(entry),
        url=link if link.startswith(("https://", "http://")) and not arxiv_id else None,
        source=source,
        version=version,
        revision=kind in REVISION_ANNOUNCE_TYPES,
    )


def parse_feed(data: bytes, *, source: str) -> tuple[list[Paper], int]:
    """Papers in an RSS/Atom document (new versions among them flagged ``revision``), and how many entries
    were skipped (unreadable ones, unknown announce types).

    Raises ParseError for an empty body, a document that is no feed (an HTML error page), or broken XML.
    """
    if not data.strip():
        raise ParseError(source, "the response was empty", hint="check the feed URL")
    import feedparser

    # feedparser flags these even for feeds that parsed fine; anything else it flags is a broken document.
    benign = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
    parsed = feedparser.parse(data)
    problem = parsed.get("bozo_exception")
    if not parsed.get("version"):
        raise ParseError(
            source,
            "not an RSS or Atom feed (it looks like an HTML page)"
            if b"<html" in data[:2000].lower()
            else f"not an RSS or Atom feed ({problem or 'no feed elements'})",
            hint="check that the URL or path points at the feed itself",
        )
    if parsed.get("bozo") and not isinstance(problem, benign):
        raise ParseError(source, f"malformed feed XML: {problem}")
    papers: list[Paper] = []
    skipped = 0
    for entry in parsed.entries:
        try:
            paper = _entry_to_paper(entry, source)
        except (TypeError, ValueError, AttributeError, KeyError):  # one odd entry, not the listing
            paper = None
        if paper is None:
            skipped += 1
        else:
            papers.append(paper)
    return papers, skipped


def parse(data: bytes, listing: Listing) -> tuple[list[Paper], int]:
    """The ``feed`` kind: an RSS or Atom feed (arXiv's, with its announce types)."""
    return parse_feed(data, source=listing.source)
