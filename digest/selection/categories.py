"""Which papers of a pool are in an arXiv category ("cs.CL", or "cs.*" for an archive): worked out once per
pattern and pool, as a boolean per paper, for every reader who names it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from digest.models import Paper, in_category

Mask = npt.NDArray[np.bool_]


class Categories:
    """The pool's categories, by pattern (see the module's docstring).

    >>> pool = Categories([Paper("A", "", categories=("cs.CL",)), Paper("B", "", categories=("math.PR",)), Paper("C", "")])
    >>> pool.narrowed(("cs.*",)).tolist(), pool.dropped(("cs.*",)).tolist()
    ([True, False, True], [True, False, False])
    """

    def __init__(self, papers: Sequence[Paper]) -> None:
        self.papers = papers
        self._in: dict[str, Mask] = {}
        self._known: Mask | None = None

    def _of(self, pattern: str) -> Mask:
        found = self._in.get(pattern)
        if found is None:
            found = np.fromiter((in_category(p.categories, pattern) is not None for p in self.papers), bool)
            self._in[pattern] = found
        return found

    def dropped(self, patterns: Sequence[str]) -> Mask:
        """The papers in one of ``patterns``."""
        out = np.zeros(len(self.papers), dtype=bool)
        for pattern in patterns:
            out |= self._of(pattern)
        return out

    def narrowed(self, patterns: Sequence[str]) -> Mask:
        """The papers a reader who follows ``patterns`` may get: those in one of them, and those whose
        categories are not known (a listing without categories narrows nothing)."""
        if self._known is None:
            self._known = np.fromiter((bool(p.categories) for p in self.papers), bool)
        return ~self._known | self.dropped(patterns)

    def named(self, patterns: Sequence[str], pi: int) -> str | None:
        """The first category of paper ``pi`` one of ``patterns`` names (its reason), or None."""
        cats = self.papers[pi].categories
        return next((c for p in patterns if (c := in_category(cats, p)) is not None), None)
