"""The connection every part of the store shares: transactions, and small helpers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from digest.errors import StoreError


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """``items`` in slices short enough for one statement's parameters."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _values(rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """Rows as one multi-row ``VALUES`` list and its flat parameters: one statement for many rows, which
    PostgreSQL runs about 3x faster than one statement per row (#16) and SQLite as fast as ``executemany``.

    >>> _values([(1, "a"), (2, "b")])
    ('VALUES (?,?),(?,?)', [1, 'a', 2, 'b'])
    """
    row = "(" + ",".join("?" * len(rows[0])) + ")"
    return "VALUES " + ",".join([row] * len(rows)), [value for r in rows for value in r]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def store_error(exc: sqlite3.Error, path: str) -> StoreError:
    """A SQLite failure as a StoreError that says what it means for the operator and what to do.

    >>> store_error(sqlite3.DatabaseError("database disk image is malformed"), "d.sqlite3").message
    'the database d.sqlite3 is damaged: database disk image is malformed'
    """
    text = str(exc)
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return StoreError(
            f"the database {path} is damaged: {text}",
            hint=f"stop digest, move the file aside and recover it: sqlite3 {path} .recover | sqlite3 "
            "recovered.sqlite3; or restore a backup",
        )
    if "readonly" in text or "unable to open" in text or "disk I/O" in text:
        return StoreError(
            f"cannot write the database {path}: {text}",
            hint="check that this user may write the file and its folder (and that the disk is not full)",
        )
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the database {path} stayed locked by another process: {text}",
            hint="another digest command holds it too long; try again when it has finished",
        )
    return StoreError(f"the database {path} failed: {text}", hint="run again with -vv for details")


def as_store_error(exc: BaseException, path: str | None = None) -> StoreError | None:
    """A database failure that escaped the store's own wrapping (a read), as a StoreError naming ``path``;
    None for anything else."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return store_error(exc, path or "(the state database)")
    return None


class Database(Protocol):
    """What the store needs of a connection: ``sqlite3.Connection``, or ``postgresql.Connection`` (#16)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...

    @property
    def in_transaction(self) -> bool: ...

    def close(self) -> None: ...


class Connection:
    """One database connection and its path (or redacted URL); ``transaction()`` for writes."""

    dialect = "sqlite"
    # Inside one transaction that is never committed (a PostgreSQL snapshot for a preview or a dry run):
    # each ``transaction()`` is then a savepoint, and closing the connection throws everything away.
    scratch = False

    def __init__(self, conn: Database, path: str, read_only: bool = False) -> None:
        self.conn = conn
        self.path = path
        self.read_only = read_only

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One write transaction, begun IMMEDIATE so two writers never deadlock half-way."""
        begin, rollback, commit = ("BEGIN IMMEDIATE", "ROLLBACK", "COMMIT")
        if self.scratch:
            begin, rollback, commit = ("SAVEPOINT tx", "ROLLBACK TO SAVEPOINT tx", "RELEASE SAVEPOINT tx")
        try:
            self.conn.execute(begin)
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc
        try:
            yield self.conn
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute(rollback)
            if isinstance(exc, sqlite3.Error):
                raise store_error(exc, self.path) from exc
            raise
        try:
            self.conn.execute(commit)
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc
