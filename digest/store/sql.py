"""Small pieces every repository of the store writes its SQL with."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any


def chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """``items`` in slices short enough for one statement's parameters."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def values(rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """Rows as one multi-row ``VALUES`` list and its flat parameters: one statement for many rows, which
    PostgreSQL runs several times faster than one statement per row and SQLite as fast as ``executemany``.

    >>> values([(1, "a"), (2, "b")])
    ('VALUES (?,?),(?,?)', [1, 'a', 2, 'b'])
    """
    row = "(" + ",".join("?" * len(rows[0])) + ")"
    return "VALUES " + ",".join([row] * len(rows)), [value for r in rows for value in r]


def marks(items: Sequence[Any]) -> str:
    """One ``?`` per item, for ``IN (…)``.

    >>> marks([1, 2, 3])
    '?,?,?'
    """
    return ",".join("?" * len(items))


def iso(moment: datetime) -> str:
    """A moment as the store keeps it (ISO 8601, to the second)."""
    return moment.isoformat(timespec="seconds")
