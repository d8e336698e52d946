"""`digest serve` under load (#14): one-click unsubscribe POSTs and manage pages with their preview.

    .venv/bin/python bench/web.py [--subscribers 20000] [--seconds 10] [--clients 50]

A fresh database with the 375 seed papers and N subscribers (synthetic profiles), a real `digest serve`
on 127.0.0.1, and a load generator of 5 processes of threads (httpx, one keep-alive connection per client;
httpx's asyncio client could not generate more than ~150 requests/s here) with ``--clients`` concurrent
clients:

1. one-click unsubscribe: each client POSTs ``List-Unsubscribe=One-Click`` to a different subscriber's
   signed link, as a mailbox provider does, for ``--seconds``; requests per second and latency;
2. the manage page (with the preview of the digest on the stored papers): GETs of different subscribers'
   pages; requests per second and latency percentiles.

The load generator shares the machine's two cores with the server, so these are lower bounds.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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


def _client_group(urls: list[str], threads: int, seconds: float, post: bool) -> tuple[list[float], int]:
    """One load process: ``threads`` clients (each its own keep-alive connection) working through ``urls``."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    shares = [urls[i::threads] for i in range(threads)]

    def one_client(mine: list[str]) -> None:
        with httpx.Client(timeout=30) as client:
            for url in mine:
                if time.perf_counter() >= deadline:
                    return
                started = time.perf_counter()
                answer = client.post(url, data={"List-Unsubscribe": "One-Click"}) if post else client.get(url)
                took = 1000 * (time.perf_counter() - started)
                with lock:
                    latencies.append(took)
                    errors[0] += answer.status_code != 200

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one_client, shares))
    return latencies, errors[0]


def hammer(urls: list[str], clients: int, seconds: float, post: bool) -> tuple[int, list[float], int]:
    """(requests done, latencies in ms, errors) with ``clients`` concurrent clients for ``seconds``: spread
    over 5 processes of threads, since one Python process cannot generate this load by itself."""
    processes = min(5, clients)
    per_process = [urls[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(
            pool.map(
                _client_group,
                per_process,
                [clients // processes] * processes,
                [seconds] * processes,
                [post] * processes,
            )
        )
    latencies = [ms for part, _ in parts for ms in part]
    return len(latencies), latencies, sum(e for _, e in parts)


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
            done, lat, err = hammer(manage, args.clients, args.seconds, post=False)
            report("manage page with preview (GET)", done, lat, err, args.seconds)
            unsubscribe = [f"{base}/u/{signer.make(Purpose.UNSUBSCRIBE, s.email)}" for s in people]
            done, lat, err = hammer(unsubscribe, args.clients, args.seconds, post=True)
            report("one-click unsubscribe (POST)", done, lat, err, args.seconds)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
