"""The benchmarks' inputs, made the same way every time (seeded): papers, days and subscribers.

- ``seed_papers()``: the 375 distinct papers of the bundled seed listings (config/samples).
- ``big_day(n)``: an ``n``-paper day made by combining the seed papers' titles and abstracts (the first
  half of one title with the second half of another; the first sentences of one abstract with the last of
  another), so its vocabulary, lengths and keyword hits look like a real day's.
- ``make_profiles(n)`` / ``subscribers(n)``: 1-6 keywords from a fixed vocabulary, a cap of 20, one in ten
  with an exclusion.
"""

from __future__ import annotations

import random
import re
from datetime import date
from pathlib import Path

from digest.models import Paper, Profile, Subscriber
from digest.sources.snapshot import parse_snapshot

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "config" / "samples"
DAY = date(2025, 11, 22)
VOCABULARY = [
    "speculative decoding", "test-time scaling", "RAG", "quantization", "LLM", "Mixture-of-Experts", "agents",
    "reinforcement learning", "diffusion", "Bayesian inference", "transformer", "reasoning", "benchmark",
    "KV cache", "distillation", "vision", "tensor", "chain-of-thought", "retrieval", "pruning", "MoE", "ViT",
    "quantiz*", "sparse attention", "long context", "reward model", "alignment", "math", "code generation",
    "multimodal", "planning", "graph neural network", "Gaussian process", "variational inference", "LoRA",
    "in-context learning", "tokenizer", "scaling laws", "inference", "verification",
]  # fmt: skip
EXCLUDES = ["survey", "benchmark", "vision", "medical"]


def seed_papers() -> list[Paper]:
    """The distinct papers of the seed listings, each with a ref as the store would give it."""
    seen: dict[str, Paper] = {}
    for f in sorted(SAMPLES.glob("*.txt")):
        for p in parse_snapshot(f.read_text(encoding="utf-8"), source="seeds", today=DAY):
            seen.setdefault(p.key, p)
    return [
        Paper(**{**{s: getattr(p, s) for s in Paper.__slots__}, "ref": i})
        for i, p in enumerate(seen.values())
    ]


def _halves(text: str) -> tuple[str, str]:
    words = text.split()
    mid = max(1, len(words) // 2)
    return " ".join(words[:mid]), " ".join(words[mid:])


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def big_day(n: int, seed: int = 5) -> list[tuple[str, str, int]]:
    """``n`` distinct (title, abstract, upvotes) made from pairs of seed papers."""
    papers = seed_papers()
    rng = random.Random(seed)
    out: dict[str, tuple[str, str, int]] = {}
    while len(out) < n:
        a, b = rng.sample(papers, 2)
        title = f"{_halves(a.title)[0]} {_halves(b.title)[1]}"
        sa, sb = _sentences(a.abstract), _sentences(b.abstract)
        abstract = " ".join(sa[: max(1, len(sa) // 2)] + sb[len(sb) // 2 :])
        out.setdefault(title.casefold(), (title, abstract, rng.randint(0, 60)))
    return list(out.values())


def write_day(folder: Path, papers: list[tuple[str, str, int]], per_file: int = 500) -> Path:
    """The papers as listing snapshots (title, abstract, "·", date and upvotes), ``per_file`` a file."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(papers), per_file):
        lines = ["Daily Papers"]
        for title, abstract, upvotes in papers[i : i + per_file]:
            lines += [title, abstract, "·", f"{DAY:%b} {DAY.day} {upvotes}"]
        (folder / f"day_{i // per_file:03d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


FIELDS = ["efficient", "robust", "scalable", "theory of", "evaluation of", "data for", "training", "serving"]


def make_profiles(n: int, seed: int = 42, hybrid: bool = False) -> list[Profile]:
    """Keyword profiles; ``hybrid``: each also has its own ``about`` (a sentence drawn from the vocabulary,
    different for nearly everyone: the costly case, nothing shared) and 1-2 seed papers (seed titles)."""
    rng = random.Random(seed)
    titles = [p.title for p in seed_papers()] if hybrid else []
    out = []
    for _ in range(n):
        keywords = tuple(rng.sample(VOCABULARY, rng.randint(1, 6)))
        exclude = (rng.choice(EXCLUDES),) if rng.random() < 0.1 else ()
        if hybrid:
            words = rng.sample(VOCABULARY, rng.randint(3, 6))
            about = f"{rng.choice(FIELDS)} {words[0]}: {', '.join(words[1:])}"
            out.append(Profile(keywords, exclude, 20, about, tuple(rng.sample(titles, rng.randint(1, 2)))))
        else:
            out.append(Profile(keywords, exclude, 20))
    return out


def subscribers(n: int, seed: int = 42, hybrid: bool = False) -> list[Subscriber]:
    profiles = make_profiles(n, seed, hybrid)
    return [Subscriber(f"user{i:06d}@example.org", "", p) for i, p in enumerate(profiles)]
