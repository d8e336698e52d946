"""Listing sources: one module per kind, each a pure parser, and the registry of kinds (``KINDS``); ``fetch``
holds the I/O. A new kind is one parser module and one registry line.

``load(config, validators, today)`` reads one configured source and returns its papers. Every failure is a
``SourceError`` naming the source, so the pipeline can report it and go on with the others. One bad entry
never costs the others: each kind's parser skips (and counts) an entry it cannot read, and ``bounded``
cuts or clamps what is absurd in the rest (a 150 KB title, 10^23 upvotes) before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Protocol

from digest.errors import ParseError
from digest.models import Paper, Validators
from digest.plugins import add_installed
from digest.redact import redact_url
from digest.sources import feed, hfjson, snapshot
from digest.sources.fetch import fetch_url, headers_from_env, read_paths
from digest.sources.listing import Listing, Parser

# What one paper may hold. The email shows less (titles cut at 300, abstracts near 600); these keep a
# hostile listing from storing megabytes per paper or numbers SQLite cannot hold.
TITLE_MAX = 1_000
ABSTRACT_MAX = 20_000
NAME_MAX = 200  # one author, an org
AUTHORS_MAX = 200
URL_MAX = 2_000
COUNT_MAX = 10**9  # upvotes, author counts


@dataclass(frozen=True, slots=True)
class Loaded:
    """What one source gave this run. ``skipped``: entries left out on purpose (unreadable
    entries); ``clamped``: papers kept with a field cut or clamped. ``validators`` are to be saved with the
    papers (URL sources)."""

    papers: list[Paper] = field(default_factory=list)
    skipped: int = 0
    validators: Validators | None = None
    not_modified: bool = False
    clamped: int = 0


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _count(value: int | None) -> int | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return min(value, COUNT_MAX)


def bounded(paper: Paper) -> Paper:
    """The paper with every field within its limit: long text cut, counts clamped, odd links dropped.

    >>> p = bounded(Paper("T" * 5000, "abstract", upvotes=10**23, url="javascript:alert(1)"))
    >>> len(p.title), p.upvotes, p.url
    (1000, 1000000000, None)
    """
    url = paper.url
    if url is not None and (len(url) > URL_MAX or not url.startswith(("https://", "http://"))):
        url = None
    arxiv_id = paper.arxiv_id if paper.arxiv_id and len(paper.arxiv_id) <= 40 else None
    changes = {
        "title": _cut(paper.title, TITLE_MAX),
        "abstract": _cut(paper.abstract, ABSTRACT_MAX),
        "authors": tuple(_cut(a, NAME_MAX) for a in paper.authors[:AUTHORS_MAX]),
        "org": _cut(paper.org, NAME_MAX) if paper.org else paper.org,
        "author_count": _count(paper.author_count),
        "upvotes": _count(paper.upvotes),
        "url": url,
        "arxiv_id": arxiv_id,
    }
    if all(getattr(paper, k) == v for k, v in changes.items()):
        return paper
    return replace(paper, **changes)  # type: ignore[arg-type]


# The listing kinds: one parser module each, one line here. A kind from outside digest registers itself
# (``register``), or is found under the entry-point group ``digest.sources`` of an installed package.
KINDS: dict[str, Parser] = {
    "snapshot": snapshot.parse,
    "feed": feed.parse,
    "hf-json": hfjson.parse,
}


def register(kind: str, parser: Parser) -> None:
    """Add a listing kind: ``[[sources]] kind = "<kind>"`` then reads its bytes with ``parser``."""
    KINDS[kind] = parser


def kinds() -> dict[str, Parser]:
    """Every listing kind known: digest's, those registered, and installed packages' (``digest.sources``)."""
    return add_installed("digest.sources", KINDS)


def parse(kind: str, data: bytes, *, source: str, today: date, origin: str = "") -> tuple[list[Paper], int]:
    """Bytes of one document of ``kind`` to papers, and how many entries were skipped on purpose."""
    parser = KINDS.get(kind) or kinds().get(kind)
    if parser is None:
        raise ParseError(source, f"no listing kind {kind!r}", hint=f"use one of {', '.join(sorted(kinds()))}")
    return parser(data, Listing(source, today, origin))


def _bound_all(papers: list[Paper]) -> tuple[list[Paper], int]:
    out = [bounded(p) for p in papers]
    return out, sum(a is not b for a, b in zip(out, papers, strict=True))


class SourceSpec(Protocol):
    """One configured source (``[[sources]]``, ``config_tables.SourceConfig``): what ``load`` reads."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_bytes(self) -> int: ...
    @property
    def headers_from_env(self) -> Mapping[str, str]: ...


def load(config: SourceSpec, validators: Validators | None, today: date) -> Loaded:
    """Fetch and parse one configured source."""
    if config.url is not None:
        result = fetch_url(
            config.url,
            source=config.name,
            timeout=config.timeout,
            validators=validators,
            max_bytes=config.max_bytes,
            headers=headers_from_env(config.headers_from_env, source=config.name),
        )
        if result.not_modified:
            return Loaded(validators=result.validators, not_modified=True)
        found, skipped = parse(
            config.kind, result.body, source=config.name, today=today, origin=redact_url(config.url)
        )
        papers, clamped = _bound_all(found)
        return Loaded(papers, skipped, result.validators, clamped=clamped)
    assert config.path is not None
    found = []
    skipped = 0
    for path, data in read_paths(config.path, source=config.name, max_bytes=config.max_bytes):
        more, skip = parse(config.kind, data, source=config.name, today=today, origin=path.name)
        found.extend(more)
        skipped += skip
    papers, clamped = _bound_all(found)
    return Loaded(papers, skipped, clamped=clamped)
