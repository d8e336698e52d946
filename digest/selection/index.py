"""Which papers a subscriber gets, and why: pure, deterministic, shared work done once per run.

A run builds one ``PaperIndex`` over the candidate pool: each paper is tokenised once (``postings``), each distinct keyword
is looked up once (its hits cached as a score vector), and each subscriber's ranking is a sum of those
vectors and a top-k. The cost grows with papers + distinct keywords + subscribers, not with their product.

Keywords match by the rules of the keyword language (``digest.keywords``: words not substrings, phrases,
case, plurals, ``*``, exclusions; 2 points in the title, else 1 in the abstract). Rank: score, upvotes,
title. No keywords (nor a description or seed papers): the trending digest, every candidate ranked by
upvotes.

By meaning (``semantic``): a profile with a description, seed papers or feedback also has a *taste*; then
each paper's score is (``Blend``) a bonus for matching any keyword, plus its keyword score scaled so the
profile's best match is 1, plus its likeness to the taste: the cosine in the Lexicon's plain TF-IDF terms
and in the model's space, blended. A paper without a keyword is chosen when its likeness reaches
``similar_enough``, with the reason "similar to: <the liked paper it is closest to>" or "close to your
description" naming the words they share, and a digest keeps its variety (``hybrid``). Exclusions drop a
paper whatever its likeness.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from digest.keywords import SCORE, Keyword, compiled
from digest.models import SECTION_OF, SECTIONS, Match, Paper, Profile, Where
from digest.selection.authorship import Authorship
from digest.selection.caps import LOOK_MAX, Caps, fill
from digest.selection.categories import Categories
from digest.selection.hybrid import Blend, with_variety
from digest.selection.learner import features
from digest.selection.postings import Postings
from digest.selection.reasons import Reasons
from digest.selection.semantic import Lexicon, Space, Taste, TextModel, TfidfModel
from digest.selection.tastes import Tastes

REST_KEPT = 100  # matches a digest left out that its page of all matches lists (by ref, best first)
# Descriptions and tastes kept per index (past it they are made again): enough for the readers who share a
# profile within a run and for the web app's previews; most readers' profiles are their own, made once.
TASTES_MAX = 2_000
CACHE_FLOATS = 10_000_000  # and at most this many floats of tastes' per-paper likeness (40 MB) on big days
# A pool up to this size keeps its papers' cosines with each other (16 MB at most): variety reads them.
NEAR_MAX = 2_000


Vector = npt.NDArray[np.int32]


class PaperIndex:
    """The run's candidate pool, tokenised once; each distinct keyword evaluated once.

    ``select(profile, skip, limit)`` returns the top ``limit`` matches and how many matched in all.
    """

    def __init__(
        self,
        papers: Iterable[Paper],
        model: TextModel | None = None,
        space: Space | None = None,
        blend: Blend | None = None,
    ) -> None:
        self.papers: list[Paper] = list(papers)
        self.model: TextModel = model or TfidfModel()
        self.blend = blend or Blend()
        self._space: Space | None = space  # else made at the first profile that needs meaning
        self._near: npt.NDArray[np.float32] | None = None
        self._lexicon: Lexicon | None = None
        self._hashed: Any = None
        # Each kept description, taste and liked paper holds a float per paper: three kinds, one budget.
        most = max(256, min(TASTES_MAX, CACHE_FLOATS // max(3 * len(self.papers), 1)))
        self._tastes = Tastes(lambda: self.space, lambda: self.lexicon, self._position, most)
        self.named: dict[str, Paper | None] = {}  # seed names resolved against the store (by the caller)
        n = len(self.papers)
        self._postings = Postings(self.papers)
        self.authorship = Authorship(self.papers)
        self.categories = Categories(self.papers)
        # Rank of each paper among equals in score: upvotes (desc), then title, then key.
        order = sorted(
            range(n),
            key=lambda i: (
                -(self.papers[i].upvotes or 0),
                self.papers[i].title.casefold(),
                self.papers[i].key,
            ),
        )
        self._rank = np.empty(n, dtype=np.int64)
        self._rank[order] = np.arange(n)
        # Community signal per paper in [0, 1]: log upvotes over the pool's most (what ``Profile.upvotes`` weighs).
        upvotes = np.log1p(np.array([max(p.upvotes or 0, 0) for p in self.papers], dtype=np.float32))
        self.popularity = upvotes / max(float(upvotes.max(initial=0.0)), 1e-9)
        self._by_ref = {p.ref: i for i, p in enumerate(self.papers) if p.ref is not None}
        self._ref_of = np.array([p.ref or 0 for p in self.papers], dtype=np.int64)  # 0: not from the store
        # The smallest store ref in the pool (0 if none): history before it cannot matter to a selection.
        self.min_ref: int = min(self._by_ref, default=0)
        self._hits: dict[str, dict[int, Where]] = {}
        self._vectors: dict[str, Vector] = {}
        self.reasons = Reasons(
            self._vectors, self.authorship, self.categories, lambda: self.space, lambda: self.lexicon
        )

    def __len__(self) -> int:
        return len(self.papers)

    def hits(self, keyword: Keyword) -> dict[int, Where]:
        """Paper position -> where the keyword matched best (title beats abstract). Cached per keyword."""
        cached = self._hits.get(keyword.text)
        if cached is None:
            cached = self._hits[keyword.text] = self._postings.hits(keyword)
        return cached

    def vector(self, text: str) -> Vector | None:
        """The keyword's score per paper (2 title, 1 abstract, 0); None if it cannot match."""
        vec = self._vectors.get(text)
        if vec is None:
            kw = compiled(text)
            if kw is None:
                return None
            vec = np.zeros(len(self.papers), dtype=np.int32)
            for pi, where in self.hits(kw).items():
                vec[pi] = SCORE[0] if where == "title" else SCORE[1]
            self._vectors[text] = vec
        return vec

    @property
    def space(self) -> Space:
        """The papers in the text model's space, made once (at the first profile that needs it)."""
        if self._space is None:
            self._space = self.model.space(self._texts())
        return self._space

    @property
    def near(self) -> npt.NDArray[np.float32] | None:
        """The papers' cosines with each other in the model's space, made once for a pool of at most
        ``NEAR_MAX`` papers (a digest's variety reads them); None for a bigger pool."""
        if self._near is None and len(self.papers) <= NEAR_MAX:
            papers = self.space.papers
            self._near = np.asarray(papers @ papers.T, dtype=np.float32)
        return self._near

    @property
    def lexicon(self) -> Lexicon:
        """The papers' plain TF-IDF rows: the TF-IDF model's own, else made once for this index."""
        if self._lexicon is None:
            own = getattr(self.space, "lexicon", None)
            self._lexicon = own if isinstance(own, Lexicon) else Lexicon(self._texts())
        return self._lexicon

    def _texts(self) -> list[str]:
        return [f"{p.title}. {p.abstract}" for p in self.papers]

    def _position(self, paper: Paper) -> int | None:
        """Where ``paper`` is in this pool, if it is (by store ref)."""
        return self._by_ref.get(paper.ref) if paper.ref is not None else None

    def embed_abouts(self, abouts: Iterable[str]) -> None:
        """Place descriptions once each, a batch's worth at a time (``Tastes.embed_abouts``)."""
        self._tastes.embed_abouts(abouts)

    def taste(self, about: str, liked: Sequence[Paper], disliked: Sequence[Paper] = ()) -> Taste | None:
        """The taste of a description and liked / disliked papers (seeds, feedback) in this pool; made
        once per distinct combination (``Tastes.taste``)."""
        return self._tastes.taste(about, liked, disliked)

    @property
    def hashed(self) -> Any:
        """The papers' hashed word features, for readers' own models (``learner``): made once."""
        if self._hashed is None:
            self._hashed = features(self._texts())
        return self._hashed

    def likeness(self, taste: Taste, blend: Blend | None = None) -> npt.NDArray[np.float32]:
        """Each paper's likeness to a taste: its cosine in the Lexicon and in the model's space, blended."""
        share = (blend or self.blend).lexical
        out = self.space.papers @ taste.vector
        if taste.lexical is not None and share:
            out = share * taste.lexical + (1.0 - share) * out
        return np.asarray(out, dtype=np.float32)

    def select(
        self,
        profile: Profile,
        skip: Collection[int] = (),
        limit: int | None = None,
        taste: Taste | None = None,
        blend: Blend | None = None,
    ) -> tuple[list[Match], int]:
        """The best ``limit`` (default: all) matches not in ``skip`` (store refs already sent), and the count
        of all matches. Keywords that cannot match are ignored here; ``check_profile`` reports them. With a
        ``taste`` (not for the trending digest), papers are also chosen and ranked by meaning, as ``blend``
        (default: the index's) says.
        """
        matches, total, _ = self.ranked(profile, skip, limit, taste, blend, rest=0)
        return matches, total

    def ranked(
        self,
        profile: Profile,
        skip: Collection[int] = (),
        limit: int | None = None,
        taste: Taste | None = None,
        blend: Blend | None = None,
        *,
        rest: int = REST_KEPT,
        caps: Caps | None = None,
    ) -> tuple[list[Match], int, tuple[int, ...]]:
        """As ``select``, and the store refs of up to ``rest`` of the matches ``limit`` left out, best
        first: what a digest's page of all its matches lists. With ``caps`` (the most papers of each
        section, by its index in ``SECTIONS``), a section at its cap gives its room to the next best papers
        of the others (see ``fill``); those it left out lead ``rest``."""
        if taste is not None and not profile.trending:
            return self._select_hybrid(profile, skip, limit, taste, blend or self.blend, rest, caps)
        n = len(self.papers)
        # Only the trending digest takes every paper. A profile that is not trending takes what its usable
        # keywords match: none when it has no keyword that can match, nor a taste (seed papers not known
        # yet), rather than the trending papers under a reason they do not have.
        keywords, score, mask = self._keyword_scores(profile, matched_only=not profile.trending)
        self._leave_out(mask, skip)
        candidates = np.flatnonzero(mask)
        total = len(candidates)
        order_key = self._rank[candidates] - score[candidates].astype(np.int64) * n  # no ties: ranks differ
        if profile.upvotes and not profile.trending:  # upvotes weighed beside the keyword score
            top = max(int(score.max(initial=0)), 1)
            weighed = score[candidates] / top + profile.upvotes * self.popularity[candidates]
            order_key = np.argsort(np.lexsort((self._rank[candidates], -weighed)), kind="stable")
        left: npt.NDArray[np.intp] = candidates[:0]
        if caps is not None and limit is not None:
            ordered = candidates[np.argsort(order_key, kind="stable")]
            head = ordered[:LOOK_MAX]
            keep, cut = fill(self._sections(profile, head, keywords, hybrid=False), caps, limit)
            chosen, left = head[keep], np.concatenate([head[cut], ordered[LOOK_MAX:]])[:rest]
        elif limit is not None and limit < total and not rest:
            part = np.argpartition(order_key, limit)[:limit]
            chosen = candidates[part[np.argsort(order_key[part], kind="stable")]]
        else:
            ordered = candidates[np.argsort(order_key, kind="stable")]
            chosen, left = ordered[:limit], ordered[limit : limit + rest] if limit is not None else left
        reasons = self.reasons.keywords(keywords, chosen, profile)
        return (
            [
                Match(self.papers[pi], int(score[pi]), why)
                for pi, why in zip(chosen.tolist(), reasons, strict=True)
            ],
            total,
            self._refs(left),
        )

    def _sections(
        self, profile: Profile, positions: npt.NDArray[np.intp], keywords: list[str], *, hybrid: bool
    ) -> npt.NDArray[np.int8]:
        """Each paper's section (its index in ``SECTIONS``), as its reasons will say: by a followed author,
        else matching a keyword, else by meaning (``hybrid``) or trending."""
        otherwise = SECTION_OF["similar"] if hybrid else len(SECTIONS) - 1
        codes = np.full(len(positions), otherwise, dtype=np.int8)
        for kw in keywords:
            codes[self._vectors[kw][positions] > 0] = SECTION_OF["title"]
        if profile.authors:
            codes[self.authorship.score(profile.authors)[positions] > 0] = SECTION_OF["author"]
        return codes

    def _refs(self, positions: npt.NDArray[np.intp]) -> tuple[int, ...]:
        """The store refs of the papers at ``positions`` (papers not from the store have none)."""
        refs = self._ref_of[positions]
        return tuple(refs[refs > 0].tolist())

    def _leave_out(self, mask: npt.NDArray[np.bool_], skip: Collection[int]) -> None:
        """Clear ``mask`` for the papers whose store refs are in ``skip`` (already sent, or in flight)."""
        if skip:
            mask[[self._by_ref[r] for r in skip if r in self._by_ref]] = False

    def _keyword_scores(
        self, profile: Profile, matched_only: bool
    ) -> tuple[list[str], npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
        """(usable keywords, keyword score per paper (a followed author's paper scoring as a title hit),
        the papers still candidates: not excluded, and with ``matched_only`` matching a keyword or an
        author)."""
        n = len(self.papers)
        keywords = [kw for kw in dict.fromkeys(profile.keywords) if self.vector(kw) is not None]
        if keywords:
            score = self._vectors[keywords[0]].copy()
            for kw in keywords[1:]:
                score += self._vectors[kw]
        else:
            score = np.zeros(n, dtype=np.int32)
        if profile.authors:
            score = score + self.authorship.score(profile.authors)
        mask = score > 0 if matched_only else np.ones(n, dtype=bool)
        for ex in profile.exclude:
            ex_vec = self.vector(ex)
            if ex_vec is not None:
                mask &= ex_vec == 0
        if profile.categories:
            mask &= self.categories.narrowed(profile.categories)
        if profile.exclude_categories:
            mask &= ~self.categories.dropped(profile.exclude_categories)
        return keywords, score, mask

    def _select_hybrid(
        self,
        profile: Profile,
        skip: Collection[int],
        limit: int | None,
        taste: Taste,
        blend: Blend,
        rest: int,
        caps: Caps | None = None,
    ) -> tuple[list[Match], int, tuple[int, ...]]:
        keywords, score, mask = self._keyword_scores(profile, matched_only=False)
        likeness = self.likeness(taste, blend)
        mask &= (score > 0) | (likeness >= blend.similar_enough)
        self._leave_out(mask, skip)
        candidates = np.flatnonzero(mask)
        total = len(candidates)
        top = max(int(score.max(initial=0)), 1)
        matched = score[candidates]
        combined = (
            blend.keyword_bonus * (matched > 0) + blend.keyword_weight * matched / top + likeness[candidates]
        )
        if taste.learned is not None and blend.learned:
            combined = combined + blend.learned * taste.learned[candidates]
        if profile.upvotes:
            combined = combined + profile.upvotes * self.popularity[candidates]
        # Highest combined first; equal ones (rare with floats) by the usual rank.
        order = np.lexsort((self._rank[candidates], -combined))
        left: tuple[int, ...] = ()
        if limit is None:
            picked = order
        else:  # a digest keeps its variety: the papers most like those above them give way
            cap = math.ceil(limit * blend.reason_cap) if blend.reason_cap < 1 else None

            def reasons_of(head: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
                return self.reasons.main(keywords, head, taste)

            within = order
            if caps is not None:  # the papers within their sections' caps, best first, to choose among
                head = order[:LOOK_MAX]
                codes = self._sections(profile, candidates[head], keywords, hybrid=True)
                within = head[fill(codes, caps, len(head))[0]]
            # By paper position, so that only the few candidates variety looks at have their vectors read.
            everywhere = np.zeros(len(self.papers), dtype=np.float32)
            everywhere[candidates] = combined
            kept = with_variety(
                candidates[within],
                everywhere,
                self.space.papers,
                limit,
                blend.variety,
                reasons_of,
                cap,
                self.near,
            )
            picked = np.searchsorted(candidates, kept)  # back to candidates' numbering (they are sorted)
            picked = picked[np.lexsort((self._rank[candidates[picked]], -combined[picked]))]  # shown by score
            if rest and total > len(picked):
                taken = np.zeros(total, dtype=bool)
                taken[picked] = True
                left = self._refs(candidates[order[~taken[order]][:rest]])
        chosen = candidates[picked]
        return (
            [
                Match(self.papers[pi], value, why)
                for pi, value, why in zip(
                    chosen.tolist(),
                    combined[picked].tolist(),
                    self.reasons.hybrid(keywords, chosen, taste, profile),
                    strict=True,
                )
            ],
            total,
            left,
        )
