"""A digest in sections: papers grouped by why they came, each section within the cap its reader set.

A paper's section follows from its reasons, the first that applies: by an author the reader follows,
matching one of their keywords, like their papers or description, else trending (chosen by upvotes). An
email shows the sections in that order (``models.SECTIONS``), each best first, and names them when there
are two or more. A cap (``Profile.sections``) keeps a big day readable: once a section is full, the next
best papers of the other sections take the room, looking ``LOOKAHEAD`` times the digest's size down the
ranking, and further (up to ``LOOK_MAX``) while the caps leave room. Papers a cap left out stay
candidates and lead the day's page of all matches.

"Trending in your area" also adds, for a reader with interests who asked for it (a ``trending`` cap), the
most upvoted papers among those their categories and exclusions allow that nothing else chose.

The one way a digest's papers are chosen: a run's planning and the web preview both call ``arranged``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from digest.models import SECTIONS, Match, Profile, Reason
from digest.selection.index import REST_KEPT, PaperIndex
from digest.selection.semantic import Taste

LOOKAHEAD = (
    3  # with caps, how far down the ranking (times the digest's size) other sections' papers come from
)
LOOK_MAX = 1_000  # and at most this far, however many papers matched
TITLES = {
    "authors": "Authors you follow",
    "keywords": "Your keywords",
    "similar": "Like your papers",
    "trending": "Trending in your area",
}
_TRENDING = Reason("", "trending")
_RANK = {"author": 0, "title": 1, "abstract": 1, "similar": 2, "about": 2}  # a reason's section in SECTIONS


def section_of(match: Match) -> str:
    """The section a paper goes in, from its reasons (see the module's docstring).

    >>> section_of(Match(None, 1, (Reason("RAG", "title"), Reason("Y. LeCun", "author"))))
    'authors'
    >>> section_of(Match(None, 1, (Reason("", "about"),))), section_of(Match(None, 1))
    ('similar', 'trending')
    """
    best = 3
    for r in match.reasons:
        rank = _RANK.get(r.where, 3)
        if rank < best:
            if not rank:
                return "authors"
            best = rank
    return SECTIONS[best]


def capped(
    matches: Sequence[Match], profile: Profile, limit: int, taken: Sequence[Match] = ()
) -> tuple[list[Match], list[Match]]:
    """The best ``limit`` of ``matches`` (best first) with at most each section's cap, counting those
    ``taken`` already, and those left out.

    >>> ms = [Match(None, 3, (Reason("a", "title"),)), Match(None, 2, (Reason("b", "title"),)), Match(None, 1)]
    >>> kept, cut = capped(ms, Profile(sections=(("keywords", 1),)), 2)
    >>> [m.score for m in kept], [m.score for m in cut]
    ([3, 1], [2])
    """
    kept: list[Match] = []
    cut: list[Match] = []
    counts = dict.fromkeys(SECTIONS, 0)
    caps = dict(profile.sections)
    for m in taken:
        counts[section_of(m)] += 1
    for m in matches:
        section = section_of(m)
        cap = caps.get(section)
        if len(kept) < limit and (cap is None or counts[section] < cap):
            kept.append(m)
            counts[section] += 1
        else:
            cut.append(m)
    return kept, cut


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


def _full(kept: Sequence[Match], profile: Profile, can: dict[str, bool]) -> bool:
    """Whether every section ``profile``'s papers can come in is at its cap in ``kept``."""
    counts = dict.fromkeys(SECTIONS, 0)
    for m in kept:
        counts[section_of(m)] += 1
    return all(counts[s] >= (profile.cap(s) or 0) for s, possible in can.items() if possible)


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
    look = limit * LOOKAHEAD if profile.sections else limit
    # The sections this profile's papers can come in: once each is at its cap, looking further is in vain.
    can = {"authors": bool(profile.authors), "keywords": bool(profile.keywords), "similar": taste is not None}
    open_ended = [s for s, possible in can.items() if possible and profile.cap(s) is None]
    while True:  # with caps, further down the ranking while the caps leave room and matches are left
        matches, total, rest = pool.ranked(profile, skip, look, taste)
        kept, cut = capped(matches, profile, limit - room)
        if (
            len(kept) >= limit - room
            or look >= min(total, LOOK_MAX)
            or (not open_ended and _full(kept, profile, can))
        ):
            break
        look = min(look * 4, LOOK_MAX)
    if room and kept:  # only beside papers chosen for the reader: never a digest of trending papers alone
        area = replace(profile, keywords=(), about="", seeds=(), authors=(), sections=(), upvotes=0.0)
        taken = {*skip, *(m.paper.ref for m in matches if m.paper.ref is not None)}
        popular, _ = pool.select(area, taken, room)
        popular = [replace(m, reasons=(*m.reasons, _TRENDING)) for m in popular if m.paper.upvotes]
        more_kept, cut = capped(cut, profile, room - len(popular), taken=kept)  # room trending left unused
        kept += more_kept + popular
    if cut:
        cut_refs = [m.paper.ref for m in cut if m.paper.ref is not None]
        rest = tuple(dict.fromkeys([*cut_refs, *rest]))[:REST_KEPT]
    more = total - sum(section_of(m) != "trending" or profile.trending for m in kept)
    return Arranged(tuple(in_sections(kept)), more, rest)
