"""`digest serve` under load (#14): one-click unsubscribe POSTs and manage pages with their preview.

    .venv/bin/python bench/web.py [--subscribers 20000] [--seconds 10] [--clients 50]

A fresh database with the 375 seed papers and N subscribers (synthetic profiles), a real `digest serve`
on 127.0.0.1, and a load generator in this process (httpx, asyncio) with ``--clients`` concurrent clients:

1. one-click unsubscribe: each client POSTs ``List-Unsubscribe=One-Click`` to a different subscriber's
   signed link, as a mailbox provider does, for ``--seconds``; requests per second and latency;
2. the manage page (with the preview of the digest on the stored papers): GETs of different subscribers'
   pages; requests per second and latency percentiles.

The load generator shares the machine's two cores with the server, so these are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from synthetic import SAMPLES, subscribers

from digest.store import Store
from digest.tokens import Purpose, Signer

DIGEST = str(Path(sys.executable).parent / "digest")
KEY = "bench-signing-key-0123456789abcdefghijkl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def hammer(urls: list[str], clients: int, seconds: float, post: bool) -> tuple[int, list[float], int]:
    """(requests done, latencies in ms, errors) with ``clients`` concurrent clients for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    next_url = iter(urls)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                url = next(next_url, None)
                if url is None:
                    return
                started = time.perf_counter()
                if post:
                    answer = await client.post(url, data={"List-Unsubscribe": "One-Click"})
                else:
                    answer = await client.get(url)
                latencies.append(1000 * (time.perf_counter() - started))
                errors += answer.status_code != 200

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return len(latencies), latencies, errors


def report(name: str, done: int, latencies: list[float], errors: int, seconds: float) -> None:
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(
        f"| {name} | {done:,} | {done / seconds:,.0f} | {statistics.median(latencies):.1f} | {q[94]:.1f} | "
        f"{q[98]:.1f} | {errors} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="digest-web-bench-") as tmp:
        port = free_port()
        cfg = Path(tmp) / "digest.toml"
        cfg.write_text(
            f'database = "digest.sqlite3"\nbase_url = "http://127.0.0.1:{port}"\n'
            f'[[sources]]\nkind = "snapshot"\nname = "samples"\npath = "{SAMPLES}/*.txt"\n',
            encoding="utf-8",
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
            "DIGEST_SECRET_KEY": KEY,
        }
        subprocess.run([DIGEST, "ingest", "--config", str(cfg)], env=env, check=True, capture_output=True)
        people = subscribers(args.subscribers)
        with Store.open(Path(tmp) / "digest.sqlite3") as store:
            store.add_subscribers(people, datetime.now(UTC))
        signer = Signer([KEY])
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([DIGEST, "serve", "--port", str(port), "--config", str(cfg)], env=env)
        try:
            for _ in range(400):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            print(
                f"{args.subscribers:,} subscribers, 375 papers, {args.clients} concurrent clients, {args.seconds:g} s each\n"
            )
            print("| request | done | per second | median ms | p95 ms | p99 ms | errors |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            manage = [f"{base}/m/{signer.make(Purpose.MANAGE, s.email)}" for s in people]
            done, lat, err = asyncio.run(hammer(manage, args.clients, args.seconds, post=False))
            report("manage page with preview (GET)", done, lat, err, args.seconds)
            unsubscribe = [f"{base}/u/{signer.make(Purpose.UNSUBSCRIBE, s.email)}" for s in people]
            done, lat, err = asyncio.run(hammer(unsubscribe, args.clients, args.seconds, post=True))
            report("one-click unsubscribe (POST)", done, lat, err, args.seconds)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
