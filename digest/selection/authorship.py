"""Which papers of a pool each followed author wrote (``authors`` says when two names are one person).

The pool's author names are parsed once, at the first profile that follows someone, and kept by surname:
a followed name is compared only with the authors who share its surname, and its papers are worked out
once per pool however many readers follow it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from digest.authors import Name, name_of, same_person
from digest.models import Paper

BY_SCORE = 2  # a paper by a followed author scores as a keyword in its title


class Authorship:
    """The followed authors' papers in one pool (see the module's docstring)."""

    def __init__(self, papers: Sequence[Paper]) -> None:
        self.papers = papers
        self._by_last: dict[str, list[tuple[int, Name, str]]] | None = None
        self._hits: dict[str, dict[int, str]] = {}

    def _surnames(self) -> dict[str, list[tuple[int, Name, str]]]:
        if self._by_last is None:
            self._by_last = {}
            for pi, paper in enumerate(self.papers):
                for written in paper.authors:
                    name = name_of(written)
                    if name is not None:
                        self._by_last.setdefault(name.last, []).append((pi, name, written))
        return self._by_last

    def hits(self, followed: str) -> dict[int, str]:
        """Paper position -> the followed author's name as that paper writes it. Cached per name.

        >>> Authorship([Paper("T", "A", authors=("Yann A. LeCun",))]).hits("Y. LeCun")
        {0: 'Yann A. LeCun'}
        """
        found = self._hits.get(followed)
        if found is None:
            name = name_of(followed)
            found = {}
            if name is not None:
                for pi, written_name, written in self._surnames().get(name.last, ()):
                    if pi not in found and same_person(name, written_name):
                        found[pi] = written
            self._hits[followed] = found
        return found

    def score(self, followed: Sequence[str]) -> npt.NDArray[np.int32]:
        """``BY_SCORE`` for each paper by one of the ``followed`` authors, else 0."""
        out = np.zeros(len(self.papers), dtype=np.int32)
        for name in followed:
            at = list(self.hits(name))
            out[at] = BY_SCORE
        return out

    def written(self, followed: Sequence[str], pi: int) -> list[str]:
        """The followed authors of paper ``pi``, as it writes them (each once)."""
        return list(dict.fromkeys(w for name in followed if (w := self.hits(name).get(pi)) is not None))
