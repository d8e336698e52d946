"""What the signals of "papers as researchers follow them" cost a day's run: followed authors, arXiv
categories, section caps, the upvote weight and updates, at 100,000 readers, against the same day's run
with today's keyword readers.

    cd bench && ../.venv/bin/python signals.py                    # 100,000 readers, 2 rounds (~10 min)
    cd bench && ../.venv/bin/python signals.py --sizes 20000 --rounds 1

The day: the 375 seed papers as an arXiv RSS listing (``digest``'s own feed parser reads it) with
author lists and categories made up the same way every time (3 to 8 authors from a pool of 3,000 names;
a primary category and up to two cross-lists), beside the seed snapshots (their upvotes). Each state also
has a day before: 200 papers, each reader sent 3 of them. Two states are run, alternately:

- ``keywords``: the synthetic keyword readers (``synthetic.py``), the listing without revisions: today's
  run, with nothing for the new signals to do.
- ``signals``: the same readers, a third of them also following 1 to 3 authors of the day's papers, a
  third narrowed to or leaving out categories, a quarter with section caps (keywords 5, trending 2), a
  quarter weighing upvotes at 0.5; and the listing also announces new versions of 100 of the day
  before's papers, so most readers' digests tell of one or two ("Updated since you saw it").

Each run is a real ``digest run --json`` into a Maildir, ``[delivery] workers`` automatic; the table
gives wall seconds, the delivery's phases, peak memory of the run's processes, and the ratio.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from run_day import TreeMemory
from synthetic import SAMPLES, big_day, seed_papers, subscribers

from digest.models import Paper, Subscriber
from digest.store import NewMessage, Store

NOW = datetime(2025, 11, 22, 6, 0, tzinfo=UTC)
CATEGORIES = ["cs.CL", "cs.LG", "cs.CV", "cs.AI", "stat.ML", "cs.IR", "cs.RO", "eess.AS"]
FIRST = [
    "Ana", "Bo", "Chen", "Dmitri", "Eva", "Farid", "Grace", "Hiro", "Ines", "Jun", "Kofi", "Lena", "Mateo", "Nadia",
    "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Vera", "Wei", "Xavier", "Yuki", "Zara", "Amir",
]  # fmt: skip
RUN = "import sys; from digest.cli import main; sys.argv = ['digest', *sys.argv[1:]]; main()"


def names(n: int = 3_000, seed: int = 7) -> list[str]:
    """``n`` distinct author names: a given name and a made-up surname."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "sa", "to", "vi", "ne", "ul", "da", "be", "fo", "gi", "ha", "ja"]
    out: dict[str, None] = {}
    while len(out) < n:
        last = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).capitalize()
        out[f"{rng.choice(FIRST)} {last}"] = None
    return list(out)


def day_papers(seed: int = 11) -> list[tuple[Paper, tuple[str, ...], tuple[str, ...]]]:
    """The seed papers with an arXiv id, authors and categories each."""
    rng = random.Random(seed)
    pool = names()
    out = []
    for i, p in enumerate(seed_papers()):
        authors = tuple(rng.sample(pool, rng.randint(3, 8)))
        primary = rng.choices(CATEGORIES, weights=[6, 6, 3, 3, 2, 1, 1, 1])[0]
        cross = tuple(c for c in rng.sample(CATEGORIES, rng.randint(0, 2)) if c != primary)
        out.append((replace(p, arxiv_id=f"2511.{10000 + i}", ref=None), authors, (primary, *cross)))
    return out


def rss(items: list[str]) -> str:
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' version="2.0"><channel><title>cs updates on arXiv.org</title><link>http://rss.arxiv.org/rss/cs</link>'
        "<description>cs</description>" + "".join(items) + "</channel></rss>\n"
    )


def item(arxiv_id: str, version: int, kind: str, title: str, abstract: str, authors: tuple[str, ...],
         categories: tuple[str, ...]) -> str:  # fmt: skip
    tags = "".join(f"<category>{c}</category>" for c in categories)
    return (
        f"<item><title>{escape(title)}</title><link>https://arxiv.org/abs/{arxiv_id}</link>"
        f"<description>arXiv:{arxiv_id}v{version} Announce Type: {kind} \nAbstract: {escape(abstract)}</description>"
        f'<guid isPermaLink="false">oai:arXiv.org:{arxiv_id}v{version}</guid>{tags}'
        f"<arxiv:announce_type>{kind}</arxiv:announce_type><dc:creator>{escape(', '.join(authors))}</dc:creator></item>"
    )


def yesterday() -> list[Paper]:
    """The day before's 200 papers (made from the seed papers), version 1."""
    return [
        Paper(title, abstract, arxiv_id=f"2511.{i:05d}", upvotes=up, version=1)
        for i, (title, abstract, up) in enumerate(big_day(200, seed=3))
    ]


def readers(n: int, signals: bool, seed: int = 9) -> list[Subscriber]:
    """The synthetic keyword readers; with ``signals``, some following authors, narrowed to or leaving
    out categories, with section caps, weighing upvotes (see the module's docstring)."""
    out = subscribers(n)
    if not signals:
        return out
    rng = random.Random(seed)
    written = [a for _, authors, _ in day_papers() for a in authors]
    for i, s in enumerate(out):
        p = s.profile
        if rng.random() < 1 / 3:
            p = replace(p, authors=tuple(dict.fromkeys(rng.sample(written, rng.randint(1, 3)))))
        if rng.random() < 1 / 3:
            chosen = tuple(rng.sample(CATEGORIES[:5], rng.randint(1, 2)))
            p = replace(p, categories=chosen) if rng.random() < 0.6 else replace(p, exclude_categories=chosen)
        if rng.random() < 1 / 4:
            p = replace(p, sections=(("keywords", 5), ("trending", 2)))
        if rng.random() < 1 / 4:
            p = replace(p, upvotes=0.5)
        out[i] = replace(s, profile=p)
    return out


def make_state(folder: Path, n: int, signals: bool) -> Path:
    """The day's listing, the config, and a store with ``n`` readers each sent 3 of the day before's papers."""
    papers = day_papers()
    items = [item(p.arxiv_id or "", 1, "new", p.title, p.abstract, a, c) for p, a, c in papers]
    if signals:  # new versions of half the day before's papers
        items += [
            item(p.arxiv_id or "", 2, "replace", p.title, p.abstract + " This version adds results.", ("A. B",), ("cs.CL",))
            for p in yesterday()[:100]
        ]  # fmt: skip
    (folder / "cs.rss").write_text(rss(items), encoding="utf-8")
    cfg = folder / "digest.toml"
    cfg.write_text(
        "\n".join(
            [
                f'database = "{folder / "state.sqlite3"}"',
                'timezone = "UTC"',
                "lookback_days = 3",
                "[delivery]",
                f'maildir = "{folder / "mail"}"',
                "[[sources]]",
                'kind = "snapshot"',
                'name = "seeds"',
                f'path = "{SAMPLES / "*.txt"}"',
                "[[sources]]",
                'kind = "feed"',
                'name = "arxiv"',
                f'path = "{folder / "cs.rss"}"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    before = NOW - timedelta(days=1)
    rng = random.Random(3)
    with Store.open(folder / "state.sqlite3") as store:
        store.readers.add_many(readers(n, signals), before)
        store.papers.ingest(yesterday(), before)
        refs = [p.ref for p in store.papers.recent(before) if p.ref is not None]
        for start in range(0, n, 5_000):
            batch = [
                NewMessage(f"user{i:06d}@example.org", before.date(), f"<b{i}@x>", tuple(rng.sample(refs, 3)))
                for i in range(start, min(start + 5_000, n))
            ]
            store.outbox.mark_sent_many([r for r in store.outbox.begin(batch, before) if r], before)
    return cfg


def _text(path: Path) -> str:
    """A delivered message's text part."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
    return str(body.get_content()) if body is not None else ""


def run(n: int, signals: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="digest-signals-") as tmp:
        folder = Path(tmp)
        cfg = make_state(folder, n, signals)
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN, "run", "--now", "--config", str(cfg), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
        )
        memory = TreeMemory(proc.pid)
        out, err = proc.communicate()
        seconds = time.perf_counter() - began
        memory.stop()
        if proc.returncode not in (0, 1):
            raise SystemExit(f"digest run failed ({proc.returncode}):\n{err[-3000:]}")
        report = json.loads(out)
        sent = report["counts"].get("sent", 0)
        assert sent > 0.95 * n, f"only {sent} of {n} readers were sent a digest"
        texts = [_text(f) for f in sorted((folder / "mail" / "new").iterdir())[:2000]]
        told = sum("Updated since you saw it" in t for t in texts)
        sections = sum("\nYour keywords\n-------------\n" in t for t in texts)
        return {
            "seconds": seconds,
            "deliver": report["timings"].get("deliver", 0.0),
            **{phase: report.get("phases", {}).get(phase, 0.0) for phase in ("plan", "compose", "record")},
            "memory": memory.peak_sum / 2**20,
            "told": told / len(texts),
            "sections": sections / len(texts),
        }


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    print(
        "| readers | readers' profiles | run s | deliver s | plan s | compose s | record s | peak MB | told of updates"
        " | in sections |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.sizes:
        found: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for signals in (False, True):  # alternately: the machine's drift falls on both alike
                r = run(n, signals)
                found[signals].append(r)
                name = "keywords and the new signals" if signals else "keywords (today)"
                print(
                    f"| {n:,} | {name} | {r['seconds']:.1f} | {r['deliver']:.1f} | {r['plan']:.1f} |"
                    f" {r['compose']:.1f} | {r['record']:.1f} | {r['memory']:.0f} | {r['told']:.0%}"
                    f" | {r['sections']:.0%} |",
                    flush=True,
                )
        ratio = statistics.median(r["seconds"] for r in found[True]) / statistics.median(
            r["seconds"] for r in found[False]
        )
        memory = max(r["memory"] for r in found[True]) / max(r["memory"] for r in found[False])
        print(
            f"\n{n:,} readers: the new signals cost {ratio:.2f}x the run's time, {memory:.2f}x its peak memory"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
