"""PostgreSQL under the store (#16): a connection that speaks the part of ``sqlite3``'s API the store uses.

The store's SQL is written once, for SQLite; this adapter makes a psycopg 3 connection take it as it is:

- ``?`` placeholders become PostgreSQL's own ``$1, $2…``, sent through psycopg's ``RawCursor``: psycopg
  then does not parse the statement for ``%s`` placeholders, which costs 6.7 ms for a batch's statement of
  1,000 parameters (its cache stops at 50) and was an eighth of a PostgreSQL run's time (#16);
- ``BEGIN IMMEDIATE`` becomes ``BEGIN`` (PostgreSQL locks rows as they are written, not the file);
- SQLite's scalar ``MAX(a, b)``, written in capitals in the store (the aggregate is ``max``), becomes
  ``GREATEST(a, b)``;
- rows can be read by position and by column name, like ``sqlite3.Row``;
- psycopg's errors are raised as the matching ``sqlite3`` errors, so the store keeps one error path
  (``store_error``) and every message names the database.

The connection is in autocommit mode and the store issues ``BEGIN``/``COMMIT`` itself, as it does with
SQLite (``isolation_level=None``). The schema is the same migrations, rewritten by
``schema.for_postgresql``; the version lives in a one-row table, since PostgreSQL has no
``user_version``. psycopg is imported only when a ``postgresql://`` database is opened.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from digest.redact import redact_text, redact_url

_PLACEHOLDER = re.compile(r"\?")


def translate(sql: str) -> str:
    """The store's SQLite SQL for PostgreSQL, placeholders numbered.

    >>> translate("SELECT * FROM t WHERE a = ? AND (n - 1) % ? = 0")
    'SELECT * FROM t WHERE a = $1 AND (n - 1) % $2 = 0'
    >>> translate("BEGIN IMMEDIATE"), translate("SET n = MAX(n, ?)")
    ('BEGIN', 'SET n = GREATEST(n, $1)')
    """
    if sql == "BEGIN IMMEDIATE":
        return "BEGIN"
    numbers = itertools.count(1)
    return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", sql.replace("MAX(", "GREATEST("))


def without_password(url: str) -> str:
    """The URL as messages may show it.

    >>> without_password("postgresql://digest:s3cret@db.example.org:5432/digest")
    'postgresql://digest:***@db.example.org:5432/digest'
    """
    return redact_url(url)


class Row(tuple[Any, ...]):
    """A row read by position or by column name, as ``sqlite3.Row`` is."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}
    kind = type("Row", (Row,), {"names": names})
    return lambda values: kind(values)


def _as_sqlite_error(exc: Exception) -> sqlite3.Error:
    import psycopg

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = f"postgresql: {redact_text(first)}"  # libpq may quote the connection string it was given
    if isinstance(exc, psycopg.errors.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.OperationalError):
        return sqlite3.OperationalError(text)
    return sqlite3.DatabaseError(text)


class Cursor:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class Connection:
    """The ``sqlite3.Connection`` subset the store uses, over psycopg."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:
            raise sqlite3.OperationalError(
                "postgresql: the driver is not installed; install it with: pip install 'digest[postgresql]'"
            ) from exc

        try:
            self._conn = psycopg.connect(url, autocommit=True, row_factory=_row_factory, connect_timeout=10)
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from exc

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        import psycopg

        try:
            if not params:  # no parameters: the statement (or several: a migration) goes as it is
                return Cursor(self._conn.execute(translate(sql) if sql == "BEGIN IMMEDIATE" else sql))
            return Cursor(self._raw().execute(translate(sql), list(params)))
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Cursor:
        import psycopg

        try:
            cursor = self._raw()
            cursor.executemany(translate(sql), [list(r) for r in rows])
            return Cursor(cursor)
        except psycopg.Error as exc:
            raise _as_sqlite_error(exc) from exc

    def _raw(self) -> Any:
        import psycopg

        return psycopg.RawCursor(self._conn)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self._conn.close()
