"""A Digest to an email: Jinja templates, CSS inlined by premailer, a real text part, correct headers.

Pure: it reads templates, never the network or the clock (``now`` comes in). Feed text is untrusted: the
HTML template is autoescaped, titles and abstracts are plain text, and only http(s) links are made.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import (
    ChoiceLoader,
    DictLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)

from digest.email.dkim import DkimKey
from digest.email.entries import cut_title, full_entry, tldr_for, updated_entry
from digest.email.fragments import VARYING, Body, SplitTemplate
from digest.email.mime import Outgoing, address, ascii_address, assemble, encode_words
from digest.errors import RenderError
from digest.links import MANAGE, MANAGE_ARCHIVE, VIEW, VIEW_ALL, Links, beside
from digest.models import Digest
from digest.redact import one_line
from digest.selection.sections import headed

TEXT_WIDTH = 72
SUBJECT_MAX = 120  # characters; mail clients show about 60-80, and no keyword may make a header huge
NAME_MAX = 100  # characters of a subscriber's display name in the To header
HTML_BUDGET = 100_000  # bytes of HTML; Gmail clips a message at about 102 KB and hides the rest
log = logging.getLogger("digest.email.render")


def default_templates_dir() -> Path:
    """The templates shipped with digest: inside the installed package, or the repository's templates/."""
    package = Path(__file__).resolve().parent.parent  # digest/
    packaged = package / "_templates"
    return packaged if packaged.is_dir() else package.parent / "templates"


def short_date(day: date) -> str:
    """``date(2025, 11, 22)`` -> ``"Nov 22"``."""
    return f"{day:%b} {day.day}"


def subject_for(digest: Digest, topics: list[str] | None = None) -> str:
    """Plain words: how many papers, the top topics, the date; the topics cut so that the subject stays
    within ``SUBJECT_MAX`` characters whatever the keywords are.

    e.g. "5 new papers on RAG, speculative decoding · Nov 22" or "Trending: 20 new papers · Nov 22".
    """
    n = len(digest.matches)
    count = f"{n} new paper{'s' if n != 1 else ''}"
    if digest.subscriber.profile.trending:
        return f"Trending: {count} · {short_date(digest.day)}"
    shown = ", ".join(one_line(t) for t in (digest.top_topics(3) if topics is None else topics))
    tail = f" · {short_date(digest.day)}"
    if not shown:  # chosen by meaning only (a description, seed papers)
        return f"{count} for you{tail}"
    room = SUBJECT_MAX - len(count) - len(" on ") - len(tail)
    if len(shown) > room:
        shown = shown[: room - 1].rstrip(" ,") + "…"
    return f"{count} on {shown}{tail}"


def message_id_for(digest: Digest, domain: str, key: bytes | None = None) -> str:
    """Deterministic: the same subscriber, date and papers give the same Message-ID (a resend is
    recognisable). With ``key`` (the secret key) it is an HMAC, which nobody without the key can work out
    from what they know of a reader (their address, the day, the day's papers): a returned mail that quotes
    it proves it is about our message (see ``bounces``)."""
    h = hmac.new(key, digestmod=hashlib.sha256) if key else hashlib.sha256()
    h.update(digest.subscriber.key.encode())
    h.update(digest.day.isoformat().encode())
    for m in digest.matches:
        h.update(b"\0" + m.paper.key.encode())
    return f"<digest.{digest.day:%Y%m%d}.{h.hexdigest()[:24]}@{domain}>"


@functools.lru_cache(maxsize=4096)
def _wrap(text: str, indent: int = 0) -> str:
    """Wrapped at 72 for the text part: words packed greedily onto lines of ``indent`` spaces and at most
    72 characters, a word longer than a line alone on its own (never cut: a URL stays whole). What
    ``textwrap.fill`` gives for the same text with ``break_long_words`` and ``break_on_hyphens`` off (the
    tests compare both); packed here because the text is already one line of single spaces
    (``one_line``), where textwrap's general chunking costs three times as much (``bench/render_email.py``).
    Cached: the same abstracts are wrapped for many subscribers.

    >>> _wrap("close to your description (shares: lora)", 4)
    '    close to your description (shares: lora)'
    >>> print(_wrap("see https://example.org/" + "x" * 70 + " for more", 2))
      see
      https://example.org/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
      for more
    """
    pad, line = " " * indent, one_line(text)
    width = TEXT_WIDTH - indent
    if len(line) <= width:
        return pad + line if line else ""
    lines: list[str] = []
    start = used = 0  # the current line: line[start:start + used]
    for word in line.split(" "):
        if used and used + 1 + len(word) > width:
            lines.append(pad + line[start : start + used])
            start, used = start + used + 1, 0
        used += len(word) + (1 if used else 0)
    lines.append(pad + line[start : start + used])
    return "\n".join(lines)


def inline_css(html: str) -> str:
    """premailer with the network off and cssutils quiet; ``@media`` rules stay in their ``<style>``."""
    import premailer  # once per run (see preinline_template), so a process that renders nothing skips it

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
    runs (premailer per email was most of a render's cost; docs/benchmarks.md). A template whose tags premailer would move
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
    outgoing: Outgoing

    @property
    def message_id(self) -> str:
        return self.outgoing.message_id


class Renderer:
    """Renders digests with one Jinja environment and inliner settings, built once per run."""

    def __init__(
        self,
        *,
        sender: str,
        templates_dir: Path | None = None,
        links: Links | None = None,
        html_budget: int = HTML_BUDGET,
        dkim: DkimKey | None = None,
        return_path: Callable[[str], str] | None = None,
        message_key: str | None = None,
        language: str | None = None,
    ) -> None:
        self.sender = sender
        self.language = language  # TL;DRs' language for readers who chose none; None: no TL;DRs shown
        self.message_key = message_key.encode() if message_key else None  # keys the Message-IDs
        self.dkim = dkim
        self.return_path = return_path  # the envelope sender per recipient (VERP), else sender's address
        self.sender_name, self.sender_address = parseaddr(sender)
        self.domain = self.sender_address.rpartition("@")[2] or "localhost"
        self._from = address(one_line(self.sender_name), self.sender_address)
        self._list_id = f"{encode_words(one_line(self.sender_name or 'Paper Digest'))} <digest.{self.domain}>"
        self.links = links  # the reader's links (``links``), when base_url is set
        self._generated: dict[str, str] = {}  # templates made here: the HTML with its CSS inlined
        self.env = Environment(
            loader=ChoiceLoader(
                [DictLoader(self._generated), FileSystemLoader(str(templates_dir or default_templates_dir()))]
            ),
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
        # The parts' templates, rendered as frame + cached paper blocks where they allow it (see fragments);
        # html_template is None when the CSS cannot be inlined once (then premailer runs per email).
        self.html_template: SplitTemplate | None = None
        if inlined is not None:
            self._generated["inlined/digest.html"] = inlined
            # Papers are rendered once per run and spliced in (see fragments); an entry's number and score
            # are outside the paper block, so one render serves every email that shows the paper.
            self.html_template = SplitTemplate(self.env, "inlined/digest.html", full_entry, VARYING)
        self.text_template = SplitTemplate(self.env, "digest.txt", full_entry, VARYING)

    def unsubscribe_links(self, email: str) -> dict[str, str | None]:
        """``mailto`` always; ``https`` (the one-click page ``digest serve`` answers, ``links``) when there
        are links; ``url`` the one to show a reader."""
        mailto = f"mailto:{self.sender_address}?subject={quote('unsubscribe ' + email)}"
        https = self.links.unsubscribe(email) if self.links else None
        return {"mailto": mailto, "https": https, "url": https or mailto}

    def context(self, digest: Digest, *, full: bool = True, in_browser: bool = False) -> dict[str, Any]:
        """What the templates see. With ``full=False`` entries carry only their number, score, paper and
        matched keywords: the frame needs no more, and a paper block already cached needs nothing.
        ``in_browser``: for the page that shows a sent digest (no link to itself)."""
        language = digest.subscriber.profile.language
        headings = [""] * len(digest.matches) if digest.recalled else headed(digest.matches)
        entries = [
            {
                "number": number,
                "score": m.score,
                "paper": m.paper,
                "matched": m.matched,
                "by": m.by,
                "likeness": m.likeness,
                "heading": heading,
                "tldr": tldr_for(m.paper, language, self.language),
            }
            for number, (m, heading) in enumerate(zip(digest.matches, headings, strict=True), 1)
        ]
        if full:
            entries = [full_entry(e) for e in entries]
        profile, email, links = digest.subscriber.profile, digest.subscriber.email, self.links
        topics = digest.top_topics(3)
        n = len(digest.matches)
        papers = f"{n} paper{'s' if n != 1 else ''}"
        if topics:
            preheader = f"{papers} on {', '.join(topics)} · {short_date(digest.day)}"
        elif profile.trending:
            preheader = f"{n} trending paper{'s' if n != 1 else ''} · {short_date(digest.day)}"
        else:
            preheader = f"{papers} like yours · {short_date(digest.day)}"
        manage_url = links.manage(email) if links else None
        view_url = links.view(email, digest.day) if links else None
        return {
            "digest": digest,
            "subscriber": digest.subscriber,
            "profile": profile,
            "entries": entries,
            "updates": [updated_entry(p) for p in digest.updates],
            "count": n,
            "more": digest.more,
            "day": digest.day,
            "preheader": preheader,
            "subject": subject_for(digest, topics),
            "unsubscribe": self.unsubscribe_links(email),
            "manage_url": manage_url,
            "archive_url": beside(manage_url, MANAGE, MANAGE_ARCHIVE) if manage_url else None,
            "view_url": None if in_browser else view_url,
            "all_url": beside(view_url, VIEW, VIEW_ALL) if view_url else None,
            "feedback_url": links.feedback(email, digest.day) if links and not profile.trending else None,
            "sender_name": self.sender_name or "Paper Digest",
        }

    @property
    def inlines_once(self) -> bool:
        """Whether the template's CSS was inlined once for the run (else premailer runs per email)."""
        return self.html_template is not None

    def html_body(self, context: dict[str, Any], *, text: bool = False) -> Body:
        if self.html_template is not None:
            return self.html_template.render(context, text=text)
        entries = [full_entry(e) for e in context["entries"]]
        return Body.of(
            inline_css(self.env.get_template("digest.html").render({**context, "entries": entries}))
        )

    def text_body(self, context: dict[str, Any], *, text: bool = False) -> Body:
        return self.text_template.render(context, text=text)

    def html(self, context: dict[str, Any]) -> str:
        """The HTML part for a context (see ``context``)."""
        return str(self.html_body(context, text=True).text)

    def sample(self, digest: Digest) -> str:
        """``digest`` as a page that shows what a digest looks like (the sign-up page links it): the email's
        HTML with no link that acts (nobody's signed links are published)."""
        context = self.context(digest, in_browser=True)
        for name in ("manage_url", "archive_url", "all_url", "feedback_url"):
            context[name] = None
        context["unsubscribe"] = {"mailto": None, "https": None, "url": "#"}
        return self.html(context)

    def text(self, context: dict[str, Any]) -> str:
        """The plain-text part for a context."""
        return str(self.text_body(context, text=True).text)

    def fit(self, digest: Digest) -> tuple[Digest, dict[str, Any], Body]:
        """The digest cut to the papers whose HTML fits ``html_budget``, its context and its HTML.

        Papers that do not fit move to ``more`` ("N more papers matched: see them in your next digest")
        and stay candidates; the header and footer are always there.
        """
        context = self.context(digest, full=False)
        html = self.html_body(context)
        if html.size <= self.html_budget:
            return digest, context, html
        fits = 0  # the largest paper count that fits, by bisection: a handful of renders
        low, high = 0, len(digest.matches) - 1
        while low <= high:
            mid = (low + high) // 2
            trial = self._cut(digest, mid)
            if self.html_body(self.context(trial, full=False)).size <= self.html_budget:
                fits, low = mid, mid + 1
            else:
                high = mid - 1
        # The first paper always goes out, whatever the budget: its shown text is bounded (title cut at
        # 300 characters, abstract near 600, links of at most 2,000), so it cannot make the email huge.
        cut = self._cut(digest, max(fits, 1))
        context = self.context(cut, full=False)
        return cut, context, self.html_body(context)

    @staticmethod
    def _cut(digest: Digest, keep: int) -> Digest:
        dropped = len(digest.matches) - keep
        cut = tuple(p.ref for p in digest.papers[keep:] if p.ref is not None)
        return replace(
            digest, matches=digest.matches[:keep], more=digest.more + dropped, rest=cut + digest.rest
        )

    def compose(self, digest: Digest, now: datetime, *, message_id: str | None = None) -> Composed:
        """The complete message: headers, a text part and an HTML part (multipart/alternative).

        ``message_id`` is given when resending an outbox row, so a resend carries the original's id.
        A digest without papers is refused (RenderError): nobody is ever sent an empty digest.
        """
        if not digest.matches:
            raise RenderError(f"the digest for {digest.subscriber.email} has no paper in it")
        digest, context, html = self.fit(digest)
        sub = digest.subscriber
        rcpt = ascii_address(sub.email)
        mid = message_id or message_id_for(digest, self.domain, self.message_key)
        links = self.unsubscribe_links(sub.email)
        headers = [
            ("From", self._from),
            ("To", address(cut_title(sub.name, NAME_MAX), rcpt)),
            ("Subject", encode_words(context["subject"])),
            ("Date", format_datetime(now)),
            ("Message-ID", mid),
            ("List-Unsubscribe", ", ".join(f"<{u}>" for u in (links["https"], links["mailto"]) if u)),
        ]
        if links["https"]:
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        headers += [("List-Id", self._list_id), ("Auto-Submitted", "auto-generated")]
        data = assemble(headers, self.text_body(context).encoded, html.encoded, utf8=not rcpt.isascii())
        if self.dkim:
            data = self.dkim.sign(data)
        envelope = self.return_path(sub.email) if self.return_path else self.sender_address
        return Composed(digest, Outgoing(envelope, (rcpt,), mid, data))

    def render(self, digest: Digest, now: datetime, *, message_id: str | None = None) -> EmailMessage:
        """The message parsed back with the email package (see ``compose``): for previews and tests."""
        return self.compose(digest, now, message_id=message_id).outgoing.message()
