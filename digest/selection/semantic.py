"""Meaning, beside keywords: papers placed in a vector space, profiles as a point in it.

A reader may say what they want in words (``about``) or by example (``seeds``, and "more like this" /
"less like this" feedback). Both become one *taste*: the mean of the unit vectors of the description and of
the liked papers, less half the mean of the disliked ones (Rocchio's classic update), normalised. A paper's
likeness is its cosine with the taste.

The space is pluggable (``TextModel``):

- ``TfidfModel`` (the default, no download): TF-IDF over titles and abstracts (word unigrams and bigrams,
  English stop words out, sublinear term frequency), reduced to ``dims`` dimensions by a truncated SVD
  (latent semantic analysis), fitted on the run's candidate papers. The reduction is what lets "grounding
  answers in retrieved documents" land near "RAG": words that occur in the same papers share dimensions.
  Fitted once per run (or per worker), never per subscriber: a day's papers take a moment, not a reader's share.
- ``SentenceModel``: a sentence-transformers model by name or local path (e.g. all-MiniLM-L6-v2); each
  paper is embedded once, tastes once per distinct profile.

Pure: no I/O here except what a sentence model's library does when it is loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]

DIMS = 128  # LSA dimensions: 64-256 measured alike on the labelled seed papers (bench/relevance.py)
NEGATIVE_WEIGHT = 0.5  # how far one "less like this" pulls the taste away, against one liked paper


class Space(Protocol):
    """Unit vectors for the papers a space was made on (rows in their order), and for any other text."""

    papers: Vectors

    def embed(self, texts: Sequence[str]) -> Vectors: ...


class TextModel(Protocol):
    """Makes the space for a run's papers (``texts``: each paper's title and abstract)."""

    @property
    def name(self) -> str: ...

    def space(self, texts: Sequence[str]) -> Space: ...


def _unit(rows: Any) -> Vectors:
    """Rows scaled to length 1 (a zero row stays zero).

    >>> _unit(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    m = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    out: Vectors = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
    return out


class _TfidfSpace:
    def __init__(self, texts: Sequence[str], dims: int) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(
            sublinear_tf=True,
            stop_words="english",
            ngram_range=(1, 2),
            max_df=0.5 if len(texts) >= 4 else 1.0,  # words in half the papers say nothing of any one
            dtype=np.float32,
        )
        self.svd: Any = None
        try:
            tfidf = self.vectorizer.fit_transform(texts)
        except ValueError:  # no papers, or no word that is not a stop word: nothing is like anything
            self.papers = np.zeros((len(texts), 1), dtype=np.float32)
            self.fitted = False
            return
        self.fitted = True
        k = min(dims, tfidf.shape[0] - 1, tfidf.shape[1] - 1)
        if k >= 2:
            self.svd = TruncatedSVD(k, random_state=0)
            self.papers = _unit(self.svd.fit_transform(tfidf))
        else:
            self.papers = _unit(tfidf.toarray())

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not self.fitted:
            return np.zeros((len(texts), self.papers.shape[1]), dtype=np.float32)
        tfidf = self.vectorizer.transform(texts)
        return _unit(self.svd.transform(tfidf) if self.svd is not None else tfidf.toarray())


@dataclass(frozen=True)
class TfidfModel:
    """The default model: TF-IDF and LSA fitted on the run's papers (see the module's docstring)."""

    dims: int = DIMS
    name: str = "tfidf"

    def space(self, texts: Sequence[str]) -> Space:
        return _TfidfSpace(texts, self.dims)


class _SentenceSpace:
    def __init__(self, model: SentenceModel, papers: Vectors) -> None:
        self.model = model
        self.papers = papers

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self.model.embed(texts)


class SentenceModel:
    """A sentence-transformers model, by hub name or local folder (loaded once per process). Its paper
    vectors do not depend on the other papers, so the store keeps them: ``space_of`` takes them back."""

    def __init__(self, name: str) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # none in a run's output
        self._name = name
        # From the folder or the local cache only (``check_model`` found it there): never a download.
        self.encoder = SentenceTransformer(name, device="cpu", local_files_only=True)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dims(self) -> int:
        return int(self.encoder.get_sentence_embedding_dimension() or 0)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        out = self.encoder.encode(list(texts), normalize_embeddings=True, batch_size=64)
        return np.asarray(out, dtype=np.float32)

    def space(self, texts: Sequence[str]) -> Space:
        return _SentenceSpace(self, self.embed(texts))

    def space_of(self, vectors: Vectors) -> Space:
        """The space of papers whose vectors were made (and kept) before."""
        return _SentenceSpace(self, vectors)


@functools.lru_cache(maxsize=4)
def make_model(name: str) -> TextModel:
    """``tfidf`` (the default), else a sentence-transformers model name or path (loaded once a process)."""
    return TfidfModel() if name == "tfidf" else SentenceModel(name)


@dataclass(frozen=True)
class Taste:
    """A profile's point in a space, and the items it was made of (for the reasons a paper is shown)."""

    vector: Vectors  # (d,), unit length
    labels: tuple[str, ...]  # per positive item: a liked paper's title, or "" for the description
    items: Vectors  # (k, d): the positive items' unit vectors


def make_taste(
    about: Vectors | None, liked: Sequence[tuple[str, Vectors]], disliked: Sequence[Vectors]
) -> Taste | None:
    """The taste of a description (``about``, a unit vector), liked papers (title, unit vector) and
    disliked ones; None when there is nothing positive to go by.

    >>> t = make_taste(np.array([1, 0], np.float32), [("A paper", np.array([0, 1], np.float32))], [])
    >>> [round(float(x), 3) for x in t.vector], t.labels
    ([0.707, 0.707], ('', 'A paper'))
    """
    labels = ([""] if about is not None else []) + [title for title, _ in liked]
    rows = ([about] if about is not None else []) + [v for _, v in liked]
    if not rows:
        return None
    items = np.array(rows, dtype=np.float32)
    point = items.sum(axis=0) / len(rows)
    if disliked:
        point -= NEGATIVE_WEIGHT * np.array(disliked, dtype=np.float32).sum(axis=0) / len(disliked)
    norm = float(np.sqrt(point @ point))
    return Taste(point / norm if norm > 0 else point, tuple(labels), items)
