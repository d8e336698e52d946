"""PostgreSQL's dialect (see ``dialect``): the store's SQL sent through psycopg 3, rows read as SQLite's
are. Imported only when a ``postgresql://`` database is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from digest.errors import StoreError
from digest.redact import redact_text, redact_url
from digest.store.dialect import Connection, Dialect, numbered


class PostgreSQL(Dialect):
    """PostgreSQL 15 through psycopg 3: ``$n`` placeholders sent through a ``RawCursor`` (psycopg then
    parses no statement for placeholders: that cost an eighth of a run at 1,000 parameters a statement),
    autocommit with the store's own ``BEGIN``/``COMMIT``, rows read by position or by name."""

    name: ClassVar[str] = "postgresql"
    greatest: ClassVar[str] = "GREATEST"
    clock: ClassVar[str] = "extract(epoch from clock_timestamp())::double precision"
    session: ClassVar[str] = "pg_backend_pid()"
    skip_locked: ClassVar[str] = " FOR UPDATE SKIP LOCKED"
    gathers_statistics: ClassVar[bool] = True
    shared_by_hosts: ClassVar[bool] = True
    MIGRATION_KEY: ClassVar[int] = 7320451  # advisory lock: one host at a time upgrades the schema

    def __init__(self) -> None:
        import psycopg

        super().__init__()
        self.psycopg = psycopg
        self.errors = (psycopg.Error,)

    def run(self, raw: Any, sql: str, params: Sequence[Any]) -> Any:
        if sql == "BEGIN IMMEDIATE":  # PostgreSQL locks rows as they are written, not the database
            sql = "BEGIN"
        return _Cursor(self.psycopg.RawCursor(raw).execute(numbered(sql), list(params)))

    def run_many(self, raw: Any, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self.psycopg.RawCursor(raw)
        cursor.executemany(numbered(sql), [list(r) for r in rows])
        return _Cursor(cursor)

    def in_transaction(self, raw: Any) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(raw.info.transaction_status != TransactionStatus.IDLE)

    def same(self, column: str, other: str) -> str:
        return f"{column} = {other}"  # the address columns are byte-wise ("C") here

    def same_params(self, value: Any) -> tuple[Any, ...]:
        return (value,)

    def within(self, column: str, subquery: str) -> str:
        return f"{column} IN {subquery}"

    def unindexed(self, column: str) -> str:
        return column

    def text_type(self) -> str:
        return 'TEXT COLLATE "C"'

    def session_gone(self, owner_pid: str) -> str:
        return f" OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = {owner_pid})"

    def lock_for_transaction(self, conn: Connection, key: int) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def members_alive(self, conn: Connection, group: int, key: int) -> bool:
        row = conn.execute("SELECT pg_try_advisory_xact_lock(?, ?)", (group, key)).fetchone()
        return not row[0]

    def attend(self, conn: Connection, group: int, key: int) -> None:
        conn.execute("SELECT pg_advisory_lock_shared(?, ?)", (group, key))

    @contextmanager
    def taking_turns(self, conn: Connection, key: int) -> Iterator[None]:
        conn.execute("SELECT pg_advisory_lock(?)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(?)", (key,))

    def analyze(self, conn: Connection, tables: Sequence[str]) -> None:
        conn.execute(f"ANALYZE {', '.join(tables)}")

    def settle(self, conn: Connection, *, sync: str) -> None:
        """Nothing to set per connection: PostgreSQL's durability is the server's."""

    def ddl(self, migration: str) -> str:
        from digest.store.schema import for_postgresql

        return for_postgresql(migration)

    def tables(self, conn: Connection) -> list[str]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY c.oid"
        )
        return [str(r[0]) for r in rows]

    def columns(self, conn: Connection, table: str) -> list[str]:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [str(r[0]) for r in rows]

    def identities(self, conn: Connection) -> list[tuple[str, str]]:
        """(table, column) of every generated id, whose sequence a copy must move past the copied ids."""
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name"
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    def version(self, conn: Connection) -> int:
        if "digest_schema" not in self.tables(conn):
            return 0
        row = conn.execute("SELECT max(version) FROM digest_schema").fetchone()
        return int(row[0] or 0)

    def migrate(
        self, conn: Connection, steps: Sequence[tuple[int, str]], after: Callable[[Connection, int], None]
    ) -> None:
        """Every step in one transaction (PostgreSQL's DDL is transactional), under an advisory lock, so
        hosts that start at once upgrade the database once."""
        from digest.store.schema import POSTGRESQL_PREAMBLE

        with conn.transaction() as tx:
            self.lock_for_transaction(tx, self.MIGRATION_KEY)
            tx.execute("CREATE TABLE IF NOT EXISTS digest_schema (version INTEGER NOT NULL)")
            tx.execute(POSTGRESQL_PREAMBLE)
            version = self.version(tx)
            done = version
            for step, migration in steps:
                if step < version:  # another host took it while this one waited for the lock
                    continue
                tx.execute(self.ddl(migration))
                after(tx, step)
                done = step + 1
            if done > version:
                tx.execute("DELETE FROM digest_schema")
                tx.execute("INSERT INTO digest_schema (version) VALUES (?)", (done,))

    def connect(self, where: str, *, sync: str, read_only: bool) -> Connection:
        shown = redact_url(where)
        try:
            raw = self.psycopg.connect(where, autocommit=True, row_factory=_row_factory, connect_timeout=10)
        except self.psycopg.Error as exc:
            raise self.error(exc, shown) from exc
        return Connection(raw, self, shown, read_only=read_only)

    def scratch_copy(self, conn: Connection, where: str) -> Connection:
        """A new connection to ``where``, inside a transaction that is never committed: what it writes,
        nobody sees, and closing it throws it all away."""
        copy = self.connect(where, sync="FULL", read_only=False)
        copy.scratch = True
        copy.execute("BEGIN")
        return copy

    def error(self, exc: BaseException, path: str) -> StoreError:
        text = str(exc).strip()
        first = redact_text(text.splitlines()[0] if text else type(exc).__name__)  # libpq may quote its URL
        if isinstance(exc, self.psycopg.OperationalError):
            return StoreError(
                f"the database {path} failed: postgresql: {first}",
                hint="check that the server runs and answers, and the database setting (PGPASSWORD or "
                "~/.pgpass for the password); run again with -vv for details",
            )
        return StoreError(
            f"the database {path} failed: postgresql: {first}", hint="run again with -vv for details"
        )


class _Row(tuple[Any, ...]):
    """A row read by position or by column name, as ``sqlite3.Row`` is."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    names = {d.name: i for i, d in enumerate(cursor.description or ())}
    kind = type("Row", (_Row,), {"names": names})
    return lambda values: kind(values)


class _Cursor:
    """A psycopg cursor as the store reads one: ``fetchone``/``fetchall``/iteration even after a statement
    without rows, and ``rowcount``."""

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
