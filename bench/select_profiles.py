"""Selection speed: N synthetic profiles over the 375 seed papers, beside the straightforward loop.

    .venv/bin/python bench/select_profiles.py            # N = 1,000 / 10,000 / 100,000
    .venv/bin/python bench/select_profiles.py 1000 5000

Profiles have 1-6 keywords drawn (seeded) from a fixed vocabulary, a cap of 20, and one in ten an
exclusion. "digest" is `PaperIndex` (tokenise once, each distinct keyword once) including building the
index; "loop" is the straightforward per-subscriber regex of every keyword over every paper, the way most
digest scripts do it, timed on a sample of subscribers (it is too slow to run 100,000) and reported per
1,000 subscribers on the same input.
"""

from __future__ import annotations

import re
import sys
import time

from synthetic import VOCABULARY, make_profiles, seed_papers

from digest.models import Paper, Profile
from digest.selection.index import PaperIndex


def straightforward(papers: list[Paper], profile: Profile) -> list[tuple[int, int, str]]:
    """The usual script: a regex per keyword per paper, per subscriber."""
    found = []
    for p in papers:
        if any(
            re.search(rf"\b{re.escape(x)}\b", p.title + " " + p.abstract, re.IGNORECASE)
            for x in profile.exclude
        ):
            continue
        score = 0
        for kw in profile.keywords:
            pattern = rf"\b{re.escape(kw.rstrip('*'))}"
            if re.search(pattern, p.title, re.IGNORECASE):
                score += 2
            elif re.search(pattern, p.abstract, re.IGNORECASE):
                score += 1
        if score:
            found.append((-score, -(p.upvotes or 0), p.title))
    found.sort()
    return found[: profile.max_papers]


def time_digest(papers: list[Paper], profiles: list[Profile]) -> tuple[float, int]:
    t0 = time.perf_counter()
    index = PaperIndex(papers)
    selected = 0
    for profile in profiles:
        selected += len(index.select(profile, (), profile.max_papers)[0])
    return time.perf_counter() - t0, selected


def time_loop(papers: list[Paper], profiles: list[Profile]) -> float:
    t0 = time.perf_counter()
    for profile in profiles:
        straightforward(papers, profile)
    return time.perf_counter() - t0


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1_000, 10_000, 100_000]
    papers = seed_papers()
    print(f"{len(papers)} papers; vocabulary of {len(VOCABULARY)} keywords; profiles of 1-6 keywords\n")
    loop_sample = make_profiles(200, seed=1)
    loop_per_1000 = 1000 * 1000 * time_loop(papers, loop_sample) / len(loop_sample)
    print(
        f"{'N':>8} {'digest s':>9} {'digest ms/1000':>15} {'loop ms/1000':>13} {'speed-up':>9} {'papers sent':>12}"
    )
    for n in sizes:
        profiles = make_profiles(n)
        seconds, selected = time_digest(papers, profiles)
        per_1000 = 1000 * seconds / n * 1000
        print(
            f"{n:>8,} {seconds:>9.2f} {per_1000:>15.1f} {loop_per_1000:>13.0f} {loop_per_1000 / per_1000:>8.0f}x "
            f"{selected:>12,}"
        )
    print(
        "\nloop: timed on 200 subscribers and scaled per 1,000 (the same for every N: it has no shared work)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
