"""Readers' tastes in one pool's papers (see ``semantic``): each description placed once, each distinct
taste made once, within bounds.

A taste needs each paper's likeness in two places: the model's space (one small product at ranking time)
and the Lexicon's plain TF-IDF terms, which are kept with the taste. That second one is never a product
of the whole pool with the taste's point: the point is a weighted sum of its items (the description,
liked and disliked papers: Rocchio), so its likeness is the same weighted sum of each item's likeness,
divided by the point's length. Each item's likeness is found once: a batch's descriptions in one sparse
product, a liked paper's when first liked (and kept: readers like the same papers). The point's length
comes from the items' likeness to each other, read off those same vectors.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from digest.models import Paper
from digest.selection.semantic import (
    Lexicon,
    Row,
    Space,
    Taste,
    embed_placed,
    lexical_point,
    make_taste,
    rocchio_weights,
    rows_of,
)

Floats = npt.NDArray[np.float32]


class About(NamedTuple):
    """A description placed once: its unit vector in the space, its TF-IDF row, and each paper's cosine
    with that row (its likeness in the Lexicon's terms)."""

    vector: Floats
    row: Row
    near: Floats


class Tastes:
    """The tastes of one pool (``space`` and ``lexicon`` made on first use, ``position`` of a paper in
    the pool or None), and what they are made of, kept up to ``most`` of each kind: past it they are made
    again as needed."""

    def __init__(
        self,
        space: Callable[[], Space],
        lexicon: Callable[[], Lexicon],
        position: Callable[[Paper], int | None],
        most: int,
    ) -> None:
        self._space, self._lexicon, self._position, self._most = space, lexicon, position, most
        self._tastes: dict[Any, Taste | None] = {}
        self._abouts: dict[str, About] = {}
        self._near: dict[int, Floats] = {}  # a pool paper's position -> every paper's cosine with it

    def embed_abouts(self, abouts: Iterable[str]) -> None:
        """Place descriptions in the space and the Lexicon, a batch's worth in one call each (one call per
        text costs many times more), with each paper's likeness to each in one sparse product."""
        new = list(dict.fromkeys(a for a in abouts if a.strip() and a not in self._abouts))
        if len(self._abouts) + len(new) > self._most:  # bounded: 100,000 distinct profiles stay flat
            self._abouts.clear()
            self._tastes.clear()
        if not new:
            return
        lexicon = self._lexicon()
        rows = lexicon.embed(new)
        near = np.ascontiguousarray((lexicon.papers @ rows.T).toarray().T, dtype=np.float32)
        vectors = embed_placed(self._space(), lexicon, new, rows)
        self._abouts.update(
            (about, About(vector, row, likeness))
            for about, vector, row, likeness in zip(new, vectors, rows_of(rows), near, strict=True)
        )

    def taste(self, about: str, liked: Sequence[Paper], disliked: Sequence[Paper] = ()) -> Taste | None:
        """The taste of a description and liked / disliked papers (seeds, feedback); made once per distinct
        combination (subscribers who share one share the work)."""
        key = (about, tuple(p.key for p in liked), tuple(p.key for p in disliked))
        if key not in self._tastes:
            if len(self._tastes) >= self._most:
                self._tastes.clear()
            self.embed_abouts([about])
            placed = self._abouts.get(about)
            taste = make_taste(
                placed.vector if placed is not None else None,
                [(p.title, self._vector(p)) for p in liked],
                [self._vector(p) for p in disliked],
            )
            if taste is not None:
                items = ([placed.row] if placed is not None else []) + [self._row(p) for p in liked]
                taste = replace(
                    taste,
                    lexical=self._lexical(placed, liked, disliked),
                    lexical_items=tuple(items),
                    keys=("",) * (placed is not None) + tuple(p.key for p in liked),
                )
            self._tastes[key] = taste
        return self._tastes[key]

    def _vector(self, paper: Paper) -> Any:
        at = self._position(paper)
        space = self._space()
        return space.papers[at] if at is not None else space.embed([f"{paper.title}. {paper.abstract}"])[0]

    def _row(self, paper: Paper) -> Row:
        at = self._position(paper)
        lexicon = self._lexicon()
        if at is not None:
            return lexicon.rows[at]
        return rows_of(lexicon.embed([f"{paper.title}. {paper.abstract}"]))[0]

    def _near_of(self, position: int) -> Floats:
        """Every paper's cosine with the pool's paper at ``position``, in the Lexicon's terms (kept)."""
        found = self._near.get(position)
        if found is None:
            if len(self._near) >= self._most:
                self._near.clear()
            lexicon = self._lexicon()
            row, point = lexicon.rows[position], np.zeros(lexicon.papers.shape[1], dtype=np.float32)
            point[row.indices] = row.data
            found = self._near[position] = np.asarray(lexicon.papers @ point, dtype=np.float32)
        return found

    def _lexical(self, placed: About | None, liked: Sequence[Paper], disliked: Sequence[Paper]) -> Floats:
        """Each paper's cosine with the taste's point in the Lexicon's terms (see the module's docstring);
        for a liked or disliked paper from outside the pool, by the point itself."""
        positions = [self._position(p) for p in (*liked, *disliked)]
        if any(at is None for at in positions):
            lexicon = self._lexicon()
            point = lexical_point(
                lexicon.papers.shape[1],
                placed.row if placed is not None else None,
                [self._row(p) for p in liked],
                [self._row(p) for p in disliked],
            )
            return np.asarray(lexicon.papers @ point, dtype=np.float32)
        return combined_likeness(
            placed.near if placed is not None else None,
            float(placed.row.data @ placed.row.data) if placed is not None else 0.0,
            [self._near_of(at) for at in positions if at is not None],
            [at for at in positions if at is not None],
            rocchio_weights(placed is not None, len(liked), len(disliked)),
        )


def combined_likeness(
    about: Floats | None,
    about_length: float,
    papers: Sequence[Floats],
    positions: Sequence[int],
    weights: tuple[list[float], list[float]],
) -> Floats:
    """Each paper's cosine with a point made of unit items (Rocchio: ``weights`` of the positive items,
    the description first, and of the negative ones), from each item's cosine with every paper
    (``about``; ``papers``, the items at ``positions`` of the pool, liked then disliked): their weighted
    sum, over the point's length, which is read off the same vectors. ``about_length``: the description
    row's squared length (1, or 0 when none of its words is known).

    >>> a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)  # two orthogonal papers
    >>> [round(float(x), 3) for x in combined_likeness(None, 0.0, [a, b], [0, 1], ([0.5, 0.5], []))]
    [0.707, 0.707]
    """
    plus, minus = weights
    w = np.array(plus + [-m for m in minus], dtype=np.float64)
    vectors = np.array(([about] if about is not None else []) + list(papers), dtype=np.float32)
    at = list(positions)
    gram = vectors[:, at].astype(np.float64)  # each item's cosine with each paper item
    if about is not None:  # the description's column: its cosine with itself is its squared length
        gram = np.hstack([np.concatenate([[about_length], gram[0]])[:, None], gram])
    length = float(np.sqrt(max(float(w @ gram @ w), 0.0)))
    out = np.asarray(w.astype(np.float32) @ vectors, dtype=np.float32)
    return out / np.float32(length) if length > 0 else out
