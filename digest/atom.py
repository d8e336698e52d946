"""A reader's Atom feed (RFC 4287) of the papers their digests brought: one entry per paper, with why.

Pure: the web app gives it what was sent (``outbox.sent_papers``) and the reader's profile, and serves the
bytes. feedgen writes the XML (ids, ``updated``, links and escaping as RFC 4287 wants them); this module
decides what goes in. An entry's id is a tag URI (RFC 4151) made of the site's host, a one-way hash of the
reader's mailbox key and the paper's key: permanent (a paper is sent to a reader once) and naming nobody.
Text from listings may hold characters XML cannot carry; they are dropped, never an error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlsplit

from digest.models import Match

FEED_ENTRIES = 200  # the newest papers a feed holds: a week of full daily digests and more
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot hold (control characters, lone surrogates).

    >>> xml_text("a\\x00b\\x1bc\\u2603")
    'abc☃'
    """
    return _NOT_XML.sub("", text)


@dataclass(frozen=True, slots=True)
class Sent:
    """One paper a reader was sent, with its reasons: what one feed entry shows."""

    match: Match
    sent_at: datetime
    day: date
    reasons: tuple[str, ...]


def tag(site: str, *parts: str) -> str:
    """A tag URI (RFC 4151) under ``site``'s host: an id that stays the same for ever.

    >>> tag("https://digest.example.org/x", "feed", "abc")
    'tag:digest.example.org,2026:feed/abc'
    """
    return f"tag:{urlsplit(site).hostname or 'localhost'},2026:{'/'.join(parts)}"


def reader_id(key: str) -> str:
    """A one-way name for a reader's mailbox key, for ids that must not show the address."""
    return hashlib.sha256(f"digest.feed:{key}".encode()).hexdigest()[:24]


def atom_feed(*, site: str, self_url: str, key: str, title: str, author: str, sent: Sequence[Sent]) -> bytes:
    """The feed's bytes: ``sent`` (newest first) as entries, under ``self_url``; ``site`` is the service's
    base URL (the feed's alternate link and the ids' host)."""
    from feedgen.feed import FeedGenerator  # imported here: only the feed route needs it

    feed = FeedGenerator()
    feed.id(tag(site, "feed", reader_id(key)))
    feed.title(title)
    feed.subtitle("The papers of your digests, one entry each, with why they came.")
    feed.author({"name": author})
    feed.link(href=self_url, rel="self", type="application/atom+xml")
    feed.link(href=site, rel="alternate", type="text/html")
    feed.updated(max((s.sent_at for s in sent), default=datetime(2026, 1, 1, tzinfo=UTC)))
    for item in sent:
        paper = item.match.paper
        entry = feed.add_entry(order="append")
        entry.id(tag(site, "paper", reader_id(key), xml_text(paper.key)))
        entry.title(xml_text(paper.title) or "(untitled)")
        # One link only: feedgen 1.0 writes an entry link's href and drops its rel and type (an open bug
        # upstream), so a second (the PDF) would read as a second "alternate", which RFC 4287 forbids.
        entry.link(href=xml_text(paper.page_url), rel="alternate")
        entry.updated(item.sent_at)
        entry.published(item.sent_at)
        if paper.authors:
            entry.author([{"name": xml_text(a)} for a in paper.authors[:50] if xml_text(a).strip()])
        why = "; ".join(item.reasons)
        entry.summary(xml_text(f"{why}. In your digest of {item.day:%A %d %B %Y}.\n\n{paper.abstract}"))
    return bytes(feed.atom_str(pretty=False))
