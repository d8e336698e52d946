"""The keyword language: how a profile's keywords and exclusions are read and matched. Pure.

Matching rules (the README's "Keyword profiles" has the table with examples):

1. Words, not substrings: text and keyword are split into words (runs of Unicode letters and digits); a
   keyword matches whole words only. "RAG" never matches "storage" or "Ragged".
2. Phrases match consecutive words, whatever separates them: "test-time scaling" matches "Test-Time
   Scaling" and "test time scaling", not "test-time compute scaling".
3. Case-insensitive, except a word with a capital after its first letter ("RAG", "LLM", "MoE", "LoRA"),
   which matches only that spelling, plus a plural "s" ("LLMs").
4. A word also matches its regular plural or singular (-s, -es, -ies).
5. A trailing ``*`` matches any continuation of the last word: "quantiz*".
6. Exclusions use the same syntax; any exclusion match drops the paper.
7. Any other character is literal: "C++" needs "++" right after the word "C"; ".NET" needs the dot. Nothing
   is a regex and no input makes matching slow: it is token comparison, linear in the text.
8. Score: per matched keyword 2 if in the title, else 1 if in the abstract (``SCORE``).

``selection.index`` evaluates keywords over a run's papers at once; ``match_spans`` finds them in one text
(what the email highlights).
"""

from __future__ import annotations

import functools
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass

from digest.authors import name_of, same_person
from digest.errors import KeywordError
from digest.models import Match, Paper, Profile, Reason, Where, in_category

_WORD = re.compile(r"[^\W_]+")
KEYWORD_MAX = 100  # characters in one keyword
TITLE, ABSTRACT = 0, 1
FIELD_NAME: tuple[Where, Where] = ("title", "abstract")
SCORE = (2, 1)  # a keyword in the title, in the abstract


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


@functools.lru_cache(maxsize=1 << 17)
def _token(raw: str) -> Token:
    """Words repeat a lot across abstracts; each distinct spelling is worked out once."""
    folded = raw.casefold()
    return Token(raw, folded, singular(folded), cased_form(raw))


@dataclass(frozen=True, slots=True)
class Field:
    """A text's words, with where each starts and ends (for literals and highlighting)."""

    text: str
    tokens: list[Token]
    starts: array[int]
    ends: array[int]


def tokenize(text: str) -> Field:
    """Words of ``text`` in order, each in the forms matching compares.

    >>> [t.ci for t in tokenize("Test-Time Scaling of LLMs").tokens]
    ['test', 'time', 'scaling', 'of', 'llm']
    """
    tokens, starts, ends = [], array("I"), array("I")
    for m in _WORD.finditer(text):
        tokens.append(_token(m.group()))
        starts.append(m.start())
        ends.append(m.end())
    return Field(text, tokens, starts, ends)


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
    """A compiled keyword: its words in order (the last maybe a prefix), and literal text around them."""

    text: str
    words: tuple[KeywordWord, ...]
    lead: str = ""  # literal characters right before the first word: "." of ".NET"
    trail: str = ""  # literal characters right after the last word: "++" of "C++"

    def match_at(self, f: Field, pos: int) -> bool:
        """Whether the keyword matches ``f``'s words starting at word ``pos``."""
        last = pos + len(self.words) - 1
        if last >= len(f.tokens):
            return False
        if not all(w.matches(f.tokens[pos + k]) for k, w in enumerate(self.words)):
            return False
        if self.lead and not f.text[f.ends[pos - 1] if pos else 0 : f.starts[pos]].endswith(self.lead):
            return False
        if self.trail:
            after_end = f.starts[last + 1] if last + 1 < len(f.tokens) else len(f.text)
            if not f.text[f.ends[last] : after_end].startswith(self.trail):
                return False
        return True


def compile_keyword(text: str) -> Keyword:
    """Parse a keyword as written in a profile.

    >>> [(w.form, w.cased, w.prefix) for w in compile_keyword("quantiz*").words]
    [('quantiz', False, True)]
    >>> [w.form for w in compile_keyword("Test-Time Scaling").words]
    ['test', 'time', 'scaling']
    >>> k = compile_keyword("C++"); (k.words[0].form, k.trail)
    ('c', '++')
    """
    stripped = text.strip()
    if not stripped:
        raise KeywordError("the keyword is empty")
    if len(stripped) > KEYWORD_MAX:
        raise KeywordError(f"the keyword is longer than {KEYWORD_MAX} characters; use a shorter phrase")
    prefix = stripped.endswith("*")
    body = stripped[:-1] if prefix else stripped
    found = list(_WORD.finditer(body))
    if not found:
        raise KeywordError("the keyword has no letters or digits")
    words = []
    for i, m in enumerate(found):
        raw = m.group()
        cased = is_cased(raw)
        if prefix and i == len(found) - 1:
            words.append(KeywordWord(raw if cased else raw.casefold(), cased, True))
        else:
            words.append(KeywordWord(cased_form(raw) if cased else singular(raw.casefold()), cased))
    lead = body[: found[0].start()]
    trail = "" if prefix else body[found[-1].end() :]
    return Keyword(text, tuple(words), lead, trail)


@functools.lru_cache(maxsize=1 << 16)
def compiled(text: str) -> Keyword | None:
    """``compile_keyword`` once per distinct text; None for a keyword that cannot match."""
    try:
        return compile_keyword(text)
    except KeywordError:
        return None


def match_spans(text: str, keywords: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans of ``text`` that the keywords match, merged and in order: what to highlight.

    >>> match_spans("Speculative decoding, fast speculative  decoding.", ["speculative decoding"])
    [(0, 20), (27, 48)]
    """
    spans = [span for text_kw in keywords for span in _keyword_spans(text, text_kw)]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@functools.lru_cache(maxsize=1 << 12)
def _tokenized(text: str) -> Field:
    """``tokenize``, cached: a run highlights the same titles and abstracts for many emails."""
    return tokenize(text)


@functools.lru_cache(maxsize=1 << 15)
def _keyword_spans(text: str, text_kw: str) -> tuple[tuple[int, int], ...]:
    kw = compiled(text_kw)
    if kw is None:
        return ()
    f = _tokenized(text)
    return tuple(
        (f.starts[pos] - len(kw.lead), f.ends[pos + len(kw.words) - 1] + len(kw.trail))
        for pos in range(len(f.tokens))
        if kw.match_at(f, pos)
    )


def explain(paper: Paper, profile: Profile) -> Match:
    """A paper's score and reasons under a profile, without an index (a stored digest being resent): its
    followed authors (as the paper writes them), then the keywords it matches and where."""
    reasons = [Reason(written, "author") for written in followed_in(paper, profile.authors)]
    for text in dict.fromkeys(profile.keywords):
        if match_spans(paper.title, [text]):
            reasons.append(Reason(text, "title"))
        elif match_spans(paper.abstract, [text]):
            reasons.append(Reason(text, "abstract"))
    score = sum(SCORE[0] if r.where in ("title", "author") else SCORE[1] for r in reasons)
    named = next((c for p in profile.categories if (c := in_category(paper.categories, p)) is not None), None)
    return Match(paper, score, tuple(reasons) + ((Reason(named, "category"),) if named else ()))


def followed_in(paper: Paper, followed: tuple[str, ...]) -> list[str]:
    """The ``followed`` authors among ``paper``'s, as the paper writes them.

    >>> followed_in(Paper("T", "A", authors=("Yann LeCun", "Ana Muller")), ("A. Müller",))
    ['Ana Muller']
    """
    wanted = [n for n in (name_of(f) for f in followed) if n is not None]
    return [
        w for w in paper.authors if (n := name_of(w)) is not None and any(same_person(f, n) for f in wanted)
    ]
