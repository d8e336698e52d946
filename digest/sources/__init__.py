"""Listing sources: one module per kind, each a pure parser; ``fetch`` holds the I/O.

``load(config, validators, today)`` reads one configured source and returns its papers. Every failure is a
``SourceError`` naming the source, so the pipeline can report it and go on with the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from digest.errors import ParseError
from digest.models import Paper
from digest.settings import SourceConfig
from digest.sources.feed import parse_feed
from digest.sources.fetch import Validators, fetch_url, read_paths
from digest.sources.hfjson import parse_hf_json
from digest.sources.snapshot import looks_like_html, parse_snapshot


@dataclass(frozen=True, slots=True)
class Loaded:
    """What one source gave this run. ``validators`` are to be saved with the papers (URL sources)."""

    papers: list[Paper] = field(default_factory=list)
    skipped: int = 0
    validators: Validators | None = None
    not_modified: bool = False


def parse(kind: str, data: bytes, *, source: str, today: date, origin: str = "") -> tuple[list[Paper], int]:
    """Bytes of one document of ``kind`` to papers, and how many entries were skipped on purpose."""
    if kind == "feed":
        return parse_feed(data, source=source)
    if kind == "hf-json":
        return parse_hf_json(data, source=source), 0
    where = f" ({origin})" if origin else ""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(source, f"not UTF-8 text{where}: {exc}") from exc
    if not text.strip():
        raise ParseError(source, f"the listing is empty{where}")
    if looks_like_html(text):
        raise ParseError(source, f"an HTML page, not a text capture of a listing{where}")
    papers = parse_snapshot(text, source=source, today=today)
    if not papers:
        raise ParseError(source, f"no paper entries found{where}", hint="is this a Daily Papers capture?")
    return papers, 0


def load(config: SourceConfig, validators: Validators | None, today: date) -> Loaded:
    """Fetch and parse one configured source."""
    if config.url is not None:
        result = fetch_url(config.url, source=config.name, timeout=config.timeout, validators=validators)
        if result.not_modified:
            return Loaded(validators=result.validators, not_modified=True)
        papers, skipped = parse(config.kind, result.body, source=config.name, today=today, origin=config.url)
        return Loaded(papers, skipped, result.validators)
    assert config.path is not None
    papers = []
    skipped = 0
    for path, data in read_paths(config.path, source=config.name):
        found, skip = parse(config.kind, data, source=config.name, today=today, origin=path.name)
        papers.extend(found)
        skipped += skip
    return Loaded(papers, skipped)
