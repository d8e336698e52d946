"""A small model per reader that learns from what they say, as Scholar Inbox does with thumbs up and down.

A reader who has said "more like this" or "less like this" gets a logistic regression over paper words:
positives are their description, seed papers and liked papers; negatives their disliked papers and the
papers they were shown and did not like (the most recent ``SHOWN``). It adds to the hybrid score
(``Blend.learned``); keywords keep their reasons and exclusions still win, since the model only re-ranks
the candidates the profile already allows. A reader without feedback has no model: their ranking is
exactly the profile's.

The features are hashed words (``HashingVectorizer``: no vocabulary to fit), so a model fitted one day
scores the next day's papers: it is kept in the store with the *version* of what it was fitted on and
fitted again only when that changes, never per run. Pure: the caller reads and keeps models.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FEATURES = 1 << 18  # hashed word columns: collisions are rare among a reader's few hundred words
SHOWN = 30  # papers shown and not liked, the most recent, taken as negatives
SHOWN_WEIGHT = 0.2  # what one of them counts against a dislike (a reader rates few of the papers they like)
STRENGTH = 1.0  # the regression's C: the usual default, not tuned (a reader has a handful of examples)


@functools.lru_cache(maxsize=1)
def _hasher() -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=FEATURES, alternate_sign=False, norm="l2", stop_words="english", dtype=np.float32
    )


def features(texts: Sequence[str]) -> Any:
    """Hashed word features (a sparse matrix, unit rows) of ``texts``: the same columns on any day."""
    return _hasher().transform(list(texts)).tocsr()


def version(about: str, liked: Sequence[str], disliked: Sequence[str]) -> str:
    """What a model was fitted on (the description, the keys of the seed and liked papers, of the disliked
    ones), as one short string: a new description, seed or opinion changes it.

    >>> version("x", ["a"], []) == version("x", ["a"], []) != version("x", [], ["a"])
    True
    """
    body = json.dumps([about, sorted(liked), sorted(disliked)], ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, eq=False)
class ReaderModel:
    """A fitted model: its version, and its nonzero weights by hashed column."""

    version: str
    columns: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float32]
    intercept: float

    def scores(self, papers: Any) -> npt.NDArray[np.float32]:
        """Each paper's liking in [-1, 1] (``papers``: ``features`` of the papers): 2 x probability - 1."""
        dense = np.zeros(FEATURES, dtype=np.float32)
        dense[self.columns] = self.weights
        logit = np.asarray(papers @ dense, dtype=np.float64) + self.intercept
        return (2.0 / (1.0 + np.exp(-logit)) - 1.0).astype(np.float32)

    def to_bytes(self) -> bytes:
        """The model as bytes for the store.

        >>> m = ReaderModel("v", np.array([3], np.int32), np.array([0.5], np.float32), -1.0)
        >>> ReaderModel.from_bytes("v", m.to_bytes()) == m
        True
        """
        head = np.array([self.intercept, len(self.columns)], dtype=np.float64).tobytes()
        return head + self.columns.astype("<i4").tobytes() + self.weights.astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, version: str, blob: bytes) -> ReaderModel:
        intercept, n = np.frombuffer(blob[:16], dtype=np.float64)
        count = int(n)
        columns = np.frombuffer(blob[16 : 16 + 4 * count], dtype="<i4").astype(np.int32)
        weights = np.frombuffer(blob[16 + 4 * count :], dtype="<f4").astype(np.float32)
        return cls(version, columns, weights, float(intercept))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ReaderModel)
            and (self.version, self.intercept) == (other.version, other.intercept)
            and np.array_equal(self.columns, other.columns)
            and np.array_equal(self.weights, other.weights)
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, arrays inside: not a dict key


def fit(
    model_version: str, positives: Sequence[str], disliked: Sequence[str], shown: Sequence[str] = ()
) -> ReaderModel | None:
    """A model of ``positives`` against ``disliked`` and ``shown`` (papers shown and not liked: each
    counts ``SHOWN_WEIGHT`` of a dislike, since a reader leaves most papers they like unrated), the two
    classes weighed alike however many each has; texts are title and abstract, or a description. None
    without both classes."""
    if not positives or not (disliked or shown):
        return None
    from sklearn.linear_model import LogisticRegression

    x = features([*positives, *disliked, *shown])
    y = np.r_[np.ones(len(positives)), np.zeros(len(disliked) + len(shown))]
    against = len(disliked) + SHOWN_WEIGHT * len(shown)
    weight = np.r_[
        np.full(len(positives), 1.0 / len(positives)),
        np.full(len(disliked), 1.0 / against),
        np.full(len(shown), SHOWN_WEIGHT / against),
    ]
    fitted = LogisticRegression(C=STRENGTH, max_iter=200).fit(x, y, sample_weight=weight * len(y))
    coef = fitted.coef_[0]
    columns = np.flatnonzero(coef).astype(np.int32)
    return ReaderModel(model_version, columns, coef[columns].astype(np.float32), float(fitted.intercept_[0]))
