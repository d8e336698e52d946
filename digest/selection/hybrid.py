"""How a hybrid profile's parts make one score (``Blend``), and the two small rules of a hybrid digest
beyond its scores: which words a paper shares with what the reader gave (the reason they read), and how a
digest keeps its variety (one liked paper cannot fill it).

Pure values and functions over arrays; ``index.PaperIndex`` applies them to the papers it chose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from digest.selection.semantic import Cells, Row

SHARED_WORDS = 3  # words named in a likeness reason
VARIETY = 0.3  # maximal marginal relevance: how much a paper's likeness to those ranked above it costs it
VARIETY_POOL = 3  # the greedy pass looks at this many times the digest's size, best first
REASON_CAP = 0.5  # the most of a digest one reason (a keyword, a liked paper, the description) may explain
# The weight of a reader's own model: 0, off, since on simulated feedback it has not beaten Rocchio's
# update of the taste alone (bench/relevance.py, docs/benchmarks.md).
LEARNED = 0.0


@dataclass(frozen=True)
class Blend:
    """How a hybrid profile's parts add up to one score per paper.

    The defaults are what ``bench/relevance.py`` picks on all twelve labelled topics; the figures it
    prints for them are each topic's score under the choice made on the other eleven (nothing here reads
    the labels).
    """

    lexical: float = 0.4  # the share of the word-overlap cosine in likeness; the rest is the model's space
    keyword_bonus: float = 0.0  # added once when a paper matches any keyword
    keyword_weight: float = 0.2  # times the keyword score, scaled so the profile's best match is 1
    similar_enough: float = 0.05  # the likeness at which a paper without a keyword is chosen
    variety: float = VARIETY  # what a paper's likeness to those above it in a digest costs it
    reason_cap: float = REASON_CAP  # the share of a digest one reason may explain (1: no cap)
    learned: float = LEARNED  # times a reader's own model's liking in [-1, 1], if any (learner.py)


def shared_words(
    cells: Cells, papers: npt.NDArray[np.intp], item: Row, names: Sequence[str], n: int = SHARED_WORDS
) -> list[tuple[str, ...]]:
    """For each paper (positions in ``cells``: every paper's TF-IDF entries), the ``n`` words that weigh
    most in its overlap with ``item`` (the description's or a liked paper's entries, columns sorted),
    heaviest first, equal ones in column order. One lookup for all the papers: the item's few columns
    are found among the papers' entries by bisection, with no dense vector of the whole vocabulary.

    >>> from scipy import sparse
    >>> cells = Cells.of(sparse.csr_matrix([[0.5, 0.5, 0.0, 0.7], [0.0, 0.0, 1.0, 0.0]]))
    >>> item = Row(np.array([0, 1, 2]), np.array([0.9, 0.1, 0.8], np.float32))
    >>> shared_words(cells, np.array([0, 1]), item, ["lora", "rank", "merge", "moe"])
    [('lora', 'rank'), ('merge',)]
    """
    if not len(item.indices) or not len(cells.keys):
        return [()] * len(papers)
    wanted = papers.astype(np.int64)[:, None] * cells.width + item.indices[None, :]
    at = np.searchsorted(cells.keys, wanted)
    np.minimum(at, len(cells.keys) - 1, out=at)
    weight = np.where(cells.keys[at] == wanted, cells.data[at] * item.data[None, :], 0.0)
    best = np.argsort(-weight, axis=1, kind="stable")[:, :n]
    kept = weight[np.arange(len(papers))[:, None], best] > 0
    columns = item.indices[best]
    return [
        tuple(names[c] for c, ok in zip(row, oks, strict=True) if ok)
        for row, oks in zip(columns.tolist(), kept.tolist(), strict=True)
    ]


def with_variety(
    order: npt.NDArray[np.intp],
    scores: npt.NDArray[np.float32],
    vectors: npt.NDArray[np.float32],
    limit: int,
    weight: float = VARIETY,
    groups: Callable[[npt.NDArray[np.intp]], npt.NDArray[np.intp]] | None = None,
    cap: int | None = None,
    near: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.intp]:
    """The first ``limit`` of ``order`` (candidates best first by ``scores``) re-chosen by maximal marginal
    relevance: each next paper is the one whose score less ``weight`` times its highest cosine (rows of
    ``vectors``, unit length) with a paper already chosen is highest, among the best ``VARIETY_POOL``
    times ``limit``. With ``groups`` (each of those candidates' main reason) and ``cap``, at most ``cap``
    papers of one reason, unless too few others are left. The best paper always comes first; with
    ``weight`` 0 and no cap the order is unchanged. ``near``: the rows' cosines with each other, when
    kept (read, not computed).

    >>> v = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    >>> with_variety(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.8], np.float32), v, 2, 0.3).tolist()
    [0, 2]
    >>> with_variety(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.8], np.float32), v, 2, 0.3, near=v @ v.T).tolist()
    [0, 2]
    >>> same = lambda head: np.array([7, 7, 8])[head]
    >>> with_variety(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.1], np.float32), v, 2, 0.0, same, 1).tolist()
    [0, 2]
    """
    head = order[: limit * VARIETY_POOL]
    want = min(limit, len(head))
    if (weight <= 0 and cap is None) or want <= 1:
        return order[:limit]
    own = scores[head].astype(np.float32)
    # A candidate's value once ``k`` is chosen: its score less its likeness to ``k`` (row k); its value
    # now is the least of those over the chosen, kept in ``value`` as they are chosen.
    cosines = near[head][:, head] if near is not None else vectors[head] @ vectors[head].T
    after = own[None, :] - weight * cosines
    mmr = after[0].copy()  # each candidate's value now: the least over the chosen
    mmr[0] = -np.inf
    chosen = [0]
    group = groups(head) if groups is not None and cap is not None else None
    # ``value``: ``mmr`` with the candidates of a reason at its cap left out (-inf), kept alongside it.
    value = mmr.copy() if group is not None else mmr
    counts: dict[int, int] = {}
    reason_of = group.tolist() if group is not None else []
    last = 0
    while len(chosen) < want:
        if group is not None and cap is not None:
            g = reason_of[last]
            counts[g] = counts.get(g, 0) + 1
            if counts[g] == cap:
                value[group == g] = -np.inf
        nxt = int(value.argmax())
        if value[nxt] == -np.inf:  # every paper left shares a reason at its cap: the cap gives way
            value, group = mmr, None
            nxt = int(mmr.argmax())
        chosen.append(nxt)
        row = after[nxt]
        np.minimum(mmr, row, out=mmr)
        mmr[nxt] = -np.inf
        if value is not mmr:
            np.minimum(value, row, out=value)
            value[nxt] = -np.inf
        last = nxt
    return head[chosen]
