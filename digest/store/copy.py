"""Copying a whole store into another (``digest migrate-store``): SQLite into PostgreSQL.

Every table, in an order that keeps foreign keys satisfied, row for row with the same ids (papers' refs and
messages' ids are what the sent records and the outbox point at), in one transaction on the target: a
failure leaves it empty. Then the target's id sequences are moved past the copied ids, and every table's
row count is compared: a copy that differs is rolled back and reported, never left half-done.
"""

from __future__ import annotations

from collections.abc import Iterator

from digest.errors import StoreError
from digest.store.database import Store
from digest.store.postgresql import PostgreSQL

BATCH = 2_000


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
    """Copy ``source`` (SQLite) into ``target`` (an empty PostgreSQL store); rows copied per table.

    What is copied comes from the schema, not from a list to keep in step with it: every table of the
    source, in the order the migrations made them (parents before children), and every generated id of
    the target."""
    if not isinstance(target.dialect, PostgreSQL) or isinstance(source.dialect, PostgreSQL):
        raise StoreError("migrate-store copies a SQLite database into a PostgreSQL one")
    tables = source.dialect.tables(source.conn)
    filled = [t for t in tables if target.conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if filled:
        raise StoreError(
            f"the target {target.path} already holds data (in {', '.join(filled)}); nothing was copied",
            hint="migrate into a new, empty database",
        )
    counts: dict[str, int] = {}
    with target.transaction() as tx:
        for table in tables:
            columns = source.dialect.columns(source.conn, table)
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
        for table, column in target.dialect.identities(tx):
            tx.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)"
            )
    return counts
