"""What an email shows of one paper: its title and abstract cut to size, the keywords and followed
authors highlighted, the key finding set in bold inside the abstract, its links and meta line. Pure, and
cached per paper (most readers of a run get the same few hundred papers): the renderer's paper blocks and
the web pages are made from these entries.
"""

from __future__ import annotations

import functools
import itertools
import re
from typing import Any

from digest.keywords import match_spans
from digest.models import Paper
from digest.redact import one_line
from digest.selection.finding import key_finding

ABSTRACT_LIMIT = 600
TITLE_LIMIT = 300


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


def found_in(parts: list[tuple[str, bool]], sentence: str) -> list[tuple[bool, list[tuple[str, bool]]]]:
    """``parts`` (see ``marked``) as runs, each flagged if it is ``sentence``, the key finding, where the
    text holds it and holds more than it: what the HTML sets in bold inside the abstract.

    >>> found_in([("We test. It ", False), ("works", True), (" well.", False)], "It works well.")
    [(False, [('We test. ', False)]), (True, [('It ', False), ('works', True), (' well.', False)])]
    >>> found_in([("Only this.", False)], "Only this.")
    [(False, [('Only this.', False)])]
    """
    text = "".join(t for t, _ in parts)
    start = text.find(sentence) if sentence else -1
    end = start + len(sentence)
    if start < 0 or not (text[:start].strip() or text[end:].strip()):
        return [(False, parts)]
    runs: list[tuple[bool, list[tuple[str, bool]]]] = []
    at = 0
    for t, hit in parts:
        cuts = sorted({0, len(t), *(c - at for c in (start, end) if at < c < at + len(t))})
        for a, b in itertools.pairwise(cuts):
            found = start <= at + a < end
            if not runs or runs[-1][0] != found:
                runs.append((found, []))
            runs[-1][1].append((t[a:b], hit))
        at += len(t)
    return runs


def _safe_url(url: str | None) -> str | None:
    """Only http(s) links are ever made."""
    return url if url and re.match(r"^https?://[^\s<>\"']+$", url) else None


@functools.lru_cache(maxsize=1 << 13)
def _shown(p: Paper) -> dict[str, Any]:
    """What the templates show of one paper whatever matched it: its title and abstract cut, its links and
    meta line. Cached per paper, apart from the highlights: a preview's keywords change with each keystroke,
    the paper's text does not."""
    abstract, was_cut = cut_abstract(one_line(p.abstract))
    return {
        "paper": p,
        "title": cut_title(p.title),
        "abstract": abstract,
        "cut": was_cut,
        "url": _safe_url(p.page_url),
        "pdf_url": _safe_url(p.pdf_url),
        "hf_url": _safe_url(p.hf_url),
        "finding": p.finding or key_finding(p.abstract),  # a paper stored before findings were kept
    }


def meta_parts(p: Paper, by: tuple[str, ...] = ()) -> list[tuple[str, bool]]:
    """The meta line (authors, date, upvotes) as segments, the followed authors ``by`` flagged: they are
    named even when they are not among the first three.

    >>> meta_parts(Paper("T", "A", authors=("A", "B", "C", "D", "E")), by=("E",))
    [('A', False), (', ', False), ('B', False), (', ', False), ('C', False), (', ', False), ('E', True), (' and 1 more', False)]
    """
    if not p.authors:
        byline: list[tuple[str, bool]] = [(cut_title(p.byline, 200), False)] if p.byline else []
    else:
        names = [*p.authors[:3], *(a for a in by if a not in p.authors[:3])]
        byline = []
        for i, name in enumerate(names):
            byline += [(", ", False)] if i else []
            byline.append((cut_title(name, 100), name in by))
        if len(p.authors) > len(names):
            byline.append((f" and {len(p.authors) - len(names)} more", False))
    rest = [
        x
        for x in (
            f"{p.published:%b} {p.published.day}, {p.published.year}" if p.published else None,
            f"▲ {p.upvotes}" if p.upvotes else None,
        )
        if x
    ]
    tail = " · ".join(rest)
    return byline + ([(" · " + tail if byline else tail, False)] if tail else [])


@functools.lru_cache(maxsize=1 << 12)
def paper_entry(
    p: Paper, matched: tuple[str, ...], by: tuple[str, ...] = (), tldr: str = ""
) -> dict[str, Any]:
    """What the templates show of one paper, highlighted for ``matched`` keywords and ``by`` its followed
    authors (as it writes them), with its ``tldr`` in the reader's language where there is one.

    Cached: in a run most subscribers get the same few hundred papers with the same few keywords, so the
    cut abstract and its highlight spans are worked out once, not once per email. Read-only for callers.
    """
    shown = _shown(p)
    meta = meta_parts(p, by)
    return {
        **shown,
        "title_parts": marked(shown["title"], list(matched)),
        "abstract_parts": found_in(marked(shown["abstract"], list(matched)), shown["finding"]),
        "meta": "".join(text for text, _ in meta),
        "meta_parts": meta,
        "matched": matched,
        "tldr": tldr,
    }


def full_entry(light: dict[str, Any]) -> dict[str, Any]:
    """A light entry (number, score, paper, matched, likeness, heading) with everything the templates
    show of its paper."""
    full = paper_entry(light["paper"], light["matched"], light.get("by", ()), light.get("tldr", ""))
    return {
        **full,
        "number": light["number"],
        "score": light["score"],
        "likeness": light.get("likeness", ""),
        "heading": light.get("heading", ""),
    }


def updated_entry(p: Paper) -> dict[str, Any]:
    """What the "Updated since you saw it" part shows of a paper with a new version: its title, link,
    version and its (new) key finding."""
    shown = _shown(p)
    return {
        "title": shown["title"],
        "url": shown["url"],
        "version": p.version,
        "finding": shown["finding"],
    }


def tldr_for(paper: Paper, language: str, default: str | None) -> str:
    """The TL;DR a reader sees of ``paper``: in their ``language``, else ``default`` (the operator's);
    "" when TL;DRs are off (``default`` None) or there is none yet.

    >>> p = Paper("T", "A", tldrs=(("english", "It works."), ("german", "Es geht.")))
    >>> tldr_for(p, "", "English"), tldr_for(p, "German", "English"), tldr_for(p, "", None)
    ('It works.', 'Es geht.', '')
    """
    if default is None or not paper.tldrs:
        return ""
    return paper.tldr(language or default)
