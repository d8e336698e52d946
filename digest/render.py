"""A Digest to an email: Jinja templates, CSS inlined by premailer, a real text part, correct headers.

Pure: it reads templates, never the network or the clock (``now`` comes in). Feed text is untrusted: the
HTML template is autoescaped, titles and abstracts are plain text, and only http(s) links are made.
"""

from __future__ import annotations

import email.policy
import functools
import hashlib
import logging
import re
import textwrap
from dataclasses import dataclass, replace
from datetime import date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import quote

import premailer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from digest.models import Digest, Paper
from digest.select import match_spans

ABSTRACT_LIMIT = 600
TITLE_LIMIT = 300
TEXT_WIDTH = 72
HTML_BUDGET = 100_000  # bytes of HTML; Gmail clips a message at about 102 KB and hides the rest
# Headers are folded at 998 (RFC 5322's hard limit), not 78: at 78, the email package turns a long URL
# in List-Unsubscribe into RFC 2047 encoded-words, which no mail client can use as a link.
# Bodies are 7-bit clean (quoted-printable where needed) so no relay has to downgrade 8-bit mail.
MESSAGE_POLICY = email.policy.default.clone(max_line_length=998, cte_type="7bit")
log = logging.getLogger("digest.render")


def default_templates_dir() -> Path:
    """The templates shipped with digest: inside the installed package, or the repository's templates/."""
    packaged = Path(__file__).parent / "_templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "templates"


def short_date(day: date) -> str:
    """``date(2025, 11, 22)`` -> ``"Nov 22"``."""
    return f"{day:%b} {day.day}"


def cut_abstract(text: str, limit: int = ABSTRACT_LIMIT) -> tuple[str, bool]:
    """The abstract cut at a sentence end near ``limit`` (else a word), and whether it was cut.

    >>> cut_abstract("First sentence here. Second one is longer.", limit=30)
    ('First sentence here.', True)
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


def cut_title(text: str, limit: int = TITLE_LIMIT) -> str:
    """A title on one line, cut at a word near ``limit``: a listing's garbage cannot flood the email.

    >>> cut_title("A  title\\nwith a break")
    'A title with a break'
    """
    text = one_line(text)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "…"


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


@functools.lru_cache(maxsize=1 << 16)
def _wrap(text: str, indent: int = 0) -> str:
    """Wrapped at 72 for the text part. Cached: the same abstracts are wrapped for many subscribers."""
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


def inline_css(html: str) -> str:
    """premailer with the network off and cssutils quiet; ``@media`` rules stay in their ``<style>``."""
    inliner = premailer.Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        strip_important=False,
        # Keep width/height attributes as written: Outlook sizes tables by them, not by CSS.
        disable_basic_attributes=["width", "height"],
    )
    return str(inliner.transform(pretty_print=False))


_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def preinline_template(source: str) -> str | None:
    """The HTML template with its CSS inlined once, its Jinja tags untouched; None if that is not safe.

    Inlining styles is the same work for every email, so it is done once per run: each Jinja tag is
    swapped for a plain word, premailer inlines the page, and the tags are put back. Per email only Jinja
    runs (premailer per email costs ~5 ms, most of the render). A template whose tags premailer would move
    or drop (a tag inside an element's attribute list, say) is refused here and inlined per email instead.

    >>> preinline_template('<html><head><style>p { color: red }</style></head><body><p>{{ x }}</p></body></html>')
    '<html><head></head><body><p style="color:red">{{ x }}</p></body></html>'
    """
    tags: list[str] = []

    def stash(m: re.Match[str]) -> str:
        tags.append(m.group(0))
        return f"jinjatag{len(tags) - 1:05d}x"

    swapped = _JINJA.sub(stash, source)
    if "jinjatag" in _JINJA.sub("", source):
        return None
    for tag in re.findall(r"<[a-zA-Z][^<>]*>", swapped):
        # In a start tag, only an expression inside a quoted attribute value is safe (href="{{ url }}"): a
        # statement there could change the classes the inliner matched against.
        outside_values = re.sub(r'"[^"]*"|\'[^\']*\'', "", tag)
        statements = [n for n in re.findall(r"jinjatag(\d{5})x", tag) if not tags[int(n)].startswith("{{")]
        if "jinjatag" in outside_values or statements:
            return None
    inlined = inline_css(swapped)
    found = [int(n) for n in re.findall(r"jinjatag(\d{5})x", inlined)]
    if found != list(range(len(tags))):
        return None
    return re.sub(r"jinjatag(\d{5})x", lambda m: tags[int(m.group(1))], inlined)


@dataclass(frozen=True, slots=True)
class Composed:
    """A rendered email and the digest it actually shows (fewer papers if the size budget cut some)."""

    digest: Digest
    message: EmailMessage


@functools.lru_cache(maxsize=1 << 14)
def _entry(p: Paper, matched: tuple[str, ...]) -> dict[str, Any]:
    """What the templates show of one paper, highlighted for ``matched``.

    Cached: in a run most subscribers get the same few hundred papers with the same few keywords, so the
    cut abstract and its highlight spans are worked out once, not once per email. Read-only for callers.
    """
    abstract, was_cut = cut_abstract(one_line(p.abstract))
    meta = [
        x
        for x in (
            cut_title(p.byline, 200) if p.byline else None,
            f"{p.published:%b} {p.published.day}, {p.published.year}" if p.published else None,
            f"▲ {p.upvotes}" if p.upvotes else None,
        )
        if x
    ]
    return {
        "paper": p,
        "title": cut_title(p.title),
        "abstract": abstract,
        "title_parts": marked(cut_title(p.title), list(matched)),
        "abstract_parts": marked(abstract, list(matched)),
        "cut": was_cut,
        "url": _safe_url(p.page_url),
        "pdf_url": _safe_url(p.pdf_url),
        "hf_url": _safe_url(p.hf_url),
        "meta": " · ".join(meta),
        "matched": list(matched),
    }


class Renderer:
    """Renders digests with one Jinja environment and inliner settings, built once per run."""

    def __init__(
        self,
        *,
        sender: str,
        templates_dir: Path | None = None,
        base_url: str | None = None,
        html_budget: int = HTML_BUDGET,
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
        self.html_budget = html_budget
        source, _, _ = self.env.loader.get_source(self.env, "digest.html")  # type: ignore[union-attr]
        inlined = preinline_template(source)
        if inlined is None:
            log.warning("digest.html cannot be inlined once; inlining CSS per email instead (slower)")
        self._inlined = self.env.from_string(inlined) if inlined is not None else None

    def unsubscribe_links(self, email: str) -> dict[str, str | None]:
        """``mailto`` always; ``https`` when base_url is set; ``url`` the one to show a reader."""
        mailto = f"mailto:{self.sender_address}?subject={quote('unsubscribe ' + email)}"
        https = f"{self.base_url}/unsubscribe?email={quote(email)}" if self.base_url else None
        return {"mailto": mailto, "https": https, "url": https or mailto}

    def context(self, digest: Digest) -> dict[str, Any]:
        entries = []
        for number, m in enumerate(digest.matches, start=1):
            entries.append({"number": number, "score": m.score, **_entry(m.paper, tuple(m.matched))})
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

    def html(self, context: dict[str, Any]) -> str:
        if self._inlined is not None:
            return str(self._inlined.render(context))
        return inline_css(self.env.get_template("digest.html").render(context))

    def text(self, context: dict[str, Any]) -> str:
        return str(self.env.get_template("digest.txt").render(context))

    def fit(self, digest: Digest) -> tuple[Digest, dict[str, Any], str]:
        """The digest cut to the papers whose HTML fits ``html_budget``, its context and its HTML.

        Papers that do not fit move to ``more`` ("N more papers matched: see them in your next digest")
        and stay candidates; the header and footer are always there.
        """
        context = self.context(digest)
        html = self.html(context)
        if len(html.encode()) <= self.html_budget:
            return digest, context, html
        fits = 0  # the largest paper count that fits, by bisection: a handful of renders
        low, high = 0, len(digest.matches) - 1
        while low <= high:
            mid = (low + high) // 2
            trial = self._cut(digest, mid)
            if len(self.html(self.context(trial)).encode()) <= self.html_budget:
                fits, low = mid, mid + 1
            else:
                high = mid - 1
        cut = self._cut(digest, fits)
        context = self.context(cut)
        return cut, context, self.html(context)

    @staticmethod
    def _cut(digest: Digest, keep: int) -> Digest:
        dropped = len(digest.matches) - keep
        return replace(digest, matches=digest.matches[:keep], more=digest.more + dropped)

    def compose(self, digest: Digest, now: datetime, *, message_id: str | None = None) -> Composed:
        """The complete message: headers, a text part and an HTML part (multipart/alternative).

        ``message_id`` is given when resending an outbox row, so a resend carries the original's id.
        """
        digest, context, html = self.fit(digest)
        msg = EmailMessage(policy=MESSAGE_POLICY)
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
        msg.add_alternative(html, subtype="html")
        return Composed(digest, msg)

    def render(self, digest: Digest, now: datetime, *, message_id: str | None = None) -> EmailMessage:
        """The message alone (see ``compose``)."""
        return self.compose(digest, now, message_id=message_id).message
