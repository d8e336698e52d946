"""Where each word of a pool's papers occurs: the keyword language's matches found from postings, not by
scanning every paper for every keyword.

Each paper's title and abstract are tokenised once (``digest.keywords.tokenize``); a keyword's first word
is looked up (exactly, case-insensitively, folded, or as a prefix for ``*``) and the rest of the keyword
checked at those positions only. Pure.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Sequence

from digest.keywords import FIELD_NAME, TITLE, Field, Keyword, KeywordWord, tokenize
from digest.models import Paper, Where

_MAX_WORDS = 1 << 23  # words of one field that are indexed: a garbage abstract cannot overflow a position


def _pack(paper: int, field: int, word: int) -> int:
    """A position as one integer: ``_unpack(_pack(7, 1, 42)) == (7, 1, 42)``."""
    return paper << 24 | field << 23 | word


def _unpack(where: int) -> tuple[int, int, int]:
    return where >> 24, (where >> 23) & 1, where & 0x7FFFFF


class Postings:
    """The tokenised fields of a list of papers, and each word's positions in them."""

    def __init__(self, papers: Sequence[Paper]) -> None:
        self._fields: list[tuple[Field, Field]] = []
        # Word -> positions (paper, field, word) packed into one integer each (_pack), in arrays: a
        # 5,000-paper day has over a million positions, which as tuples would take ~150 MB per process.
        self._ci: dict[str, array[int]] = {}
        self._cs: dict[str, array[int]] = {}
        self._folded: dict[str, array[int]] = {}
        for pi, paper in enumerate(papers):
            fields = (tokenize(paper.title), tokenize(paper.abstract))
            self._fields.append(fields)
            for fi, f in enumerate(fields):
                for pos, tok in enumerate(f.tokens[:_MAX_WORDS]):
                    where = _pack(pi, fi, pos)
                    for index, word in ((self._ci, tok.ci), (self._cs, tok.cs), (self._folded, tok.folded)):
                        postings = index.get(word)
                        if postings is None:
                            postings = index[word] = array("Q")
                        postings.append(where)
        self._vocab = sorted(self._folded)

    def _starts(self, first: KeywordWord) -> Iterable[tuple[int, int, int]]:
        """Positions where the keyword's first word matches."""
        if not first.prefix:
            return map(_unpack, (self._cs if first.cased else self._ci).get(first.form, ()))
        probe = first.form.casefold()
        lo = bisect.bisect_left(self._vocab, probe)
        found: list[tuple[int, int, int]] = []
        for folded in self._vocab[lo:]:
            if not folded.startswith(probe):
                break
            found.extend(map(_unpack, self._folded[folded]))
        if first.cased:
            found = [w for w in found if first.matches(self._fields[w[0]][w[1]].tokens[w[2]])]
        return found

    def hits(self, keyword: Keyword) -> dict[int, Where]:
        """Paper position -> where the keyword matched best (title beats abstract)."""
        best: dict[int, int] = {}
        for pi, fi, pos in self._starts(keyword.words[0]):
            if best.get(pi) == TITLE:
                continue
            if keyword.match_at(self._fields[pi][fi], pos):
                best[pi] = min(best.get(pi, fi), fi)
        return {pi: FIELD_NAME[fi] for pi, fi in best.items()}
