"""Following people: a name a reader gives, matched against a paper's author list as real lists write names.

Author lists are messy in known ways, and matching forgives exactly those: case and diacritics ("Müller",
"MULLER"), initials for given names ("Y. LeCun" for "Yann LeCun", "J.-P. Dupont" for "Jean-Pierre
Dupont"), a middle name present in one list and not the other ("Yann A. LeCun"), and "Last, First". It
does not forgive what tells two people apart: surnames must be the same, and given names that are both
written out must be the same ("Yannick LeCun" is not "Yann LeCun"); a surname alone never matches anyone
(many people share one), so a profile must give a first name or initial with it.

Pure and cached: a name is folded once however many papers carry it.

>>> same_person(name_of("Y. LeCun"), name_of("Yann A. LeCun"))
True
>>> same_person(name_of("Yann LeCun"), name_of("Yannick LeCun"))
False
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import NamedTuple

AUTHOR_MAX = 100  # characters of one followed author's name
PARTICLES = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "du", "del", "della", "la", "le", "ter", "ten"}
)
_NOT_NAME = re.compile(r"[^\w\s,'-]")
_SPLIT = re.compile(r"[\s-]+")


class Name(NamedTuple):
    """A folded name: the surname (particles included: "van beethoven") and the given names in order,
    each a word or an initial."""

    last: str
    given: tuple[str, ...]


def fold(text: str) -> str:
    """Lower case, without diacritics or dots: how two spellings of a name are compared.

    >>> fold("Müller-Lüdenscheidt, J.")
    'muller-ludenscheidt, j'
    """
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(_NOT_NAME.sub(" ", plain.replace("ß", "ss").casefold()).split())


@functools.lru_cache(maxsize=1 << 16)
def name_of(text: str) -> Name | None:
    """The name in ``text`` ("First Middle Last" or "Last, First"), or None when it has no letters.

    >>> name_of("LeCun, Yann"), name_of("Ludwig van Beethoven")
    (Name(last='lecun', given=('yann',)), Name(last='van beethoven', given=('ludwig',)))
    """
    folded = fold(text)
    if "," in folded:
        last, _, given = folded.partition(",")
        words = [w for w in _SPLIT.split(given) if w]
        last = " ".join(last.split())
    else:
        parts = folded.split()
        if not parts:
            return None
        cut = len(parts) - 1
        while cut > 1 and parts[cut - 1] in PARTICLES:  # "van der Berg": the particles go with the surname
            cut -= 1
        last, words = " ".join(parts[cut:]), [w for w in _SPLIT.split(" ".join(parts[:cut])) if w]
    if not last or not any(c.isalpha() for c in last):
        return None
    return Name(last, tuple(w.strip("'") for w in words if w.strip("'")))


def _compatible(a: str, b: str) -> bool:
    """Two given names that may be one: equal, or one an initial of the other."""
    return a == b or (len(a) == 1 and b.startswith(a)) or (len(b) == 1 and a.startswith(b))


def same_person(followed: Name, author: Name) -> bool:
    """Whether ``author`` (on a paper) is the ``followed`` person: the same surname, and every given name
    written in both compatible (a middle name in only one is ignored); never on a surname alone."""
    if followed.last != author.last or not followed.given or not author.given:
        return False
    return all(_compatible(a, b) for a, b in zip(followed.given, author.given, strict=False))


def followable(text: str) -> str | None:
    """Why ``text`` cannot be followed, or None when it can.

    >>> followable("LeCun"), followable("Y. LeCun")
    ('give a first name or an initial with the surname (many people share one)', None)
    """
    if len(text) > AUTHOR_MAX:
        return f"an author's name has at most {AUTHOR_MAX} characters"
    name = name_of(text)
    if name is None:
        return "an author's name needs letters"
    if not name.given:
        return "give a first name or an initial with the surname (many people share one)"
    return None
