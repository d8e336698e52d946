"""The daily run on PostgreSQL against SQLite, and several hosts sharing one day, on this machine.

    .venv/bin/python bench/postgresql.py [--subscribers 100000] [--workers 2] [--shared 200000]

A throwaway PostgreSQL 15 cluster (Debian's server; as root, run as the postgres user) on 127.0.0.1 with
the settings of a small dedicated server (fsync on: the same durability as SQLite's), then:

1. the same `digest run` of the 375 seed papers into a Maildir for N synthetic subscribers, on a SQLite
   file and on a fresh PostgreSQL database, one host with ``--workers`` worker processes: the ratio;
2. ``--shared`` subscribers over SMTP into Postfix's smtp-sink: one host with two worker processes, then
   two "hosts" (two `digest run` process groups started together, each with its own connections and one
   worker) sharing the day through claims: messages per second, and how the hosts split the ranges.
   (Both "hosts" share this machine's cores: the second shows the coordination's cost, not more speed.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from run_day import DIGEST, NOW, _config, run_digest, start_sink
from synthetic import SAMPLES, subscribers

from digest.store import Store

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(folder: Path) -> tuple[str, list[str]]:
    """(URL of the postgres database, the pg_ctl command prefix to stop it)."""
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    subprocess.run(
        [*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_connections=50"
    )
    subprocess.run(
        [
            *as_user,
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", [
        *as_user,
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
    ]


def shared_day(
    database: str, n: int, hosts: int, workers: int, sink_port: int
) -> tuple[float, dict[str, int]]:
    """``hosts`` `digest run` processes (``workers`` each) started together on ``n`` fresh subscribers over
    SMTP; (seconds until the last one ended, subscribers per host as its claims record them)."""
    with psycopg.connect(database, autocommit=True) as conn:  # a fresh store for each measurement
        conn.execute("TRUNCATE sent, messages, run_ranges, runs, ingests, feedback, subscribers")
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-shared-"))
    try:
        cfg = _config(folder, str(SAMPLES / "*.txt"), sink_port, workers, database)
        with Store.open(database) as store:
            store.readers.add_many(subscribers(n), NOW)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [DIGEST, "run", "--config", str(cfg), "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(hosts)
        ]
        outputs = [p.communicate() for p in procs]
        seconds = time.perf_counter() - started
        for p, (_, err) in zip(procs, outputs, strict=True):
            if p.returncode != 0:
                raise SystemExit(f"digest run failed ({p.returncode}):\n{err[-3000:]}")
        counts: dict[str, int] = {}
        for out, _ in outputs:
            for status, k in json.loads(out)["counts"].items():
                counts[status] = counts.get(status, 0) + k
        if sum(counts.values()) != n or set(counts) - {"sent", "nothing-new"}:
            raise SystemExit(f"{counts} for {n} subscribers")
        with Store.open(database) as store:
            run = store.runs.latest()
            assert run is not None
            split: dict[str, int] = {}
            for r in store.runs.ranges(run):
                split[str(r.owner)] = split.get(str(r.owner), 0) + (r.subscribers or 0)
        return seconds, split
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shared", type=int, default=200_000, help="subscribers for the hosts' part (0: skip)")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="digest-bench-pg-"))
    url, pg_ctl = start_cluster(folder)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE digest_bench")
        database = url.rsplit("/", 1)[0] + "/digest_bench"
        glob = str(SAMPLES / "*.txt")
        n, w = args.subscribers, args.workers
        sqlite = run_digest("SQLite", "375 seed papers", glob, n, workers=w)
        postgresql = run_digest("PostgreSQL", "375 seed papers", glob, n, workers=w, database=database)
        print(f"\n{n:,} subscribers, the 375 seed papers into a Maildir, one host, {w} workers\n")
        print("| database | sent | total s | deliver s | ms per subscriber | peak RSS MB, all processes |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in (sqlite, postgresql):
            print(
                f"| {r.stage} | {r.sent:,} | {r.seconds:.1f} | {r.deliver:.1f} | {r.ms_per_subscriber:.2f} "
                f"| {r.rss_sum / 2**20:,.0f} |"
            )
        ratio = postgresql.seconds / sqlite.seconds
        print(f"\nPostgreSQL / SQLite: {ratio:.2f}x (target: at most 1.3x)", flush=True)
        if args.shared:
            shared_table(database, args.shared)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def shared_table(database: str, n: int) -> None:
    """Part 2: one host with two workers, then two hosts with one each, on ``n`` subscribers over SMTP."""
    sink, port, sink_name = start_sink()
    try:
        print(f"\n{n:,} subscribers on PostgreSQL, over SMTP into {sink_name}, sharing one day\n")
        print("| hosts | total s | messages/s | subscribers per process (from its claims) |")
        print("| --- | ---: | ---: | --- |", flush=True)
        for label, hosts, workers in (("one host, 2 workers", 1, 2), ("two hosts, 1 worker each", 2, 1)):
            seconds, split = shared_day(database, n, hosts, workers, port)
            parts = ", ".join(f"{count:,}" for _, count in sorted(split.items(), key=lambda kv: -kv[1]))
            print(f"| {label} | {seconds:.1f} | {n / seconds:,.0f} | {parts} |", flush=True)
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
