"""The daily run on PostgreSQL against SQLite (#16), on this machine.

    .venv/bin/python bench/postgresql.py [--subscribers 100000] [--workers 2]

A throwaway PostgreSQL 15 cluster (Debian's server; as root, run as the postgres user) on 127.0.0.1 with
the settings of a small dedicated server (fsync on: the same durability as SQLite's), then the same
`digest run` of the 375 seed papers into a Maildir for N synthetic subscribers, on a SQLite file and on a
fresh PostgreSQL database, one host with ``--workers`` worker processes. Prints the table and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
from run_day import run_digest
from synthetic import SAMPLES

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
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
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{n:,} subscribers, the 375 seed papers into a Maildir, one host, {w} workers\n")
    print("| database | sent | total s | deliver s | ms per subscriber | peak RSS MB, all processes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in (sqlite, postgresql):
        print(
            f"| {r.stage} | {r.sent:,} | {r.seconds:.1f} | {r.deliver:.1f} | {r.ms_per_subscriber:.2f} "
            f"| {r.rss_sum / 2**20:,.0f} |"
        )
    print(f"\nPostgreSQL / SQLite: {postgresql.seconds / sqlite.seconds:.2f}x (target of #16: at most 1.3x)")


if __name__ == "__main__":
    main()
