"""Which papers a subscriber gets, and why: pure, deterministic, shared work done once per run.

A run builds one ``PaperIndex`` over the papers in the lookback window: each paper is tokenised once, and
each distinct keyword is looked up once (results cached), so the cost grows with papers + distinct keywords
+ subscribers rather than with their product.

Matching (see the README's "Keyword profiles" for the full table):

- words, not substrings: text and keyword are split into runs of letters and digits; "RAG" never matches
  "storage"; a phrase matches consecutive words whatever separates them ("test-time scaling");
- case-insensitive, except a word with a capital after its first letter ("LLM", "MoE"), which matches only
  that spelling (and its plural "s");
- a word also matches its regular plural or singular (-s, -es, -ies); a trailing ``*`` matches any
  continuation of the last word ("quantiz*");
- score: per matched keyword 2 if in the title, else 1 in the abstract; rank by score, upvotes, title;
- no keywords: the trending digest, every candidate ranked by upvotes.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from digest.models import Match, Paper, Profile, Reason, Where

_WORD = re.compile(r"[^\W_]+")
TITLE, ABSTRACT = 0, 1
_FIELD_NAME: tuple[Where, Where] = ("title", "abstract")


def is_cased(word: str) -> bool:
    """A word whose case matters: a capital after its first letter.

    >>> [is_cased(w) for w in ("LLM", "MoE", "LoRA", "Transformer", "rag")]
    [True, True, True, False, False]
    """
    return any(c.isupper() for c in word[1:])


def singular(word: str) -> str:
    """The regular English singular of a folded word, so plural and singular meet.

    >>> [singular(w) for w in ("transformers", "queries", "boxes", "classes", "agent", "analysis", "loss")]
    ['transformer', 'query', 'box', 'class', 'agent', 'analysis', 'loss']
    """
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def cased_form(word: str) -> str:
    """A case-sensitive word without its plural "s": ``"LLMs"`` -> ``"LLM"``."""
    return word[:-1] if len(word) > 2 and word.endswith("s") and is_cased(word[:-1]) else word


@dataclass(frozen=True, slots=True)
class Token:
    raw: str
    folded: str  # casefolded, for prefixes
    ci: str  # casefolded singular, for case-insensitive words
    cs: str  # case kept, plural "s" dropped, for case-sensitive words


def tokenize(text: str) -> list[Token]:
    """Words of ``text`` in order, each in the forms matching compares.

    >>> [t.ci for t in tokenize("Test-Time Scaling of LLMs")]
    ['test', 'time', 'scaling', 'of', 'llm']
    """
    return [_token(raw) for raw in _WORD.findall(text)]


@functools.lru_cache(maxsize=1 << 17)
def _token(raw: str) -> Token:
    """Tokens repeat a lot across abstracts; each distinct spelling is worked out once."""
    folded = raw.casefold()
    return Token(raw, folded, singular(folded), cased_form(raw))


@dataclass(frozen=True, slots=True)
class KeywordWord:
    form: str
    cased: bool
    prefix: bool = False

    def matches(self, tok: Token) -> bool:
        if self.prefix:
            return tok.raw.startswith(self.form) if self.cased else tok.folded.startswith(self.form)
        return (tok.cs if self.cased else tok.ci) == self.form


@dataclass(frozen=True, slots=True)
class Keyword:
    """A compiled keyword: its words in order, the last maybe a prefix."""

    text: str
    words: tuple[KeywordWord, ...]


class KeywordError(ValueError):
    """A keyword that can never match; the message says why."""


def compile_keyword(text: str) -> Keyword:
    """Parse a keyword as written in a profile.

    >>> [(w.form, w.cased, w.prefix) for w in compile_keyword("quantiz*").words]
    [('quantiz', False, True)]
    >>> [w.form for w in compile_keyword("Test-Time Scaling").words]
    ['test', 'time', 'scaling']
    """
    stripped = text.strip()
    if not stripped:
        raise KeywordError("the keyword is empty")
    prefix = stripped.endswith("*")
    raw_words = _WORD.findall(stripped.rstrip("*") if prefix else stripped)
    if not raw_words:
        raise KeywordError("the keyword has no letters or digits")
    words = []
    for i, raw in enumerate(raw_words):
        last_prefix = prefix and i == len(raw_words) - 1
        cased = is_cased(raw)
        form = (
            (raw if cased else raw.casefold())
            if last_prefix
            else cased_form(raw)
            if cased
            else singular(raw.casefold())
        )
        words.append(KeywordWord(form, cased, last_prefix))
    return Keyword(text, tuple(words))


def check_profile(profile: Profile) -> list[tuple[str, str]]:
    """Every (keyword, problem) in a profile; empty when the profile is usable."""
    problems = []
    for kw in (*profile.keywords, *profile.exclude):
        try:
            compile_keyword(kw)
        except KeywordError as exc:
            problems.append((kw, str(exc)))
    return problems


class PaperIndex:
    """The run's candidate pool, tokenised once, with each distinct keyword evaluated once.

    ``hits(keyword)`` maps paper position to where it matched best (title beats abstract).
    """

    def __init__(self, papers: Iterable[Paper]) -> None:
        self.papers: list[Paper] = list(papers)
        self._fields: list[tuple[list[Token], list[Token]]] = []
        self._ci: dict[str, list[tuple[int, int, int]]] = {}
        self._cs: dict[str, list[tuple[int, int, int]]] = {}
        self._folded: dict[str, list[tuple[int, int, int]]] = {}
        for pi, paper in enumerate(self.papers):
            fields = (tokenize(paper.title), tokenize(paper.abstract))
            self._fields.append(fields)
            for fi, tokens in enumerate(fields):
                for pos, tok in enumerate(tokens):
                    where = (pi, fi, pos)
                    self._ci.setdefault(tok.ci, []).append(where)
                    self._cs.setdefault(tok.cs, []).append(where)
                    self._folded.setdefault(tok.folded, []).append(where)
        self._vocab = sorted(self._folded)
        self._cache: dict[str, dict[int, Where]] = {}

    def _starts(self, first: KeywordWord) -> Iterable[tuple[int, int, int]]:
        """Positions where the keyword's first word matches."""
        if not first.prefix:
            return (self._cs if first.cased else self._ci).get(first.form, ())
        probe = first.form.casefold()
        lo = bisect.bisect_left(self._vocab, probe)
        found: list[tuple[int, int, int]] = []
        for folded in self._vocab[lo:]:
            if not folded.startswith(probe):
                break
            found.extend(self._folded[folded])
        if first.cased:
            found = [w for w in found if first.matches(self._fields[w[0]][w[1]][w[2]])]
        return found

    def hits(self, keyword: Keyword) -> dict[int, Where]:
        cached = self._cache.get(keyword.text)
        if cached is not None:
            return cached
        best: dict[int, int] = {}
        rest = keyword.words[1:]
        for pi, fi, pos in self._starts(keyword.words[0]):
            tokens = self._fields[pi][fi]
            if pos + len(rest) >= len(tokens):
                continue
            if all(w.matches(tokens[pos + 1 + k]) for k, w in enumerate(rest)):
                best[pi] = min(best.get(pi, fi), fi)
        result = {pi: _FIELD_NAME[fi] for pi, fi in best.items()}
        self._cache[keyword.text] = result
        return result

    def select(self, profile: Profile, skip: Collection[int] = ()) -> list[Match]:
        """Every matching paper not in ``skip`` (store refs already sent), best first.

        Keywords that do not compile are ignored here; ``check_profile`` reports them.
        """
        excluded: set[int] = set()
        for text in profile.exclude:
            kw = _compiled(text)
            if kw:
                excluded.update(self.hits(kw))
        reasons: dict[int, list[Reason]] = {}
        if profile.trending:
            reasons = {pi: [] for pi in range(len(self.papers))}
        for text in dict.fromkeys(profile.keywords):
            kw = _compiled(text)
            if kw:
                for pi, where in self.hits(kw).items():
                    reasons.setdefault(pi, []).append(Reason(text, where))
        matches = []
        for pi, why in reasons.items():
            paper = self.papers[pi]
            if pi in excluded or (paper.ref is not None and paper.ref in skip):
                continue
            score = sum(2 if r.where == "title" else 1 for r in why)
            matches.append(Match(paper, score, tuple(why)))
        matches.sort(key=lambda m: (-m.score, -(m.paper.upvotes or 0), m.paper.title.casefold(), m.paper.key))
        return matches


def _compiled(text: str) -> Keyword | None:
    try:
        return compile_keyword(text)
    except KeywordError:
        return None
