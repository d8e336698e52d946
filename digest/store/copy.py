"""Copying a whole store into another (``digest migrate-store``, #16): SQLite into PostgreSQL.

Every table, in an order that keeps foreign keys satisfied, row for row with the same ids (papers' refs and
messages' ids are what the sent records and the outbox point at), in one transaction on the target: a
failure leaves it empty. Then the target's id sequences are moved past the copied ids, and every table's
row count is compared: a copy that differs is rolled back and reported, never left half-done.
"""

from __future__ import annotations

from collections.abc import Iterator

from digest.errors import StoreError
from digest.store.database import Store

# Parents before children: papers and messages before the sent records, papers before vectors and feedback.
TABLES = (
    "papers",
    "subscribers",
    "messages",
    "sent",
    "fetch_state",
    "rate_events",
    "feedback",
    "paper_vectors",
    "runs",
    "run_ranges",
    "ingests",
    "source_health",
    "erasures",
)
IDENTITIES = (("papers", "pid"), ("messages", "id"), ("runs", "id"), ("run_ranges", "id"), ("ingests", "id"))
BATCH = 2_000


def _columns(store: Store, table: str) -> list[str]:
    return [str(r[1]) for r in store.conn.execute(f"PRAGMA table_info({table})")]


def _rows(store: Store, table: str, columns: list[str]) -> Iterator[list[tuple[object, ...]]]:
    cursor = store.conn.execute(f"SELECT {', '.join(columns)} FROM {table}")
    batch: list[tuple[object, ...]] = []
    for row in cursor:
        batch.append(tuple(row))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_store(source: Store, target: Store) -> dict[str, int]:
    """Copy ``source`` (SQLite) into ``target`` (an empty PostgreSQL store); rows copied per table."""
    if source.dialect != "sqlite" or target.dialect != "postgresql":
        raise StoreError("migrate-store copies a SQLite database into a PostgreSQL one")
    filled = [t for t in TABLES if target.conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if filled:
        raise StoreError(
            f"the target {target.path} already holds data (in {', '.join(filled)}); nothing was copied",
            hint="migrate into a new, empty database",
        )
    counts: dict[str, int] = {}
    with target.transaction() as tx:
        for table in TABLES:
            columns = _columns(source, table)
            marks = ", ".join("?" * len(columns))
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            for batch in _rows(source, table, columns):
                tx.executemany(insert, batch)
            counts[table] = int(source.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            copied = int(tx.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            if copied != counts[table]:
                raise StoreError(
                    f"{table}: {counts[table]} rows in the source, {copied} copied; nothing kept"
                )
        for table, column in IDENTITIES:
            tx.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
            )
    return counts
