"""The straightforward daily pipeline, kept as the yardstick for ``run_day.py``.

What one-file digest scripts do, built from the same packages and templates as digest: per subscriber,
read what they were already sent, search every keyword as a regex in every paper, rank, build the template
context, render the HTML and text templates with Jinja, inline the CSS with premailer, build the MIME
message with the email package, add it to a Maildir with ``mailbox``, and record the papers in SQLite (one
commit per subscriber). Nothing is shared between subscribers, so its cost per subscriber does not depend
on how many there are: it is timed on a sample and reported per subscriber.
"""

from __future__ import annotations

import logging
import mailbox
import re
import sqlite3
import textwrap
import time
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import premailer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from digest.models import Paper, Subscriber

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _wrap(text: str, indent: int = 0) -> str:
    pad = " " * indent
    return textwrap.fill(" ".join(text.split()), 72, initial_indent=pad, subsequent_indent=pad)


def _parts(text: str, keywords: list[str]) -> list[tuple[str, bool]]:
    """``text`` split into highlighted and plain segments, a regex per keyword."""
    spans = sorted(
        (m.start(), m.end())
        for kw in keywords
        for m in re.finditer(rf"\b{re.escape(kw.rstrip('*'))}\w*", text, re.IGNORECASE)
    )
    out, at = [], 0
    for start, end in spans:
        if start < at:
            continue
        out += [(text[at:start], False), (text[start:end], True)]
        at = end
    return [*out, (text[at:], False)]


class Baseline:
    def __init__(self, maildir: Path, database: Path) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(enabled_extensions=("html",)),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["wrap"] = _wrap
        self.env.filters["short_date"] = lambda d: f"{d:%b} {d.day}"
        self.box = mailbox.Maildir(str(maildir), create=True)
        self.db = sqlite3.connect(str(database))
        self.db.execute("CREATE TABLE IF NOT EXISTS sent (email TEXT, pid INTEGER, PRIMARY KEY (email, pid))")

    def select(
        self, papers: list[Paper], sub: Subscriber, sent: set[int]
    ) -> list[tuple[int, Paper, list[str]]]:
        found = []
        for p in papers:
            if p.ref in sent:
                continue
            text = p.title + " " + p.abstract
            if any(re.search(rf"\b{re.escape(x)}\b", text, re.IGNORECASE) for x in sub.profile.exclude):
                continue
            score, matched = 0, []
            for kw in sub.profile.keywords:
                pattern = rf"\b{re.escape(kw.rstrip('*'))}"
                if re.search(pattern, p.title, re.IGNORECASE):
                    score, matched = score + 3, [*matched, kw]
                elif re.search(pattern, p.abstract, re.IGNORECASE):
                    score, matched = score + 1, [*matched, kw]
            if score:
                found.append((score, p, matched))
        found.sort(key=lambda t: (-t[0], -(t[1].upvotes or 0), t[1].title))
        return found[: sub.profile.max_papers]

    def context(
        self, sub: Subscriber, chosen: list[tuple[int, Paper, list[str]]], day: date
    ) -> dict[str, Any]:
        entries = []
        for number, (score, p, matched) in enumerate(chosen, start=1):
            abstract = p.abstract if len(p.abstract) <= 600 else p.abstract[:600].rsplit(". ", 1)[0] + "."
            entries.append(
                {
                    "number": number,
                    "score": score,
                    "paper": p,
                    "title": p.title,
                    "abstract": abstract,
                    "title_parts": _parts(p.title, matched),
                    "abstract_parts": [(False, _parts(abstract, matched))],  # no finding set in bold
                    "cut": len(abstract) < len(p.abstract),
                    "url": p.page_url,
                    "pdf_url": p.pdf_url,
                    "hf_url": p.hf_url,
                    "meta": f"{p.published:%b} {p.published.day}" if p.published else "",
                    "finding": "",  # the straightforward pipeline shows the abstract only
                    "meta_parts": [(f"{p.published:%b} {p.published.day}", False)] if p.published else [],
                    "matched": matched,
                    "likeness": "",  # the straightforward pipeline matches keywords only
                    "heading": "",  # nor sections
                    "tldr": "",
                }
            )
        subject = f"{len(entries)} new papers on {', '.join(sub.profile.keywords[:3])} · {day:%b} {day.day}"
        return {
            "digest": None,
            "subscriber": sub,
            "profile": sub.profile,
            "entries": entries,
            "updates": [],
            "count": len(entries),
            "more": 0,
            "day": day,
            "preheader": subject,
            "subject": subject,
            "unsubscribe": {"url": f"mailto:digest@example.org?subject=unsubscribe%20{sub.email}"},
            # No web app in the straightforward pipeline: no manage, view or feedback links.
            "manage_url": None,
            "archive_url": None,
            "view_url": None,
            "all_url": None,
            "feedback_url": None,
            "sender_name": "Paper Digest",
        }

    def one(self, papers: list[Paper], sub: Subscriber, now: datetime) -> None:
        sent = {pid for (pid,) in self.db.execute("SELECT pid FROM sent WHERE email = ?", (sub.email,))}
        chosen = self.select(papers, sub, sent)
        if not chosen:
            return
        ctx = self.context(sub, chosen, now.date())
        html = self.env.get_template("digest.html").render(ctx)
        html = premailer.Premailer(
            html,
            allow_network=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            strip_important=False,
        ).transform(pretty_print=False)
        msg = EmailMessage()
        msg["From"] = "Paper Digest <digest@example.org>"
        msg["To"] = sub.email
        msg["Subject"] = ctx["subject"]
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg.set_content(self.env.get_template("digest.txt").render(ctx))
        msg.add_alternative(html, subtype="html")
        self.box.add(msg)
        self.db.executemany(
            "INSERT OR IGNORE INTO sent VALUES (?, ?)", [(sub.email, p.ref) for _, p, _ in chosen]
        )
        self.db.commit()


def time_baseline(papers: list[Paper], sample: list[Subscriber], folder: Path, now: datetime) -> float:
    """Seconds per subscriber of the straightforward pipeline over ``sample``."""
    base = Baseline(folder / "baseline-mail", folder / "baseline.sqlite3")
    base.one(papers, sample[0], now)  # warm: templates compiled, modules loaded
    t0 = time.perf_counter()
    for sub in sample[1:]:
        base.one(papers, sub, now)
    return (time.perf_counter() - t0) / (len(sample) - 1)
