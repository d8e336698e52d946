"""Text captures of Hugging Face Daily Papers listing pages (the ``snapshot`` source kind).

A capture is page chrome, then per paper a title line and an abstract line, and sometimes a meta block:
an org line or "• N authors", a "·" line, and a date line with an optional upvote count::

    Subscribe
    Daily Papers
    Oct 22                      <- the listing date: chrome
    Reactive Transformer (RxT) -- Stateful Real-Time Processing ...
    The Transformer architecture has become the de facto standard ...
    ReactiveAI Reactive AI      <- org (or "  • 14 authors")
    ·
    Oct 3 2                     <- Oct 3, 2 upvotes ("Nov 14, 2024" carries a year)

Blank lines, a BOM and CRLF line ends are ignored. The parse is pure: ``today`` decides the year of a date
shown without one (the latest such date not after ``today``).
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from digest.errors import ParseError
from digest.models import Paper
from digest.sources.listing import Listing

MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], start=1
    )
}
_DATE_LINE = re.compile(
    r"^(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (?P<day>\d{1,2})"
    r"(?:, (?P<year>\d{4}))?(?: (?P<upvotes>\d+))?$"
)
_AUTHORS_LINE = re.compile(r"^•\s*(\d+)\s+authors?$")
_DOT = "·"
MIN_ABSTRACT = 100  # characters: an abstract line is a paragraph, not a heading
LISTING_SHARE = 0.8  # of the entries must read as papers for a text to be taken as a listing
# Exact lines of page chrome, never papers.
CHROME = frozenset(
    {
        "new",
        "Subscribe",
        "Daily Papers",
        "byAK and the research community",
        "Get trending papers in your email inbox!",
        "Get trending papers in your email inbox once a day!",
    }
)
# "Subscribe" glued to the first title when the capture lost a line break: "SubscribeFunctional Bayesian ...".
_GLUED_SUBSCRIBE = re.compile(r"^Subscribe(?=[A-Z0-9])")


def parse_date_line(line: str, today: date) -> tuple[date, int | None] | None:
    """A listing date line to (date, upvotes), or None if the line is no date.

    >>> parse_date_line("Oct 3 2", date(2025, 11, 1))
    (datetime.date(2025, 10, 3), 2)
    >>> parse_date_line("Nov 14, 2024", date(2025, 11, 1))
    (datetime.date(2024, 11, 14), None)
    >>> parse_date_line("Dec 30", date(2025, 11, 1))   # no year, would be in the future: last year's
    (datetime.date(2024, 12, 30), None)
    """
    m = _DATE_LINE.match(line)
    if not m:
        return None
    month, day = MONTHS[m["mon"]], int(m["day"])
    upvotes = int(m["upvotes"]) if m["upvotes"] else None
    try:
        if m["year"]:
            return date(int(m["year"]), month, day), upvotes
        shown = date(today.year, month, day)
        if shown > today + timedelta(days=1):
            shown = date(today.year - 1, month, day)
        return shown, upvotes
    except ValueError:  # "Feb 30": not a date after all
        return None


def _content_lines(text: str) -> list[str]:
    """Stripped non-blank lines; BOM and any line-end convention removed."""
    return [s for s in (line.strip() for line in text.lstrip("\ufeff").splitlines()) if s]


def _skip_header(lines: list[str]) -> int:
    """Index of the first title: past the chrome and the listing date. Unglues "SubscribeTitle" in place."""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line in CHROME or _DATE_LINE.match(line):
            i += 1
            continue
        if _GLUED_SUBSCRIBE.match(line):
            lines[i] = line[len("Subscribe") :]
        break
    return i


def parse_snapshot(text: str, *, source: str, today: date) -> list[Paper]:
    """Every paper entry in a capture, in page order (duplicates kept: the store folds them).

    >>> cap = "Daily Papers\\nOct 22\\nA Title\\nAn abstract.\\n  • 3 authors\\n·\\nOct 3 2\\nB\\nB's abstract."
    >>> [(p.title, p.author_count, p.upvotes) for p in parse_snapshot(cap, source="s", today=date(2025, 10, 22))]
    [('A Title', 3, 2), ('B', None, None)]
    """
    lines = _content_lines(text)
    i = _skip_header(lines)
    papers: list[Paper] = []
    while i + 1 < len(lines):
        title, abstract = lines[i], lines[i + 1]
        i += 2
        if title in CHROME:
            i -= 1
            continue
        org: str | None = None
        author_count: int | None = None
        published: date | None = None
        upvotes: int | None = None
        # Optional meta block: [org | "• N authors"] "·" date-line.
        if i + 1 < len(lines) and lines[i] != _DOT and lines[i + 1] == _DOT:
            m = _AUTHORS_LINE.match(lines[i])
            if m:
                author_count = int(m.group(1))
            else:
                org = lines[i]
            i += 1
        if i < len(lines) and lines[i] == _DOT:
            i += 1
            parsed = parse_date_line(lines[i], today) if i < len(lines) else None
            if parsed:
                published, upvotes = parsed
                i += 1
        papers.append(
            Paper(
                title=title,
                abstract=abstract,
                org=org,
                author_count=author_count,
                published=published,
                upvotes=upvotes,
                source=source,
            )
        )
    return papers


def looks_like_html(text: str) -> bool:
    """An HTML page (an error page, a login wall) rather than a text capture."""
    head = text.lstrip("\ufeff \t\r\n")[:200].lower()
    return head.startswith(("<!doctype html", "<html", "<?xml", "<head", "<body"))


def looks_like_listing(papers: list[Paper]) -> bool:
    """Whether the entries read as papers: most have an abstract of some length, longer than the title.

    Every real capture passes with all its entries; a README or a changelog read as a listing pairs
    headings with short lines and fails (about a third to a half of its "entries" pass).
    """
    papers_like = sum(1 for p in papers if len(p.abstract) >= MIN_ABSTRACT and len(p.abstract) > len(p.title))
    return papers_like >= LISTING_SHARE * len(papers)


def parse(data: bytes, listing: Listing) -> tuple[list[Paper], int]:
    """The ``snapshot`` kind: a text capture of a Daily Papers page. Refused when it is not text, empty,
    an HTML page, or lines that do not pair up as titles and abstracts (a README is never 25 papers)."""
    source, where = listing.source, listing.where
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(source, f"not UTF-8 text{where}: {exc}") from exc
    if not text.strip():
        raise ParseError(source, f"the listing is empty{where}")
    if looks_like_html(text):
        raise ParseError(source, f"an HTML page, not a text capture of a listing{where}")
    papers = parse_snapshot(text, source=source, today=listing.today)
    if not papers:
        raise ParseError(source, f"no paper entries found{where}", hint="is this a Daily Papers capture?")
    if not looks_like_listing(papers):
        raise ParseError(
            source,
            f"not a Daily Papers listing{where}: its lines do not pair up as titles and abstracts",
            hint="check the source's path; a snapshot is a text capture of a Daily Papers page",
        )
    return papers, 0
