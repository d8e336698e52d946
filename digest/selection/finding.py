"""One sentence that says what a paper found: picked from its abstract, offline and deterministic.

Abstracts follow a pattern: what is known and missing, what the authors do, what they found. The picker
scores each sentence by the words results are reported in ("we show", "outperforms", "achieves", "up to
3x", "12%") against the words of background and plans ("however", "recent", "we propose", a link to the
code), with later sentences a little ahead (results come after methods), and keeps the best. The weights
were written from that pattern before any abstract was scored; ``bench/findings.py`` measures how often the
pick is a result sentence on abstracts labelled by hand. Computed once per paper when it is stored.
"""

from __future__ import annotations

import re

SENTENCE_MAX = 400  # characters of the sentence kept (a run-on "sentence" is cut at a word)
_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|et al|etc|vs|cf|Fig|Eq|approx|resp)\.", re.IGNORECASE)
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
_RESULT = re.compile(
    r"\b(we (show|find|found|demonstrate|observe|prove|establish|obtain|achieve|report)|results? (show|demonstrate"
    r"|indicate|suggest|reveal)|experiments? (show|demonstrate|reveal)|outperform\w*|surpass\w*|achiev\w*"
    r"|improv\w*|reduc\w*|speed-?ups?|faster|state-of-the-art|sota|significantly|consistently|up to"
    r"|accuracy|gains?|reveal\w*|leads? to|yield\w*|matches|exceed\w*)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+(\.\d+)?\s?(%|x\b|×|times\b|points?\b)|\b\d+(\.\d+)?\b")
_BACKGROUND = re.compile(
    r"\b(however|recent(ly)?|remains?|challeng\w*|increasingly|has become|have become|existing|prior work"
    r"|limited|suffer\w*|is crucial|are crucial|despite)\b",
    re.IGNORECASE,
)
_PLAN = re.compile(
    r"\b(we (propose|introduce|present|develop|design)|this paper|in this work|we study)\b", re.I
)
_LINK = re.compile(r"https?://|github|code (is|and \w+ are) (publicly )?available|will be released", re.I)


def sentences(abstract: str) -> list[str]:
    """The abstract's sentences (abbreviations such as "e.g." and "et al." do not end one).

    >>> sentences("We study X, e.g. Y. It works: 3x faster. Code: https://x.org.")
    ['We study X, e.g. Y.', 'It works: 3x faster.', 'Code: https://x.org.']
    """
    protected = _ABBREVIATIONS.sub(lambda m: m.group(0).replace(".", "\0"), " ".join(abstract.split()))
    return [s.replace("\0", ".").strip() for s in _SPLIT.split(protected) if s.strip()]


def score(sentence: str, position: float) -> float:
    """How much ``sentence`` reads as a finding; ``position`` is where it sits (0 first, 1 last)."""
    words = len(sentence.split())
    value = 2.0 * min(len(_RESULT.findall(sentence)), 3) + 1.0 * bool(_NUMBER.search(sentence))
    value -= 1.5 * min(len(_BACKGROUND.findall(sentence)), 2) + 1.0 * bool(_PLAN.search(sentence))
    value -= 4.0 * bool(_LINK.search(sentence)) + 2.0 * (words < 6)
    return value + 1.0 * position - 0.5 * (position == 0.0)


def key_finding(abstract: str) -> str:
    """The abstract's sentence that best says what was found ("" for an empty abstract).

    >>> key_finding("LLMs are slow. However, decoding remains costly. We propose X. X is 3x faster than"
    ...             " prior decoders on 4 benchmarks. Code is available at https://github.com/x.")
    'X is 3x faster than prior decoders on 4 benchmarks.'
    """
    found = sentences(abstract)
    if not found:
        return ""
    last = max(len(found) - 1, 1)
    best = max(range(len(found)), key=lambda i: (score(found[i], i / last), i))
    sentence = found[best]
    return sentence if len(sentence) <= SENTENCE_MAX else sentence[:SENTENCE_MAX].rsplit(" ", 1)[0] + "…"
