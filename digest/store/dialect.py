"""The one place that knows which database the store speaks to: SQLite's dialect and PostgreSQL's.

The store's SQL is written once, in SQLite's dialect with ``?`` placeholders. A ``Dialect`` owns everything
that differs: how a statement's placeholders are written (PostgreSQL's ``$1, $2…``, numbered once per
distinct statement and cached; a ``?`` inside a string literal, a quoted name or a comment is left alone),
the larger-of function (``MAX`` / ``GREATEST``), the database clock in seconds, a claim's session and
``FOR UPDATE SKIP LOCKED``, advisory locks (none on SQLite, where the run lock serialises runs), the
schema's version and its migrations' DDL, statistics, a scratch copy for dry runs and previews, and which
driver exceptions mean what, as a ``StoreError`` that names the database and the fix.

``Connection`` is what every repository holds: ``execute``, ``executemany`` and ``transaction`` over the
driver's connection, in the dialect, every driver failure raised as a ``StoreError``. Nothing outside this
module and PostgreSQL's own (``postgresql.py``) imports a database driver or asks which dialect it is
(``tests/test_architecture.py``).

``postgresql.py``, and psycopg with it, is imported only when a ``postgresql://`` database is opened.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from digest.errors import StoreError
from digest.redact import redact_url

WAL_TRIES = 200  # asks for the switch to WAL while other processes hold the lock it needs (10 s in all)

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?")


@functools.lru_cache(maxsize=4096)
def numbered(sql: str) -> str:
    """``?`` placeholders as ``$1, $2…``, outside string literals, quoted names and comments; once per
    distinct statement (a batch's statement of 1,000 parameters is written once, not per call).

    >>> numbered("SELECT 'why?' AS q FROM t WHERE a = ? AND b = ? -- why?")
    "SELECT 'why?' AS q FROM t WHERE a = $1 AND b = $2 -- why?"
    """
    count = 0

    def number(m: re.Match[str]) -> str:
        nonlocal count
        if m.group(0) != "?":
            return m.group(0)
        count += 1
        return f"${count}"

    return _TOKENS.sub(number, sql)


class Connection:
    """A database connection in its dialect: see the module's docstring. ``path`` names the database in
    messages (a URL without its password); ``scratch``: inside a transaction that is never committed (a
    PostgreSQL snapshot), so each ``transaction()`` is a savepoint."""

    def __init__(
        self, raw: Any, dialect: Dialect, path: str, *, read_only: bool = False, scratch: bool = False
    ) -> None:
        self.raw, self.dialect, self.path = raw, dialect, path
        self.read_only, self.scratch = read_only, scratch

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.dialect.run(self.raw, sql, params)
        except self.dialect.errors as exc:
            raise self.dialect.error(exc, self.path) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        try:
            return self.dialect.run_many(self.raw, sql, rows)
        except self.dialect.errors as exc:
            raise self.dialect.error(exc, self.path) from exc

    @property
    def in_transaction(self) -> bool:
        return self.dialect.in_transaction(self.raw)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction, taking the write lock at once (SQLite's ``BEGIN IMMEDIATE``), so two
        writers never deadlock half-way; a savepoint inside a scratch copy."""
        begin, rollback, commit = ("BEGIN IMMEDIATE", "ROLLBACK", "COMMIT")
        if self.scratch:
            begin, rollback, commit = ("SAVEPOINT tx", "ROLLBACK TO SAVEPOINT tx", "RELEASE SAVEPOINT tx")
        self.execute(begin)
        try:
            yield self
        except BaseException:
            if self.in_transaction:
                self.execute(rollback)
            raise
        self.execute(commit)

    def close(self) -> None:
        self.raw.close()


class Dialect:
    """SQLite's dialect (the one the store's SQL is written in); ``PostgreSQL`` changes what differs."""

    name: ClassVar[str] = "sqlite"
    greatest: ClassVar[str] = "MAX"  # the larger of two values (SQLite's scalar, two-argument MAX)
    clock: ClassVar[str] = "((julianday('now') - 2440587.5) * 86400.0)"  # the database's clock, seconds
    session: ClassVar[str] = "NULL"  # who holds a claim, for as long as its connection lives
    skip_locked: ClassVar[str] = ""  # claims skip rows another transaction is claiming
    gathers_statistics: ClassVar[bool] = False  # whether ``analyze`` does anything
    # Whether runs on several hosts share this database's day through claims (else one run at a time,
    # under a lock file beside the database: ``run.runlock``).
    shared_by_hosts: ClassVar[bool] = False

    def __init__(self) -> None:
        self.errors: tuple[type[BaseException], ...] = (sqlite3.Error,)  # what the driver raises

    # -- statements ----------------------------------------------------------------------------------

    def run(self, raw: Any, sql: str, params: Sequence[Any]) -> Any:
        return raw.execute(sql, params)

    def run_many(self, raw: Any, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return raw.executemany(sql, rows)

    def in_transaction(self, raw: Any) -> bool:
        return bool(raw.in_transaction)

    def same(self, column: str, other: str) -> str:
        """SQL: ``column`` equal to ``other`` byte for byte, through ``column``'s index (SQLite's address
        columns compare with NOCASE, so BINARY is added; see ``schema``)."""
        return f"{column} = {other} AND {column} COLLATE BINARY = {other}"

    def same_params(self, value: Any) -> tuple[Any, ...]:
        """The parameters of ``same(column, "?")``."""
        return (value, value)

    def within(self, column: str, subquery: str) -> str:
        """SQL: ``column`` byte for byte among what ``subquery`` selects (see ``same``)."""
        return f"{column} IN {subquery} AND {column} COLLATE BINARY IN {subquery}"

    def unindexed(self, column: str) -> str:
        """``column`` in a WHERE clause the planner must not pick an index for (SQLite plans without
        statistics; PostgreSQL plans from them)."""
        return f"+{column}"

    def text_type(self) -> str:
        """The DDL type of a temporary table's address column, compared byte for byte."""
        return "TEXT COLLATE BINARY"

    # -- locks and sessions (PostgreSQL's; on SQLite the run lock serialises runs) ----------------------

    def session_gone(self, owner_pid: str) -> str:
        """SQL: the claim's session is gone (its holder died), or ``""`` where sessions are not tracked."""
        return ""

    def lock_for_transaction(self, conn: Connection, key: int) -> None:
        """Hold ``key`` until the transaction ends (one process at a time in a decision)."""

    def members_alive(self, conn: Connection, group: int, key: int) -> bool:
        """Whether a session holds (``group``, ``key``) shared: whether anyone still works in a run."""
        return False

    def attend(self, conn: Connection, group: int, key: int) -> None:
        """Hold (``group``, ``key``) shared for the rest of this session (membership of a run)."""

    @contextmanager
    def taking_turns(self, conn: Connection, key: int) -> Iterator[None]:
        """Hold ``key`` for the duration: sessions of several hosts take turns."""
        yield

    def analyze(self, conn: Connection, tables: Sequence[str]) -> None:
        """Refresh the planner's statistics of ``tables``."""

    # -- schema --------------------------------------------------------------------------------------

    def ddl(self, migration: str) -> str:
        """A migration in this dialect (SQLite reads ``-- postgresql:`` lines as comments)."""
        return migration

    def tables(self, conn: Connection) -> list[str]:
        """The database's tables, in the order they were created (parents before children)."""
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
        return [str(r[0]) for r in rows if not str(r[0]).startswith("sqlite_")]

    def columns(self, conn: Connection, table: str) -> list[str]:
        return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]

    def version(self, conn: Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(
        self, conn: Connection, steps: Sequence[tuple[int, str]], after: Callable[[Connection, int], None]
    ) -> None:
        """Take the database through ``steps`` ((version, SQL) each), each in its own transaction that
        reads the version again (several processes may open a new database at once)."""
        for step, migration in steps:
            with conn.transaction() as tx:
                if self.version(tx) > step:  # another process (a server's worker) took this step meanwhile
                    continue
                for statement in self.ddl(migration).split(";"):
                    if statement.strip():
                        tx.execute(statement)
                after(tx, step)
                tx.execute(f"PRAGMA user_version = {step + 1}")

    # -- connecting ----------------------------------------------------------------------------------

    def connect(self, where: str, *, sync: str, read_only: bool) -> Connection:
        memory = where == ":memory:"
        if read_only and not (memory or Path(where).is_file()):
            raise StoreError(f"no database at {where} yet", hint="run digest ingest or digest run first")
        if not (memory or read_only):
            try:
                Path(where).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder {Path(where).parent}: {exc.strerror}",
                    hint="check the database setting and this user's permissions",
                ) from exc
        target = f"file:{Path(where).resolve()}?mode=ro" if read_only else where
        try:
            # One thread uses a connection at a time; another may close it (the web app closes its
            # threads' connections when it stops). The module serialises calls on it anyway.
            raw = sqlite3.connect(
                target, isolation_level=None, timeout=30, uri=read_only, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self.error(exc, where) from exc
        raw.row_factory = sqlite3.Row
        conn = Connection(raw, self, where, read_only=read_only)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def settle(self, conn: Connection, *, sync: str) -> None:
        """Once the database is known to be digest's (nothing is written to another application's file):
        WAL (readers never wait for a writer) and ``synchronous`` (see ``database.RUN_SYNC``)."""
        if conn.read_only:
            return
        if conn.path != ":memory:":
            self._wal(conn)
        conn.execute(f"PRAGMA synchronous = {'NORMAL' if sync == 'NORMAL' else 'FULL'}")

    @staticmethod
    def _wal(conn: Connection, tries: int = WAL_TRIES) -> None:
        """Switch the database to WAL. Processes that open a new database at once (a server's workers)
        each ask for the exclusive lock that takes; SQLite answers one of them "locked" at once instead of
        waiting (waiting could deadlock), so it asks again, ``tries`` times 50 ms apart at most."""
        for attempt in range(tries):
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except StoreError as exc:
                if "locked" not in exc.message or attempt == tries - 1:
                    raise
                time.sleep(0.05)

    def scratch_copy(self, conn: Connection, where: str) -> Connection:
        """A copy the real database never sees: in memory, whole."""
        copy = sqlite3.connect(":memory:", isolation_level=None)
        conn.raw.backup(copy)
        copy.row_factory = sqlite3.Row
        copy.execute("PRAGMA foreign_keys = ON")
        return Connection(copy, self, ":memory:")

    def error(self, exc: BaseException, path: str) -> StoreError:
        """A driver failure as what it means for the operator, naming the database, with the fix.

        >>> Dialect().error(sqlite3.DatabaseError("database disk image is malformed"), "d.sqlite3").message
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


SQLITE = Dialect()


def is_server(where: str | Path) -> bool:
    """Whether a database setting names a database server (a ``postgresql://`` URL), not a SQLite file.

    >>> is_server("postgresql://digest@db/digest"), is_server("var/digest.sqlite3")
    (True, False)
    """
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


def shared_by_hosts(where: str | Path) -> bool:
    """Whether runs on several hosts share the day through this database (see ``Dialect.shared_by_hosts``);
    without importing a server's driver."""
    return is_server(where)


def dialect_of(where: str) -> Dialect:
    """The dialect of a database setting: a ``postgresql://`` URL, else a SQLite file."""
    if is_server(where):
        from digest.store.postgresql import PostgreSQL  # its driver only when such a database is opened

        try:
            return PostgreSQL()
        except ImportError as exc:
            raise StoreError(
                f"the database {redact_url(where)} is PostgreSQL, whose driver is not installed",
                hint="install it with: pip install 'digest[postgresql]'",
            ) from exc
    return SQLITE
