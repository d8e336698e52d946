"""How a hybrid profile's parts make one score (``Blend``), and the two small rules of a hybrid digest
beyond its scores: which words a paper shares with what the reader gave (the reason they read), and how a
digest keeps its variety (one liked paper cannot fill it).

Pure values and functions over arrays; ``index.PaperIndex`` applies them to the papers it chose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SHARED_WORDS = 3  # words named in a likeness reason
VARIETY = 0.3  # maximal marginal relevance: how much a paper's likeness to those ranked above it costs it
VARIETY_POOL = 3  # the greedy pass looks at this many times the digest's size, best first
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
    learned: float = LEARNED  # times a reader's own model's liking in [-1, 1], if any (learner.py)


def shared_words(
    rows: Any, paper: int, item: npt.NDArray[np.float32], names: Any, n: int = SHARED_WORDS
) -> tuple[str, ...]:
    """The ``n`` words of paper ``paper`` (a row of the sparse ``rows``) that weigh most in its overlap
    with ``item`` (a dense TF-IDF vector: the description or a liked paper), heaviest first.

    >>> from scipy import sparse
    >>> rows = sparse.csr_matrix([[0.5, 0.5, 0.0, 0.7]], dtype=np.float32)
    >>> shared_words(rows, 0, np.array([0.9, 0.1, 0.8, 0.0], np.float32), ["lora", "rank", "merge", "moe"])
    ('lora', 'rank')
    """
    start, end = rows.indptr[paper], rows.indptr[paper + 1]
    terms = rows.indices[start:end]
    weight = rows.data[start:end] * item[terms]
    keep = np.flatnonzero(weight > 0)
    best = keep[np.argsort(-weight[keep], kind="stable")[:n]]
    return tuple(str(names[t]) for t in terms[best])


def with_variety(
    order: npt.NDArray[np.intp],
    scores: npt.NDArray[np.float32],
    vectors: npt.NDArray[np.float32],
    limit: int,
    weight: float = VARIETY,
) -> npt.NDArray[np.intp]:
    """The first ``limit`` of ``order`` (candidates best first by ``scores``) re-chosen by maximal marginal
    relevance: each next paper is the one whose score less ``weight`` times its highest cosine (rows of
    ``vectors``, unit length) with a paper already chosen is highest, among the best ``VARIETY_POOL``
    times ``limit``. The best paper always comes first; with ``weight`` 0 the order is unchanged.

    >>> v = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    >>> with_variety(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.8], np.float32), v, 2, 0.3).tolist()
    [0, 2]
    """
    head = order[: limit * VARIETY_POOL]
    if weight <= 0 or len(head) <= 1 or limit <= 1:
        return order[:limit]
    own = scores[head].astype(np.float32)
    # A candidate's value once ``k`` is chosen: its score less its likeness to ``k`` (row k); its value
    # now is the least of those over the chosen, kept in ``value`` as they are chosen.
    after = own[None, :] - weight * (vectors[head] @ vectors[head].T)
    value = after[0].copy()
    value[0] = -np.inf
    chosen = [0]
    for _ in range(min(limit, len(head)) - 1):
        nxt = int(value.argmax())
        chosen.append(nxt)
        np.minimum(value, after[nxt], out=value)
        value[nxt] = -np.inf
    return head[chosen]
