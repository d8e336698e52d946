"""What the upgrade to schema 12 costs: every stored address re-keyed as its mailbox key, once.

    cd bench && ../.venv/bin/python rekey.py              # 100,000 readers on SQLite, and on PostgreSQL
    cd bench && ../.venv/bin/python rekey.py --quick      # 10,000 readers

A database of schema 11 is written as the code before keys wrote it (the migrations up to 11, then the
rows): N readers of whom a fifth have capitals in their address (``Reader7@Example.org``; their rows are
the ones rewritten), one sent message each and 5 sent records each. Then ``Store.open`` upgrades it, and
the time of that open is printed. PostgreSQL runs in a throwaway cluster of Debian's server when
installed (as the tests start one), else only SQLite is timed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digest.store import Store
from digest.store.schema import MIGRATIONS, POSTGRESQL_PREAMBLE, REKEY_STEP, for_postgresql

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PAPERS = 50


def rows(n: int) -> dict[str, list[tuple[Any, ...]]]:
    """The schema-11 rows: subscribers, papers, messages, sent."""
    emails = [f"{'Reader' if i % 5 == 0 else 'reader'}{i}@Example.org" for i in range(n)]
    return {
        "papers": [(p, f"p{p}", f"Paper {p}") for p in range(1, PAPERS + 1)],
        "subscribers": [(e,) for e in emails],
        "messages": [(i + 1, e, f"<m{i}@example.org>") for i, e in enumerate(emails)],
        "sent": [(e, 1 + (i + k) % PAPERS, i + 1) for i, e in enumerate(emails) for k in range(5)],
    }


INSERTS = {
    "papers": "INSERT INTO papers (pid, title_key, title, abstract, source, first_seen, last_seen)"
    " VALUES ({m}, {m}, {m}, '', 's', '2026-11-20', '2026-11-20')",
    "subscribers": "INSERT INTO subscribers (email, max_papers, origin, created, updated)"
    " VALUES ({m}, 20, 'cli', '2026-11-20', '2026-11-20')",
    "messages": "INSERT INTO messages (id, email, message_id, digest_date, status, created)"
    " VALUES ({m}, {m}, {m}, '2026-11-20', 'sent', '2026-11-20')",
    "sent": "INSERT INTO sent (email, pid, message, sent_at) VALUES ({m}, {m}, {m}, '2026-11-20')",
}


def old_sqlite(path: Path, n: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:REKEY_STEP]:
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version = {REKEY_STEP}")
    conn.execute("BEGIN")
    for table, values in rows(n).items():
        conn.executemany(INSERTS[table].format(m="?"), values)
    conn.execute("COMMIT")
    conn.close()


def old_postgresql(url: str, n: int) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute(POSTGRESQL_PREAMBLE)
            conn.execute("CREATE TABLE digest_schema (version INTEGER NOT NULL)")
            for migration in MIGRATIONS[:REKEY_STEP]:
                conn.execute(for_postgresql(migration))
            conn.execute("INSERT INTO digest_schema (version) VALUES (%s)", (REKEY_STEP,))
        with conn.transaction(), conn.cursor() as cur:
            for table, values in rows(n).items():
                cur.executemany(INSERTS[table].format(m="%s"), values)
        conn.execute("ANALYZE")


def timed_open(location: str) -> float:
    started = time.perf_counter()
    with Store.open(location) as store:
        took = time.perf_counter() - started
        left = store.conn.execute("SELECT count(*) FROM sent WHERE email <> lower(email)").fetchone()[0]
        assert left == 0, f"{left} sent records not re-keyed"
    return took


@contextmanager
def cluster() -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster on a free port (as root: run as the postgres user), or None."""
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not initdb.is_file():
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="digest-rekey-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = str(folder / "data")
    subprocess.run(
        [
            *as_user,
            str(initdb),
            "-D",
            data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale",
            "C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*as_user, str(pg_ctl), "-D", data, "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(pg_ctl), "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10,000 readers")
    n = 10_000 if ap.parse_args().quick else 100_000
    print(f"schema 11 -> 12 at {n:,} readers ({n // 5:,} addresses re-keyed, {5 * n:,} sent records)\n")
    print("| database | upgrade (s) |\n| --- | ---: |")
    with tempfile.TemporaryDirectory(prefix="digest-rekey-") as tmp:
        path = Path(tmp) / "old.sqlite3"
        old_sqlite(path, n)
        print(f"| SQLite | {timed_open(str(path)):.2f} |", flush=True)
    with cluster() as url:
        if url is None:
            print("| PostgreSQL | (not installed) |")
            return
        old_postgresql(url, n)
        print(f"| PostgreSQL | {timed_open(url):.2f} |")


if __name__ == "__main__":
    main()
