"""The speed guard: a day of a few thousand readers against the straightforward pipeline, in under a minute.

    make bench-quick            # or: cd bench && ../.venv/bin/python guard.py [--readers 5000]

A real ``digest run`` (5,000 keyword readers stored in the database, the 375 seed papers into a Maildir)
and the straightforward pipeline (``baseline.py``) on a sample of the same readers, timed in the same
process one after the other, so the machine's mood falls on both alike. It prints digest's cost per reader
as a ratio against the baseline's ("x baseline": higher is better) beside the last committed ratio, the
line "guard ratio: N.Nx" in docs/benchmarks.md, and says so loudly (exit 1) when the ratio fell by more
than a fifth. Run it before a change to a run's hot path lands; after a deliberate change, commit the new
ratio in docs/benchmarks.md with the change.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from baseline import time_baseline
from run_day import NOW, run_digest
from synthetic import SAMPLES, seed_papers, subscribers

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
COMMITTED = re.compile(r"guard ratio: \*{0,2}([0-9]+(?:\.[0-9]+)?)x")
FALL = 0.8  # a ratio below 80% of the committed one is a regression, not the machine's noise


def committed_ratio(text: str) -> float | None:
    """The last committed ratio in docs/benchmarks.md, if any.

    >>> committed_ratio("... guard ratio: **31.5x** (5,000 readers) ...")
    31.5
    """
    found = COMMITTED.findall(text)
    return float(found[-1]) if found else None


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readers", type=int, default=5_000)
    ap.add_argument(
        "--sample", type=int, default=41, help="readers timed through the baseline (first is warm-up)"
    )
    args = ap.parse_args(argv)
    run = run_digest("digest run → Maildir", "375 seed papers", str(SAMPLES / "*.txt"), args.readers)
    with tempfile.TemporaryDirectory(prefix="digest-guard-") as tmp:
        base = time_baseline(seed_papers(), subscribers(args.sample, seed=7), Path(tmp), NOW)
    ours = run.seconds / run.n
    ratio = base / ours
    before = committed_ratio(DOCS.read_text(encoding="utf-8"))
    print(f"digest run, {run.n:,} readers: {run.seconds:.1f} s, {1000 * ours:.3f} ms a reader")
    print(f"straightforward pipeline: {1000 * base:.1f} ms a reader ({args.sample - 1} timed)")
    print(f"guard ratio: {ratio:.1f}x baseline; last committed: {f'{before:.1f}x' if before else 'none'}")
    if before is not None and ratio < FALL * before:
        print(
            f"\n*** SLOWER: {ratio:.1f}x against {before:.1f}x committed ({ratio / before - 1:+.0%}). ***\n"
            "*** Profile it (bench/phases.py --against <the last good commit>) before this lands. ***",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
