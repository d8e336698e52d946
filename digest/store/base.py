"""The connection every part of the store shares: transactions, and small helpers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """``items`` in slices short enough for one statement's parameters."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class Connection:
    """One SQLite connection and its path; ``transaction()`` for writes."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, begun IMMEDIATE so two writers never deadlock half-way."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
