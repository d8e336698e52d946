"""A sent digest told again: a resend, the page of a sent digest, its page of all matches and the Atom
feed show its papers with the reasons its email gave.

An outbox row keeps the reasons a reader's keywords, authors and categories cannot tell again
(``kept_reasons``: chosen by meaning, the words shared, trending); the rest are worked out again from the
reader's profile (``keywords.explain``). A row begun before reasons were kept is ``recalled``: its papers
chosen by meaning are named as such, without sections.

Pure but for ``recalled``, which reads the row's papers from the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from digest.keywords import explain
from digest.models import Digest, Match, Paper, Profile, Reason, Subscriber
from digest.store import KeptReason, OutboxRow, Store

KEPT = ("similar", "about", "trending")  # the reasons a reader's keywords cannot tell again


def kept_reasons(digest: Digest) -> tuple[KeptReason, ...]:
    """What an outbox row keeps of a digest's reasons: those its reader's keywords, authors and categories
    cannot tell again (``explain``) when it is resent or shown again (see ``recalled``).

    >>> from datetime import date
    >>> why = (Reason("X", "similar", ("moe",)), Reason("moe", "title"))
    >>> kept_reasons(Digest(Subscriber("a@b.org"), (Match(Paper("T", "A", ref=7), 1, why),), date(2026, 1, 1)))
    ((7, 'X', 'similar', ('moe',)),)
    """
    return tuple(
        (m.paper.ref, r.keyword, r.where, r.words)
        for m in digest.matches
        if m.paper.ref is not None
        for r in m.reasons
        if r.where in KEPT
    )


def kept_by_ref(reasons: Iterable[KeptReason] | None) -> dict[int, list[Reason]]:
    """The reasons an outbox row kept (``kept_reasons``), by paper ref."""
    kept: dict[int, list[Reason]] = {}
    for ref, keyword, where, words in reasons or ():
        kept.setdefault(ref, []).append(Reason(keyword, where, words))  # type: ignore[arg-type]
    return kept


def explained(paper: Paper, profile: Profile, kept: dict[int, list[Reason]]) -> Match:
    """A paper of a sent digest with its reasons again: those kept (``kept_by_ref``) by meaning first, the
    ones its reader's keywords, authors and categories tell (``explain``), then trending."""
    told, mine = explain(paper, profile), kept.get(paper.ref or 0, [])
    first, last = [r for r in mine if r.where != "trending"], [r for r in mine if r.where == "trending"]
    return replace(told, reasons=(*first, *told.reasons, *last)) if mine else told


def recalled(sub: Subscriber, row: OutboxRow, store: Store) -> Digest:
    """The digest an outbox row holds (a resend, the page of a sent digest): its papers in the order sent,
    with the reasons the row kept (chosen by meaning, trending) and those the reader's keywords, authors
    and categories tell, its "N more", and the new versions it tells of. A row that kept no reasons (begun
    before they were kept) is marked ``recalled``: its papers chosen by meaning are named as such, without
    sections."""
    kept = kept_by_ref(row.reasons)
    matches = [explained(paper, sub.profile, kept) for paper in store.papers.by_refs(row.refs)]
    versions = dict(row.updates)
    told_of = tuple(
        replace(p, version=versions.get(p.ref or 0)) for p in store.papers.by_refs(list(versions))
    )
    return Digest(
        sub,
        tuple(matches),
        row.day,
        more=row.more,
        rest=row.rest,
        updates=told_of,
        recalled=row.reasons is None,
    )
