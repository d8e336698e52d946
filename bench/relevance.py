"""How well profiles find a topic's papers, on the labelled seed papers.

    .venv/bin/python bench/relevance.py [--model tfidf|NAME-OR-PATH] [--labels ../shared/relevance/labels.json]

``labels.json`` labels the 375 seed papers (config/samples) by topic, with each topic's definition. For each
topic this ranks the 375 papers with the real selection code (``PaperIndex.select``) under four profiles:

(a) keywords a researcher would type for the topic (below, written from the topic's name and definition);
(b) 3 liked papers of the topic as seeds (5 fixed random draws; the seeds themselves are left out of the
    ranking and of the relevant set, as a reader's own papers would be);
(c) ``about``: the topic's definition as the reader's description;
(d) all combined (the same 5 draws).

and prints precision@10, recall@20 and average precision (over the whole ranking: a relevant paper the
profile never chooses counts as missed) per topic and their means. "keywords, same papers" is (a) with
each draw's seeds left out too: the fair baseline for (b) and (d). The labels are read here only, to score;
the selection never sees them.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import replace
from pathlib import Path

from synthetic import REPO, seed_papers

from digest.models import Paper, Profile, normalise_title
from digest.selection.index import PaperIndex
from digest.selection.semantic import make_model

LABELS = REPO.parent / "shared" / "relevance" / "labels.json"
DRAWS, LIKED = 5, 3
# (a): what a researcher following the topic would type. Written from each topic's name and definition.
KEYWORDS = {
    "test-time-compute": [
        "test-time scaling", "test-time compute", "inference-time scaling", "best-of-N",
        "self-consistency", "verifier", "reward model", "thinking tokens",
    ],
    "math-theorem": [
        "theorem proving", "mathematical reasoning", "math reasoning", "Lean", "formal proof",
        "math word problems", "olympiad",
    ],
    "mixture-of-experts": ["mixture-of-experts", "MoE", "expert routing"],
    "diffusion-generation": [
        "diffusion", "flow matching", "image generation", "video generation", "3D generation",
        "text-to-image",
    ],
    "causal": ["causal inference", "causal discovery", "counterfactual", "identifiability"],
    "privacy-security": [
        "differential privacy", "jailbreak", "adversarial", "membership inference", "privacy", "backdoor",
    ],
}  # fmt: skip


def scores(ranked: list[int], relevant: set[int]) -> tuple[float, float, float]:
    """(precision@10, recall@20, average precision) of a ranking (refs) against the relevant refs.

    >>> scores([1, 2, 3], {1, 3, 4})
    (0.2, 0.6666666666666666, 0.5555555555555555)
    """
    p10 = sum(r in relevant for r in ranked[:10]) / 10
    r20 = sum(r in relevant for r in ranked[:20]) / len(relevant)
    hits, total = 0, 0.0
    for k, r in enumerate(ranked, 1):
        if r in relevant:
            hits += 1
            total += hits / k
    return p10, r20, total / len(relevant)


def ranking(index: PaperIndex, profile: Profile, liked: list[Paper]) -> list[int]:
    """The refs ``profile`` chooses, best first, leaving out the liked papers."""
    taste = index.taste(profile.about, liked) if (profile.about or liked) else None
    skip = {p.ref for p in liked if p.ref is not None}
    matches, _ = index.select(profile, skip, taste=taste)
    return [m.paper.ref for m in matches if m.paper.ref is not None]


def over_draws(
    index: PaperIndex, draws: list[list[Paper]], relevant: set[int], base: Profile, liked: bool
) -> tuple[float, float, float]:
    """The mean scores of ``base`` over the draws, each draw's papers as seeds if ``liked``, and left out
    of the ranking and of the relevant set either way."""
    rows = []
    for draw in draws:
        seeds = draw if liked else []
        profile = replace(base, seeds=tuple(p.title for p in seeds))
        left_out = {p.ref for p in draw if p.ref is not None}
        ranked = [r for r in ranking(index, profile, seeds) if r not in left_out]
        rows.append(scores(ranked, relevant - left_out))
    return mean(rows)


def mean(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return (
        statistics.fmean(r[0] for r in rows),
        statistics.fmean(r[1] for r in rows),
        statistics.fmean(r[2] for r in rows),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tfidf")
    ap.add_argument("--labels", type=Path, default=LABELS)
    args = ap.parse_args()
    data = json.loads(args.labels.read_text(encoding="utf-8"))
    papers = seed_papers()
    by_title = {normalise_title(p.title): p for p in papers}
    topics_of: dict[int, set[str]] = {}
    for entry in data["papers"]:
        paper = by_title[normalise_title(entry["title"])]
        assert paper.ref is not None
        topics_of[paper.ref] = set(entry["topics"])
    index = PaperIndex(papers, make_model(args.model))
    results: dict[str, dict[str, tuple[float, float, float]]] = {}
    for code, topic in data["topics"].items():
        name = topic["name"]
        relevant = {ref for ref, ts in topics_of.items() if code in ts}
        pool = sorted(relevant)
        rng = random.Random(f"{name}-draws")
        draws = [[papers[i] for i in rng.sample(pool, LIKED)] for _ in range(DRAWS)]
        keywords = tuple(KEYWORDS[name])

        results[name] = {
            "keywords": scores(ranking(index, Profile(keywords), []), relevant),
            "keywords, same papers": over_draws(index, draws, relevant, Profile(keywords), False),
            "3 liked papers": over_draws(index, draws, relevant, Profile(), True),
            "about": scores(ranking(index, Profile(about=topic["definition"]), []), relevant),
            "combined": over_draws(
                index, draws, relevant, Profile(keywords, about=topic["definition"]), True
            ),
        }
    kinds = ["keywords", "keywords, same papers", "3 liked papers", "about", "combined"]
    print(f"model: {args.model}; {len(papers)} papers, {len(results)} topics; P@10 / R@20 / AP\n")
    print("| topic (relevant papers) | " + " | ".join(kinds) + " |")
    print("| --- | " + " | ".join("---:" for _ in kinds) + " |")
    sizes = {t["name"]: sum(code in ts for ts in topics_of.values()) for code, t in data["topics"].items()}
    for name, row in results.items():
        cells = " | ".join("{:.2f} / {:.2f} / {:.2f}".format(*row[k]) for k in kinds)
        print(f"| {name} ({sizes[name]}) | {cells} |")
    means = {k: mean([row[k] for row in results.values()]) for k in kinds}
    print(
        "| **mean** | " + " | ".join("**{:.2f} / {:.2f} / {:.2f}**".format(*means[k]) for k in kinds) + " |"
    )
    worse = [
        name
        for name, row in results.items()
        if row["combined"][2] < row["keywords, same papers"][2]
        or row["combined"][0] < row["keywords, same papers"][0]
    ]
    print(
        f"\ncombined: mean AP {means['combined'][2]:.3f} (target >= 0.75), mean P@10 {means['combined'][0]:.3f} "
        f"(target >= 0.85); topics where combined is below keywords on the same papers: {worse or 'none'}"
    )


if __name__ == "__main__":
    main()
