"""Times one real daily run on the seed listings for N synthetic subscribers, stage by stage.

    .venv/bin/python bench/run_seeds.py 100 1000

Each subscriber gets 1-6 keywords drawn (seeded) from a fixed vocabulary; delivery is into a Maildir in a
temporary folder. Prints, per N: seconds for ingest, select (plan), render+deliver+record, the total, and
milliseconds per subscriber. This is the current pipeline's baseline; #3 and #6 improve on it.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from digest import pipeline
from digest.models import Profile, Subscriber
from digest.settings import load_settings
from digest.store import Store
from digest.transport import MaildirTransport

REPO = Path(__file__).resolve().parent.parent
VOCABULARY = [
    "speculative decoding",
    "test-time scaling",
    "RAG",
    "quantization",
    "LLM",
    "Mixture-of-Experts",
    "agents",
    "reinforcement learning",
    "diffusion",
    "Bayesian inference",
    "transformer",
    "reasoning",
    "benchmark",
    "KV cache",
    "distillation",
    "vision",
    "tensor",
    "chain-of-thought",
    "retrieval",
    "pruning",
    "MoE",
    "ViT",
]


def profiles(n: int, seed: int = 7) -> list[Subscriber]:
    rng = random.Random(seed)
    return [
        Subscriber(
            f"user{i:06d}@example.org", "", Profile(tuple(rng.sample(VOCABULARY, rng.randint(1, 6))), (), 20)
        )
        for i in range(n)
    ]


def bench(n: int) -> dict[str, float]:
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "digest.toml"
        cfg.write_text(
            f'database = "state.sqlite3"\n[[sources]]\nkind = "snapshot"\nname = "seeds"\n'
            f'path = "{REPO / "config" / "samples" / "*.txt"}"\n',
            encoding="utf-8",
        )
        settings = load_settings(cfg)
        with Store.open(settings.database) as store:
            for sub in profiles(n):
                store.add_subscriber(sub, now)
            t0 = time.perf_counter()
            pipeline.ingest(settings, store, now)
            t1 = time.perf_counter()
            planned = pipeline.plan(settings, store, now)
            t2 = time.perf_counter()
            renderer = pipeline._renderer(settings)
            with MaildirTransport(Path(tmp) / "outbox") as transport:
                for item in planned:
                    if item.digest is not None:
                        out = renderer.compose(item.digest, now).outgoing
                        transport.send(out)
                        store.record_sent(
                            item.subscriber.email, out.message_id, item.digest.day, item.digest.papers, now
                        )
            t3 = time.perf_counter()
    return {"ingest": t1 - t0, "select": t2 - t1, "render+deliver+record": t3 - t2, "total": t3 - t0}


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [100, 1000]
    print(
        f"{'N':>7} {'ingest s':>9} {'select s':>9} {'render+send s':>14} {'total s':>8} {'ms/subscriber':>14}"
    )
    for n in sizes:
        r = bench(n)
        print(
            f"{n:>7} {r['ingest']:>9.2f} {r['select']:>9.2f} {r['render+deliver+record']:>14.2f} "
            f"{r['total']:>8.2f} {1000 * r['total'] / n:>14.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
