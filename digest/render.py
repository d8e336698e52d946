"""A Digest to an email: Jinja templates, CSS inlined by premailer, a real text part, correct headers.

Pure: it reads templates, never the network or the clock (``now`` comes in). Feed text is untrusted: the
HTML template is autoescaped, titles and abstracts are plain text, and only http(s) links are made.
"""

from __future__ import annotations

import hashlib
import logging
import re
import textwrap
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import quote

import premailer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from digest.models import Digest, Match
from digest.select import match_spans

ABSTRACT_LIMIT = 600
TEXT_WIDTH = 72


def default_templates_dir() -> Path:
    """The templates shipped with digest: inside the installed package, or the repository's templates/."""
    packaged = Path(__file__).parent / "_templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "templates"


def short_date(day: date) -> str:
    """``date(2025, 11, 22)`` -> ``"Nov 22"``."""
    return f"{day:%b} {day.day}"


def cut_abstract(text: str, limit: int = ABSTRACT_LIMIT) -> tuple[str, bool]:
    """The abstract cut at a sentence end near ``limit`` (else a word), and whether it was cut.

    >>> cut_abstract("One. Two three.", limit=8)
    ('One.', True)
    >>> cut_abstract("Short.", limit=600)
    ('Short.', False)
    """
    if len(text) <= limit:
        return text, False
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
    if end >= limit // 2:
        return head[: end + 1], True
    if head.endswith(".") and len(head) > limit // 2:
        return head, True
    return head.rsplit(" ", 1)[0].rstrip(",;:") + "…", True


def one_line(text: str) -> str:
    """Any whitespace, CR and LF included, folded to single spaces: safe for a header."""
    return " ".join(text.split())


def subject_for(digest: Digest) -> str:
    """Plain words: how many papers, the top topics, the date.

    e.g. "5 new papers on RAG, speculative decoding · Nov 22" or "Trending: 20 new papers · Nov 22".
    """
    n = len(digest.matches)
    count = f"{n} new paper{'s' if n != 1 else ''}"
    if digest.subscriber.profile.trending:
        return f"Trending: {count} · {short_date(digest.day)}"
    topics = ", ".join(one_line(t) for t in digest.top_topics(3))
    return f"{count} on {topics} · {short_date(digest.day)}"


def message_id_for(digest: Digest, domain: str) -> str:
    """Deterministic: the same subscriber, date and papers give the same Message-ID (a resend is recognisable)."""
    h = hashlib.sha256()
    h.update(digest.subscriber.email.encode())
    h.update(digest.day.isoformat().encode())
    for m in digest.matches:
        h.update(b"\0" + m.paper.key.encode())
    return f"<digest.{digest.day:%Y%m%d}.{h.hexdigest()[:24]}@{domain}>"


def _wrap(text: str, indent: int = 0) -> str:
    pad = " " * indent
    return textwrap.fill(
        one_line(text),
        TEXT_WIDTH,
        initial_indent=pad,
        subsequent_indent=pad,
        break_long_words=False,
        break_on_hyphens=False,
    )


def marked(text: str, keywords: list[str]) -> list[tuple[str, bool]]:
    """``text`` as segments, each flagged if a keyword matched it: what the HTML wraps in ``<mark>``.

    >>> marked("Faster Speculative Decoding", ["speculative decoding"])
    [('Faster ', False), ('Speculative Decoding', True)]
    """
    out: list[tuple[str, bool]] = []
    at = 0
    for start, end in match_spans(text, keywords):
        if start > at:
            out.append((text[at:start], False))
        out.append((text[start:end], True))
        at = end
    if at < len(text):
        out.append((text[at:], False))
    return out


def _safe_url(url: str | None) -> str | None:
    """Only http(s) links are ever made."""
    return url if url and re.match(r"^https?://[^\s<>\"']+$", url) else None


class Renderer:
    """Renders digests with one Jinja environment and inliner settings, built once per run."""

    def __init__(
        self,
        *,
        sender: str,
        templates_dir: Path | None = None,
        base_url: str | None = None,
    ) -> None:
        self.sender = sender
        self.sender_name, self.sender_address = parseaddr(sender)
        self.domain = self.sender_address.rpartition("@")[2] or "localhost"
        self.base_url = base_url
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir or default_templates_dir())),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["wrap"] = _wrap
        self.env.filters["short_date"] = short_date

    def unsubscribe_links(self, email: str) -> dict[str, str | None]:
        """``mailto`` always; ``https`` when base_url is set; ``url`` the one to show a reader."""
        mailto = f"mailto:{self.sender_address}?subject={quote('unsubscribe ' + email)}"
        https = f"{self.base_url}/unsubscribe?email={quote(email)}" if self.base_url else None
        return {"mailto": mailto, "https": https, "url": https or mailto}

    def context(self, digest: Digest) -> dict[str, Any]:
        entries = []
        for number, m in enumerate(digest.matches, start=1):
            entries.append(self._entry(number, m))
        profile = digest.subscriber.profile
        topics = digest.top_topics(3)
        n = len(digest.matches)
        preheader = (
            f"{n} paper{'s' if n != 1 else ''} on {', '.join(topics)} · {short_date(digest.day)}"
            if topics
            else f"{n} trending paper{'s' if n != 1 else ''} · {short_date(digest.day)}"
        )
        return {
            "digest": digest,
            "subscriber": digest.subscriber,
            "profile": profile,
            "entries": entries,
            "count": n,
            "more": digest.more,
            "day": digest.day,
            "preheader": preheader,
            "subject": subject_for(digest),
            "unsubscribe": self.unsubscribe_links(digest.subscriber.email),
            "sender_name": self.sender_name or "Paper Digest",
        }

    @staticmethod
    def _entry(number: int, m: Match) -> dict[str, Any]:
        p = m.paper
        abstract, was_cut = cut_abstract(p.abstract)
        meta = [
            x
            for x in (
                p.byline,
                f"{p.published:%b} {p.published.day}, {p.published.year}" if p.published else None,
                f"▲ {p.upvotes}" if p.upvotes else None,
            )
            if x
        ]
        return {
            "number": number,
            "paper": p,
            "title": one_line(p.title),
            "abstract": abstract,
            "title_parts": marked(one_line(p.title), m.matched),
            "abstract_parts": marked(abstract, m.matched),
            "cut": was_cut,
            "url": _safe_url(p.page_url),
            "pdf_url": _safe_url(p.pdf_url),
            "hf_url": _safe_url(p.hf_url),
            "meta": " · ".join(meta),
            "matched": m.matched,
            "score": m.score,
        }

    def html(self, context: dict[str, Any]) -> str:
        raw = self.env.get_template("digest.html").render(context)
        inliner = premailer.Premailer(
            raw,
            allow_network=False,
            allow_loading_external_files=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            strip_important=False,
            # Keep width/height attributes as written: Outlook sizes tables by them, not by CSS.
            disable_basic_attributes=["width", "height"],
        )
        return str(inliner.transform(pretty_print=False))

    def text(self, context: dict[str, Any]) -> str:
        return str(self.env.get_template("digest.txt").render(context))

    def render(self, digest: Digest, now: datetime, *, message_id: str | None = None) -> EmailMessage:
        """The complete message: headers, a text part and an HTML part (multipart/alternative).

        ``message_id`` is given when resending an outbox row, so a resend carries the original's id.
        """
        context = self.context(digest)
        msg = EmailMessage()
        msg["From"] = self.sender
        sub = digest.subscriber
        msg["To"] = Address(display_name=one_line(sub.name), addr_spec=sub.email)
        msg["Subject"] = context["subject"]
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = message_id or message_id_for(digest, self.domain)
        links = self.unsubscribe_links(sub.email)
        msg["List-Unsubscribe"] = ", ".join(f"<{u}>" for u in (links["https"], links["mailto"]) if u)
        if links["https"]:
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["List-Id"] = f"{one_line(self.sender_name or 'Paper Digest')} <digest.{self.domain}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(self.text(context))
        msg.add_alternative(self.html(context), subtype="html")
        return msg
