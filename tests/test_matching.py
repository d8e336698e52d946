"""Every matching rule, as a table over real seed titles and abstracts (plus a few written texts)."""

from __future__ import annotations

import itertools
import random
from datetime import date
from functools import cache

import pytest
from conftest import SAMPLES

from digest.email.entries import marked
from digest.errors import KeywordError
from digest.keywords import compile_keyword, match_spans
from digest.models import Paper, Profile
from digest.profiles import check_profile
from digest.selection.index import PaperIndex
from digest.sources.snapshot import parse_snapshot


@cache
def seeds() -> dict[str, Paper]:
    """The 375 distinct seed papers by title, each with a store-like ref."""
    out: dict[str, Paper] = {}
    for f in sorted(SAMPLES.glob("*.txt")):
        for p in parse_snapshot(f.read_text(encoding="utf-8"), source="seeds", today=date(2025, 11, 22)):
            out.setdefault(p.title, p)
    return {t: Paper(p.title, p.abstract, upvotes=p.upvotes, ref=i) for i, (t, p) in enumerate(out.items())}


def text_of(source: str) -> str:
    """``T:title`` -> that seed title; ``A:title`` -> that seed paper's abstract; else the text itself."""
    kind, _, title = source.partition(":")
    if kind == "T" and title in seeds():
        return title
    if kind == "A" and title in seeds():
        return seeds()[title].abstract
    assert kind not in ("T", "A"), f"not a seed title: {title}"
    return source


def matches(keyword: str, text: str) -> bool:
    return bool(match_spans(text, [keyword]))


HAMBURGER = "HAMburger: Accelerating LLM Inference via Token Smashing"  # its abstract says "storage"
CONNECTOME = "Learning dynamic representations of the functional connectome in neurobiological networks"
ALIGNRAG = "AlignRAG: An Adaptable Framework for Resolving Misalignments in Retrieval-Aware Reasoning of RAG"
M3VIT = "M^3ViT: Mixture-of-Experts Vision Transformer for Efficient Multi-task Learning with Model-Accelerator Co-design"
PHI = "φ-Decoding: Adaptive Foresight Sampling for Balanced Inference-Time Exploration and Exploitation"
BFS = "BFS-Prover: Scalable Best-First Tree Search for LLM-based Automatic Theorem Proving"
MOEFICATION = "MoEfication: Transformer Feed-forward Layers are Mixtures of Experts"

RULES = [
    # 1. words, not substrings
    ("1 words", "RAG", f"A:{HAMBURGER}", False),  # "storage"
    ("1 words", "RAG", f"T:{ALIGNRAG}", True),  # "... of RAG"; "AlignRAG" alone would not do
    ("1 words", "RAG", "AlignRAG: an adaptable framework", False),
    ("1 words", "GAN", f"A:{CONNECTOME}", False),  # "organized"
    ("1 words", "ViT", f"A:{CONNECTOME}", False),  # "activity"
    ("1 words", "ViT", "T:I-ViT: Integer-only Quantization for Efficient Vision Transformer Inference", True),
    ("1 words", "Rag", "Ragged tensors for batching", False),
    # 2. phrases, whatever separates the words
    (
        "2 phrases",
        "test-time scaling",
        "T:LIMOPro: Reasoning Refinement for Efficient and Effective Test-time Scaling",
        True,
    ),
    ("2 phrases", "test time scaling", "T:Video-T1: Test-Time Scaling for Video Generation", True),
    ("2 phrases", "Test-Time Scaling", "we study test-time-scaling here", True),
    (
        "2 phrases",
        "test-time scaling",
        "T:Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling Model Parameters",
        False,
    ),
    ("2 phrases", "test-time scaling", "test-time compute scaling", False),
    ("2 phrases", "Mixture-of-Experts", f"T:{M3VIT}", True),
    ("2 phrases", "mixture of experts", f"T:{M3VIT}", True),
    ("2 phrases", "Mixture-of-Experts", f"T:{MOEFICATION}", True),  # "Mixtures of Experts": plural
    ("2 phrases", "φ-Decoding", f"T:{PHI}", True),
    ("2 phrases", "φ decoding", f"T:{PHI}", True),
    ("2 phrases", "φ-Decoding", "T:Speculative Decoding for Multi-Sample Inference", False),
    # 3. case: insensitive, except words with a capital after the first letter
    (
        "3 case",
        "LLM",
        "T:Steering Knowledge Selection Behaviours in LLMs via SAE-Based Representation Engineering",
        True,
    ),
    ("3 case", "LLM", f"T:{BFS}", True),  # "LLM-based"
    ("3 case", "LLM-based", f"T:{BFS}", True),
    ("3 case", "LLM", "an llm-based tool", False),
    ("3 case", "llm", "T:Configurable Foundation Models: Building LLMs from a Modular Perspective", True),
    ("3 case", "MoE", f"T:{MOEFICATION}", False),  # "MoEfication" is another word
    ("3 case", "MoE", f"A:{MOEFICATION}", True),
    ("3 case", "MoE", "a moe layer", False),
    ("3 case", "LoRA", "we fine-tune with lora adapters", False),
    ("3 case", "LoRA", "we fine-tune with LoRAs", True),
    ("3 case", "transformer", "T:Energy-Based Transformers are Scalable Learners and Thinkers", True),
    # 4. plural and singular
    ("4 plurals", "transformer", "T:Can Transformers Reason in Fragments of Natural Language?", True),
    (
        "4 plurals",
        "agents",
        "T:Towards Automated Functional Equation Proving: A Benchmark Dataset and A Domain-Specific In-Context Agent",
        True,
    ),
    ("4 plurals", "agent", "T:Modeling Boundedly Rational Agents with Latent Inference Budgets", True),
    ("4 plurals", "query", "many queries", True),
    ("4 plurals", "box", "bounding boxes", True),
    ("4 plurals", "agent", "agentic workflows", False),
    # 5. prefix wildcard
    (
        "5 prefix",
        "quantiz*",
        "T:I-ViT: Integer-only Quantization for Efficient Vision Transformer Inference",
        True,
    ),
    ("5 prefix", "quantiz*", "A:Scaling Laws for Precision", True),
    ("5 prefix", "quantiz*", "quantized and quantizing", True),
    (
        "5 prefix",
        "quantize",
        "T:I-ViT: Integer-only Quantization for Efficient Vision Transformer Inference",
        False,
    ),
    ("5 prefix", "test-time scal*", "T:Video-T1: Test-Time Scaling for Video Generation", True),
    (
        "5 prefix",
        "ViT*",
        "T:I-ViT: Integer-only Quantization for Efficient Vision Transformer Inference",
        True,
    ),
    ("5 prefix", "ViT*", "a vitamin study", False),
    # 7. other characters are literal
    ("7 literal", "C++", "a library written in C++ and Rust", True),
    ("7 literal", "C++", "see Appendix C for details", False),
    ("7 literal", "C#", "ported from C++", False),
    ("7 literal", ".NET", "runs on .NET and Java", True),
    ("7 literal", ".NET", "a neural net", False),
    ("7 literal", "a.*b", "a.*b", True),  # no regex: the words a and b in a row
    ("7 literal", "a.*b", "aXXb", False),
    ("7 literal", "(RAG)", "retrieval-augmented generation (RAG) helps", True),
    ("7 literal", "(RAG)", "RAG helps", False),
]


@pytest.mark.parametrize(
    ("rule", "keyword", "source", "expected"), RULES, ids=[f"{r[0]}:{r[1]}:{r[3]}" for r in RULES]
)
def test_matching_rules(rule: str, keyword: str, source: str, expected: bool) -> None:
    assert matches(keyword, text_of(source)) is expected


@pytest.mark.parametrize("bad", ["", "   ", "*", "***", "(", ".*", "--", "!!"])
def test_keywords_that_can_never_match_are_refused(bad: str) -> None:
    with pytest.raises(KeywordError):
        compile_keyword(bad)
    assert check_profile(Profile((bad,))) and check_profile(Profile(("ok",), (bad,)))
    assert match_spans("anything at all (.*) --", [bad]) == []  # never raises at match time either


def test_no_input_makes_matching_slow() -> None:
    """A regex engine would backtrack on patterns like these over 20,000 words (for longer than the test
    run); token comparison is linear and takes milliseconds. The bound is 100 times what it needs here."""
    import threading

    text = "a " * 20_000 + "b"
    results: dict[str, list[tuple[int, int]]] = {}
    keywords = ("a a a a a a a a a a c", "a* a* a* c", "(a+)+$", "a" * 500 + "*")

    def match_all() -> None:
        for kw in keywords:
            results[kw] = match_spans(text, [kw])

    worker = threading.Thread(target=match_all, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "matching did not finish in 10 s: it is not linear in the text"
    assert all(results[kw] == [] for kw in keywords if kw != "a* a* a* c")


def test_highlight_spans_cover_the_matched_words() -> None:
    title = "Rethinking Fine-Tuning when Scaling Test-Time Compute: Limiting Confidence Improves Mathematical Reasoning"
    assert marked(title, ["test-time compute", "reasoning"]) == [
        ("Rethinking Fine-Tuning when Scaling ", False),
        ("Test-Time Compute", True),
        (": Limiting Confidence Improves Mathematical ", False),
        ("Reasoning", True),
    ]
    assert marked("Written in C++ today", ["C++"]) == [
        ("Written in ", False),
        ("C++", True),
        (" today", False),
    ]


def _index() -> PaperIndex:
    return PaperIndex(seeds().values())


def test_exclusions_drop_papers() -> None:
    index = _index()
    with_all, total = index.select(Profile(("speculative decoding",)))
    without, total_without = index.select(Profile(("speculative decoding",), ("multi-sample",)))
    dropped = {m.paper.title for m in with_all} - {m.paper.title for m in without}
    assert dropped == {"Speculative Decoding for Multi-Sample Inference"}
    assert total - total_without == 1


def test_score_rank_and_reasons() -> None:
    index = _index()
    found, total = index.select(Profile(("speculative decoding", "test-time scaling", "quantiz*")))
    assert total == len(found) > 20
    scores = [m.score for m in found]
    assert scores == sorted(scores, reverse=True)
    for m in found:
        assert m.score == sum(2 if r.where == "title" else 1 for r in m.reasons)
        for r in m.reasons:
            in_title = matches(r.keyword, m.paper.title)
            assert (r.where == "title") is in_title
            assert in_title or matches(r.keyword, m.paper.abstract)
    for a, b in itertools.pairwise(found):
        if a.score == b.score:
            assert ((a.paper.upvotes or 0), b.paper.title.casefold()) >= (
                (b.paper.upvotes or 0),
                a.paper.title.casefold(),
            )


def test_cap_returns_the_best_and_counts_the_rest() -> None:
    index = _index()
    everything, total = index.select(Profile(("LLM",)))
    top, total_capped = index.select(Profile(("LLM",)), limit=7)
    assert total == total_capped == len(everything) > 100
    assert [m.paper.title for m in top] == [m.paper.title for m in everything[:7]]


def test_already_sent_papers_are_skipped() -> None:
    index = _index()
    first, _ = index.select(Profile(("reasoning",)), limit=5)
    second, _ = index.select(
        Profile(("reasoning",)), {m.paper.ref for m in first if m.paper.ref is not None}, 5
    )
    assert not {m.paper.title for m in first} & {m.paper.title for m in second}


def test_trending_is_every_paper_by_upvotes() -> None:
    index = _index()
    found, total = index.select(Profile((), (), 10), limit=10)
    assert total == 375
    ups = [m.paper.upvotes or 0 for m in found]
    assert ups == sorted(ups, reverse=True) and ups[0] == 10
    assert all(m.score == 0 and m.reasons == () for m in found)


def test_selection_is_deterministic_whatever_the_input_order() -> None:
    papers = list(seeds().values())
    profile = Profile(("reasoning", "LLM", "inference"), ("survey",), 20)
    expected = [m.paper.title for m in PaperIndex(papers).select(profile, limit=20)[0]]
    for seed in range(3):
        shuffled = papers[:]
        random.Random(seed).shuffle(shuffled)
        assert [m.paper.title for m in PaperIndex(shuffled).select(profile, limit=20)[0]] == expected


def test_invalid_keywords_are_ignored_by_select_not_raised() -> None:
    found, _ = _index().select(Profile(("***", "speculative decoding")))
    assert found and all(m.matched == ("speculative decoding",) for m in found)
