"""Meaning, beside keywords: papers placed in a vector space, profiles as a point in it.

A reader may say what they want in words (``about``) or by example (``seeds``, and "more like this" /
"less like this" feedback). Both become one *taste*, by Rocchio's classic update: the unit vector of the
description plus the mean of the liked papers', less half the mean of the disliked ones', normalised (the
description weighs as much as all the liked papers together). A paper's likeness is its cosine with the
taste.

The space is pluggable (``TextModel``):

- ``TfidfModel`` (the default, no download): TF-IDF over titles and abstracts (word unigrams, English
  stop words out, sublinear term frequency), reduced to ``dims`` dimensions by a truncated SVD
  (latent semantic analysis), fitted on the run's candidate papers. The reduction is what lets "grounding
  answers in retrieved documents" land near "RAG": words that occur in the same papers share dimensions.
  Fitted once per run (or per worker), never per subscriber: a day's papers take a moment, not a reader's share.
- ``SentenceModel``: a sentence-transformers model by name or local path (e.g. all-MiniLM-L6-v2); each
  paper is embedded once, tastes once per distinct profile.

Beside the model's space, every run also has a ``Lexicon``: the same papers as plain TF-IDF rows, where a
taste is made the same way. A paper's likeness blends its cosine in both (``hybrid.Blend``): the exact
words a reader uses and the neighbourhood of their meaning.

Pure: no I/O here except what a sentence model's library does when it is loaded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

Vectors = NDArray[np.float32]

DIMS = 128  # LSA dimensions: 64-256 measured alike on the labelled seed papers (bench/relevance.py)
NGRAMS = 1  # word n-grams of the TF-IDF terms: unigrams, chosen by leave-one-topic-out (bench/relevance.py)
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


class Row(NamedTuple):
    """One sparse row's nonzero entries (column indices and values): what a taste and a reason read of
    it, without a sparse matrix's overhead per slice."""

    indices: Any
    data: Any


def rows_of(matrix: Any) -> list[Row]:
    """The rows of a CSR matrix as ``Row``s (views, no copy).

    >>> from scipy import sparse
    >>> [r.indices.tolist() for r in rows_of(sparse.csr_matrix([[0.0, 2.0], [0.0, 0.0]]))]
    [[1], []]
    """
    ptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    return [Row(indices[ptr[i] : ptr[i + 1]], data[ptr[i] : ptr[i + 1]]) for i in range(matrix.shape[0])]


class Cells(NamedTuple):
    """Every entry of a CSR matrix whose rows' columns are sorted, as one sorted key per entry
    (row x ``width`` + column) and its value: so that many (row, column) pairs are looked up at once.

    >>> from scipy import sparse
    >>> Cells.of(sparse.csr_matrix([[0.0, 2.0], [3.0, 0.0]])).keys.tolist()
    [1, 2]
    """

    keys: Any
    data: Any
    width: int

    @classmethod
    def of(cls, matrix: Any) -> Cells:
        width = int(matrix.shape[1])
        rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
        keys = rows * width + matrix.indices.astype(np.int64)
        return cls(keys, np.asarray(matrix.data, dtype=np.float32), width)


class Lexicon:
    """Word overlap: the papers' TF-IDF rows (sparse, unit length) and any other text's in the same terms.

    Word unigrams by default: on the labelled topics, chosen by leave-one-topic-out against bigrams
    (``bench/relevance.py``). Rare exact words ("LoRA", "Lean", "KV") are what a description and a paper share
    that a reduced space blurs.
    """

    def __init__(self, texts: Sequence[str], ngrams: int = NGRAMS) -> None:
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(
            sublinear_tf=True,
            stop_words="english",
            ngram_range=(1, ngrams),
            max_df=0.5 if len(texts) >= 4 else 1.0,  # words in half the papers say nothing of any one
            dtype=np.float32,
        )
        try:
            self.papers: Any = self.vectorizer.fit_transform(texts).tocsr()
            self.papers.sort_indices()  # each row's columns in order: a reason's words are found by bisection
            self.fitted = True
        except ValueError:  # no papers, or no word that is not a stop word: nothing is like anything
            self.papers = sparse.csr_matrix((len(texts), 1), dtype=np.float32)
            self.fitted = False
        self.rows = rows_of(self.papers)

    @functools.cached_property
    def cells(self) -> Cells:
        """The papers' entries as ``Cells`` (for the words a reason names)."""
        return Cells.of(self.papers)

    @functools.cached_property
    def names(self) -> list[str]:
        """The term of each column (for the words a reason names)."""
        return [str(t) for t in self.vectorizer.get_feature_names_out()] if self.fitted else []

    def embed(self, texts: Sequence[str]) -> Any:
        """Unit TF-IDF rows (a sparse matrix) of ``texts`` in the papers' terms."""
        if not self.fitted:
            from scipy import sparse

            return sparse.csr_matrix((len(texts), self.papers.shape[1]), dtype=np.float32)
        rows = self.vectorizer.transform(texts).tocsr()
        rows.sort_indices()
        return rows


class _TfidfSpace:
    def __init__(self, texts: Sequence[str], dims: int, ngrams: int) -> None:
        self.lexicon = Lexicon(texts, ngrams)
        self.svd: Any = None
        if not self.lexicon.fitted:
            self.papers = np.zeros((len(texts), 1), dtype=np.float32)
            return
        tfidf = self.lexicon.papers
        k = min(dims, tfidf.shape[0] - 1, tfidf.shape[1] - 1)
        if k >= 2:
            from sklearn.decomposition import TruncatedSVD

            self.svd = TruncatedSVD(k, random_state=0)
            self.papers = _unit(self.svd.fit_transform(tfidf))
        else:
            self.papers = _unit(tfidf.toarray())

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not self.lexicon.fitted:
            return np.zeros((len(texts), self.papers.shape[1]), dtype=np.float32)
        return self.embed_rows(self.lexicon.embed(texts))

    def embed_rows(self, tfidf: Any) -> Vectors:
        """Texts' vectors from their rows in this space's own Lexicon (``Lexicon.embed``): what ``embed``
        gives, without reading the texts again."""
        if not self.lexicon.fitted:
            return np.zeros((tfidf.shape[0], self.papers.shape[1]), dtype=np.float32)
        return _unit(self.svd.transform(tfidf) if self.svd is not None else tfidf.toarray())


def embed_placed(space: Space, lexicon: Lexicon, texts: Sequence[str], rows: Any) -> Vectors:
    """``texts``' vectors in ``space``, given their rows in ``lexicon`` (``Lexicon.embed``): read off those
    rows when the space is made of that same Lexicon (the default model), else embedded.

    >>> space = TfidfModel(dims=2).space(["sparse experts", "dense experts", "diffusion images", "video"])
    >>> texts = ["experts for images"]
    >>> placed = embed_placed(space, space.lexicon, texts, space.lexicon.embed(texts))
    >>> bool(np.allclose(placed, space.embed(texts)))
    True
    """
    if isinstance(space, _TfidfSpace) and space.lexicon is lexicon:
        return space.embed_rows(rows)
    return space.embed(texts)


@dataclass(frozen=True)
class TfidfModel:
    """The default model: TF-IDF and LSA fitted on the run's papers (see the module's docstring)."""

    dims: int = DIMS
    name: str = "tfidf"
    ngrams: int = NGRAMS

    def space(self, texts: Sequence[str]) -> Space:
        return _TfidfSpace(texts, self.dims, self.ngrams)


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
    lexical: Any = None  # (n,): each paper's cosine with the same taste in the Lexicon's terms (an index's)
    lexical_items: tuple[Any, ...] = ()  # the positive items' sparse TF-IDF rows, in ``labels``' order
    keys: tuple[str, ...] = ()  # per positive item: a liked paper's key, or "" for the description
    learned: Any = None  # (n,): a reader's own model's liking of each paper in [-1, 1] (learner.py), if any


def rocchio_weights(about: bool, liked: int, disliked: int) -> tuple[list[float], list[float]]:
    """The weight of each positive item (the description first, then each liked paper) and of each
    disliked one in a taste: Rocchio's query + mean of the relevant - half the mean of the non-relevant.

    >>> rocchio_weights(True, 2, 1)
    ([1.0, 0.5, 0.5], [0.5])
    """
    return [1.0] * about + [1.0 / max(liked, 1)] * liked, [NEGATIVE_WEIGHT / max(disliked, 1)] * disliked


def make_taste(
    about: Vectors | None, liked: Sequence[tuple[str, Vectors]], disliked: Sequence[Vectors]
) -> Taste | None:
    """The taste of a description (``about``, a unit vector), liked papers (title, unit vector) and
    disliked ones (``rocchio_weights``); None when there is nothing positive to go by.

    >>> t = make_taste(np.array([1, 0], np.float32), [("A paper", np.array([0, 1], np.float32))], [])
    >>> [round(float(x), 3) for x in t.vector], t.labels
    ([0.707, 0.707], ('', 'A paper'))
    """
    labels = ([""] if about is not None else []) + [title for title, _ in liked]
    rows = ([about] if about is not None else []) + [v for _, v in liked]
    if not rows:
        return None
    items = np.array(rows, dtype=np.float32)
    plus, minus = rocchio_weights(about is not None, len(liked), len(disliked))
    point = np.asarray(plus, dtype=np.float32) @ items
    if disliked:
        point -= np.asarray(minus, dtype=np.float32) @ np.array(disliked, dtype=np.float32)
    norm = float(np.sqrt(point @ point))
    return Taste(point / norm if norm > 0 else point, tuple(labels), items)


def lexical_point(size: int, about: Any | None, liked: Sequence[Any], disliked: Sequence[Any]) -> Vectors:
    """The same taste as ``make_taste`` in the Lexicon's terms: from sparse unit rows (1 x ``size``: a
    description's or None, liked and disliked papers'), one dense unit vector of ``size``. Rows are added
    by their nonzero entries: a few microseconds each, where sparse matrix products cost a hundred.

    >>> from scipy import sparse
    >>> point = lexical_point(2, sparse.csr_matrix([[1.0, 0.0]]), [sparse.csr_matrix([[0.0, 1.0]])], [])
    >>> [round(float(x), 3) for x in point]
    [0.707, 0.707]
    """
    plus, minus = rocchio_weights(about is not None, len(liked), len(disliked))
    point = np.zeros(size, dtype=np.float32)
    for weight, row in zip(plus, ([about] if about is not None else []) + list(liked), strict=True):
        np.add.at(point, row.indices, weight * row.data)
    for weight, row in zip(minus, disliked, strict=True):
        np.subtract.at(point, row.indices, weight * row.data)
    norm = float(np.sqrt(point @ point))
    return point / norm if norm > 0 else point
