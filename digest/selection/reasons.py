"""Why a paper was chosen, in the words a reader sees: the authors they follow who wrote it, the keywords
it matched and where, the category it is in, and for a paper chosen by meaning, the liked paper (or the
description) it is closest to and the words they share.

One ``Reasons`` per pool (``index.PaperIndex`` owns it): each distinct reason is made once and shared by
every digest that gives it, and the words a paper shares with a liked paper are kept (readers like the
same papers). Pure.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from digest.keywords import SCORE
from digest.models import By, Likeness, Profile, Reason, Where
from digest.selection.authorship import Authorship
from digest.selection.categories import Categories
from digest.selection.hybrid import shared_words
from digest.selection.semantic import Lexicon, Space, Taste

CACHE_MAX = 20_000  # reasons (and shared words) kept per pool; past it they are made again as needed


class Reasons:
    """The reasons of one pool's papers, from its keyword vectors (``vectors``: a keyword's score per
    paper, filled by the index), who wrote what, the categories, and the space and Lexicon (made on first
    use)."""

    def __init__(
        self,
        vectors: dict[str, npt.NDArray[np.int32]],
        authorship: Authorship,
        categories: Categories,
        space: Callable[[], Space],
        lexicon: Callable[[], Lexicon],
    ) -> None:
        self._vectors, self.authorship, self.categories = vectors, authorship, categories
        self._space, self._lexicon = space, lexicon
        self._made: dict[tuple[str, Where | Likeness | By, tuple[str, ...]], Reason] = {}
        self._words: dict[tuple[int, str], tuple[str, ...]] = {}  # (paper, liked paper) -> shared words

    def reason(self, keyword: str, where: Where | Likeness | By, words: tuple[str, ...] = ()) -> Reason:
        """The one ``Reason`` of these parts (made once, shared by every digest that gives it)."""
        key = (keyword, where, words)
        reason = self._made.get(key)
        if reason is None:
            if len(self._made) >= CACHE_MAX:
                self._made.clear()
            reason = self._made[key] = Reason(keyword, where, words)
        return reason

    def keywords(
        self, keywords: list[str], chosen: npt.NDArray[np.intp], profile: Profile
    ) -> list[tuple[Reason, ...]]:
        """Per chosen paper, its followed authors, then the keywords it matched and where (title beats
        abstract), then the category it is in when the reader narrowed to some, read for all the chosen
        papers at once."""
        hits = [self._vectors[kw][chosen].tolist() for kw in keywords]
        authors, categories = profile.authors, profile.categories
        return [
            (
                tuple(self.reason(name, "author") for name in self.authorship.written(authors, pi))
                if authors
                else ()
            )
            + tuple(
                self.reason(kw, "title" if row[j] == SCORE[0] else "abstract")
                for kw, row in zip(keywords, hits, strict=True)
                if row[j]
            )
            + (self._category(categories, pi) if categories else ())
            for j, pi in enumerate(chosen.tolist())
        ]

    def _category(self, patterns: tuple[str, ...], pi: int) -> tuple[Reason, ...]:
        named = self.categories.named(patterns, pi) if patterns else None
        return (self.reason(named, "category"),) if named else ()

    def main(self, keywords: list[str], papers: npt.NDArray[np.intp], taste: Taste) -> npt.NDArray[np.intp]:
        """Each paper's main reason as a number: the first of ``keywords`` it matches (0, 1, …), else
        ``len(keywords)`` + the taste item (description or liked paper) it is closest to."""
        main = np.full(len(papers), -1, dtype=np.intp)
        for k in range(len(keywords) - 1, -1, -1):  # the first keyword wins: written last
            main[self._vectors[keywords[k]][papers] > 0] = k
        alone = main < 0
        if alone.any():
            main[alone] = len(keywords) + self.closest(taste, papers[alone])
        return main

    def closest(self, taste: Taste, papers: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """For each paper (positions), the taste item (description or liked paper) it is closest to, in
        one product."""
        return np.asarray(np.argmax(taste.items @ self._space().papers[papers].T, axis=0), dtype=np.intp)

    def hybrid(
        self, keywords: list[str], chosen: npt.NDArray[np.intp], taste: Taste, profile: Profile
    ) -> list[tuple[Reason, ...]]:
        """The keywords each chosen paper matched; for one without a keyword, the liked paper (or the
        description) it is closest to, and the words it shares with that."""
        reasons = self.keywords(keywords, chosen, profile)
        by_meaning = [j for j, why in enumerate(reasons) if all(r.where == "category" for r in why)]
        if not by_meaning:
            return reasons
        closest = self.closest(taste, chosen[by_meaning])
        words = self._shared(chosen[by_meaning], closest, taste)
        for j, c, shared in zip(by_meaning, closest.tolist(), words, strict=True):
            label = taste.labels[c]
            reasons[j] = (self.reason(label, "similar" if label else "about", shared), *reasons[j])
        return reasons

    def _shared(
        self, papers: npt.NDArray[np.intp], closest: npt.NDArray[np.intp], taste: Taste
    ) -> list[tuple[str, ...]]:
        """The words each paper (positions) shares with the taste item it is closest to (``closest``),
        found for all the papers of one item at once; kept for a liked paper (readers who like the same
        paper are shown the same words), found each time for a description."""
        out: list[tuple[str, ...]] = [()] * len(papers)
        lexicon = self._lexicon()
        groups: dict[int, list[int]] = {}
        for j, c in enumerate(closest.tolist()):
            groups.setdefault(c, []).append(j)
        for c, at in groups.items():
            if c >= len(taste.lexical_items):
                continue
            key = taste.keys[c] if c < len(taste.keys) else ""
            if key:  # a liked paper's: the pairs found before are kept
                missing = [j for j in at if (int(papers[j]), key) not in self._words]
                if missing:
                    if len(self._words) + len(missing) > CACHE_MAX:
                        self._words.clear()
                        missing = at
                    found = shared_words(
                        lexicon.cells, papers[missing], taste.lexical_items[c], lexicon.names
                    )
                    self._words.update(
                        ((int(papers[j]), key), w) for j, w in zip(missing, found, strict=True)
                    )
                for j in at:
                    out[j] = self._words[int(papers[j]), key]
            else:
                found = shared_words(lexicon.cells, papers[at], taste.lexical_items[c], lexicon.names)
                for j, w in zip(at, found, strict=True):
                    out[j] = w
        return out
