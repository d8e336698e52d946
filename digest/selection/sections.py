"""A digest in sections: papers grouped by why they came, each section within the cap its reader set.

A paper's section follows from its reasons, the first that applies: by an author the reader follows,
matching one of their keywords, like their papers or description, else trending (chosen by upvotes). An
email shows the sections in that order (``models.SECTIONS``), each best first, and names them when there
are two or more. A cap (``Profile.sections``) keeps a big day readable: once a section is full, the next
best papers of the other sections take the room (``caps.fill``, down the ranking up to
``caps.LOOK_MAX`` papers; a hybrid profile then chooses among those with variety). Papers a cap left out
stay candidates and lead the day's page of all matches.

"Trending in your area" also adds, for a reader with interests who asked for it (a ``trending`` cap), the
most upvoted papers among those their categories and exclusions allow that nothing else chose.

The one way a digest's papers are chosen: a run's planning and the web preview both call ``arranged``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from digest.models import SECTION_OF, SECTIONS, Match, Profile, Reason
from digest.selection.index import PaperIndex
from digest.selection.semantic import Taste

TITLES = {
    "authors": "Authors you follow",
    "keywords": "Your keywords",
    "similar": "Like your papers",
    "trending": "Trending in your area",
}
_TRENDING = Reason("", "trending")


def section_of(match: Match) -> str:
    """The section a paper goes in, from its reasons (see the module's docstring).

    >>> section_of(Match(None, 1, (Reason("RAG", "title"), Reason("Y. LeCun", "author"))))
    'authors'
    >>> section_of(Match(None, 1, (Reason("", "about"),))), section_of(Match(None, 1))
    ('similar', 'trending')
    """
    best = len(SECTIONS) - 1
    for r in match.reasons:
        rank = SECTION_OF.get(r.where, best)
        if rank < best:
            if not rank:
                return "authors"
            best = rank
    return SECTIONS[best]


def in_sections(matches: Sequence[Match]) -> list[Match]:
    """``matches`` grouped by section in the order an email shows them, each best first as given."""
    order = {name: i for i, name in enumerate(SECTIONS)}
    return sorted(matches, key=lambda m: order[section_of(m)])


def _one_kind(matches: Sequence[Match]) -> bool:
    """Whether ``matches`` are surely of one section, read cheaply (most digests are: every email asks):
    all matched a keyword and none has a reason of another section, or none has any reason but a
    category (the trending digest)."""
    wheres = {r.where for m in matches for r in m.reasons}
    if wheres <= {"category"}:
        return True
    if not wheres <= {"title", "abstract", "category"}:
        return False
    if "category" in wheres:
        return all(any(r.where != "category" for r in m.reasons) for m in matches)
    return all(m.reasons for m in matches)


def headed(matches: Sequence[Match]) -> list[str]:
    """Per match (as ``in_sections`` orders them), the heading that comes before it: its section's title
    where a section starts, "" elsewhere, and "" throughout when there is one section only.

    >>> headed([Match(None, 2, (Reason("a", "title"),)), Match(None, 1, (Reason("", "about"),))])
    ['Your keywords', 'Like your papers']
    >>> headed([Match(None, 2), Match(None, 1)])
    ['', '']
    """
    if _one_kind(matches):
        return [""] * len(matches)
    names = [section_of(m) for m in matches]
    if len(set(names)) < 2:
        return [""] * len(names)
    return [TITLES[n] if i == 0 or names[i - 1] != n else "" for i, n in enumerate(names)]


@dataclass(frozen=True, slots=True)
class Arranged:
    """A digest's papers in sections, how many more matched than it shows, and the refs of the best of
    those (``Digest.more``, ``Digest.rest``)."""

    matches: tuple[Match, ...]
    more: int
    rest: tuple[int, ...]


def arranged(
    pool: PaperIndex, profile: Profile, skip: Collection[int] = (), taste: Taste | None = None
) -> Arranged:
    """The papers of ``profile``'s digest from ``pool`` (leaving out ``skip``: refs already sent), ranked,
    within the section caps, with "trending in your area" where asked, in sections."""
    limit = profile.max_papers
    # Room kept for "trending in your area" where a reader with interests asked for it.
    room = 0 if profile.trending else min(profile.cap("trending") or 0, limit - 1)
    if not (profile.sections or room):  # no cap: the ranking's best, as it gives them
        matches, total, rest = pool.ranked(profile, skip, limit, taste)
        one = (taste is None and not profile.authors) or _one_kind(matches)  # keywords alone, or trending
        return Arranged(tuple(matches if one else in_sections(matches)), total - len(matches), rest)
    caps = tuple(profile.cap(s) for s in SECTIONS) if profile.sections else None
    matches, total, rest = pool.ranked(profile, skip, limit - room, taste, caps=caps)
    popular: list[Match] = []
    if room and matches:  # only beside papers chosen for the reader: never a digest of trending papers alone
        area = replace(profile, keywords=(), about="", seeds=(), authors=(), sections=(), upvotes=0.0)
        taken = {*skip, *(m.paper.ref for m in matches if m.paper.ref is not None)}
        found, _ = pool.select(area, taken, room)
        popular = [replace(m, reasons=(*m.reasons, _TRENDING)) for m in found if m.paper.upvotes]
        if len(popular) < room:  # the room trending left: the reader's own papers take it
            matches, total, rest = pool.ranked(profile, skip, limit - len(popular), taste, caps=caps)
            mine = {m.paper.ref for m in matches}
            popular = [m for m in popular if m.paper.ref not in mine]
    kept = [*matches, *popular]
    return Arranged(tuple(in_sections(kept)), total - len(matches), rest)
