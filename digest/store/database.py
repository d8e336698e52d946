"""The state database: the only package that speaks SQL.

A ``Store`` is one connection (``dialect.Connection``: SQLite's or PostgreSQL's dialect behind one
interface) and the repositories over it, one per idea:

- ``store.papers``: every paper seen, keyed by arXiv id without version where known, else by normalised
  title; the same paper from two sources, or twice in one listing, is one row. ``first_seen`` drives the
  diff. With each URL source's ETag / Last-Modified, saved in the same transaction as its papers;
- ``store.readers``: the subscribers (the config's and those added by the CLI, the web app or the API),
  keyed by their mailbox (``identity.mailbox_key``), their feedback and their erasure;
- ``store.outbox``: which papers went to whom, when, in which message; a paper is written there only after
  its message was accepted;
- ``store.runs``: runs that share a day's work across processes and hosts;
- ``store.health``: each source's health and the figures ``/metrics`` shows;
- ``store.limits``: the web app's rate limits.

The schema's version is the dialect's (SQLite's ``PRAGMA user_version``, PostgreSQL's ``digest_schema``);
``MIGRATIONS[n]`` takes a database from version n to n+1, so an old database is upgraded in place when
opened and a newer one is refused rather than damaged.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from pathlib import Path

from digest.errors import StoreError
from digest.store.dialect import Connection, dialect_of
from digest.store.feedback import Feedback
from digest.store.health import Health
from digest.store.library import Library
from digest.store.outbox import Outbox
from digest.store.papers import Papers
from digest.store.readers import Readers
from digest.store.runs import Runs
from digest.store.schema import MIGRATIONS, REKEY_STEP, SCHEMA_VERSION, rekey_addresses

# A run's connection commits with synchronous=NORMAL: in WAL mode a commit then survives the process being
# killed (the log is written before COMMIT returns) but not a power cut, which may undo its last commits.
# What those hold is the run's "sent" marks, so the worst a power cut can do is resend a few messages (the
# outbox rows say which); it can never lose one. FULL costs an fsync per commit, and with several SMTP
# workers each recording every message as it is accepted, lock waits that cut throughput.
RUN_SYNC = "NORMAL"
OURS = {"papers", "subscribers", "messages"}  # the tables that say a database is digest's


class RateLimits:
    """The web app's rate limits (``store.limits``), counted in the database so that every process and
    host on it counts the same events."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def allow(self, what: str, limit: int, window: float, now: float) -> bool:
        """Record one event for ``what`` at ``now`` (seconds) if fewer than ``limit`` were recorded in the
        ``window`` seconds before; False (nothing recorded) if not. Events older than a day are dropped.
        ``what`` is kept as a SHA-256 only: a stranger's address is not kept in the clear."""
        key = hashlib.sha256(what.encode()).hexdigest()
        with self.conn.transaction() as tx:
            tx.execute("DELETE FROM rate_events WHERE at <= ?", (now - max(window, 86_400),))
            (seen,) = tx.execute(
                "SELECT count(*) FROM rate_events WHERE key = ? AND at > ?", (key, now - window)
            ).fetchone()
            if seen >= limit:
                return False
            tx.execute("INSERT INTO rate_events (key, at) VALUES (?, ?)", (key, now))
        return True


class Store:
    """A connection to the state database and its repositories. Use ``Store.open(where)``; close it, or use
    it as a context."""

    def __init__(self, conn: Connection, where: str) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.path = conn.path  # as messages show it: a URL without its password
        self.where = where  # the database setting, to connect again (a PostgreSQL scratch copy)
        self.read_only = conn.read_only
        self.papers = Papers(conn)
        self.readers = Readers(conn)
        self.feedback = Feedback(conn)
        self.library = Library(conn)
        self.outbox = Outbox(conn)
        self.runs = Runs(conn)
        self.health = Health(conn)
        self.limits = RateLimits(conn)

    @classmethod
    def open(cls, path: str | Path, *, sync: str = "FULL", read_only: bool = False) -> Store:
        """Open (creating it and its folder if needed) and migrate the database at ``path``: a SQLite file,
        or a ``postgresql://`` URL.

        ``sync`` is SQLite's ``synchronous``: FULL (each commit on disk before it returns) by default;
        a run's deliveries use NORMAL (see ``RUN_SYNC``). ``read_only`` opens an existing database as it is,
        never creating, migrating or writing it (a preview). A database that holds another application's
        tables is refused before anything is written to it, so it is left byte for byte as it was.
        """
        where = str(path)
        conn = dialect_of(where).connect(where, sync=sync, read_only=read_only)
        store = cls(conn, where)
        try:
            store._refuse_foreign()
            store.dialect.settle(conn, sync=sync)
            if read_only:
                store._check_version(upgrade_hint="run digest run (or digest ingest) once to upgrade it")
            else:
                store._migrate()
        except BaseException:
            conn.close()
            raise
        return store

    def transaction(self) -> AbstractContextManager[Connection]:
        """One write transaction on the store's connection (see ``Connection.transaction``)."""
        return self.conn.transaction()

    def snapshot(self) -> Store:
        """A copy to work on that the real database never sees: what a dry run or a preview uses (SQLite:
        in memory; PostgreSQL: a transaction that is never committed)."""
        return Store(self.dialect.scratch_copy(self.conn, self.where), self.where)

    def ping(self) -> None:
        """A query that reads the schema (a health check): raises StoreError if the database cannot answer."""
        self.conn.execute("SELECT count(*) FROM (SELECT 1 FROM subscribers LIMIT 1) AS one").fetchone()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refuse_foreign(self) -> None:
        """Refuse a database that has tables of its own and not ours (another application's file)."""
        tables = set(self.dialect.tables(self.conn)) - {"digest_schema"}
        if tables and not tables >= OURS:
            raise StoreError(
                f"{self.path} is not a digest database (it has tables {', '.join(sorted(tables)[:5])}); "
                "it was left untouched",
                hint="point the database setting at a new file, or at digest's own database",
            )

    def _check_version(self, upgrade_hint: str | None = None) -> int:
        version = self.dialect.version(self.conn)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the database {self.path} has schema version {version}, newer than this digest "
                f"understands ({SCHEMA_VERSION})",
                hint="upgrade digest",
            )
        if upgrade_hint and version < SCHEMA_VERSION:
            raise StoreError(f"the database {self.path} is from an older digest", hint=upgrade_hint)
        return version

    def _migrate(self) -> None:
        version = self._check_version()
        if version == SCHEMA_VERSION:
            return

        def after(tx: Connection, step: int) -> None:
            if step == REKEY_STEP:
                rekey_addresses(tx)

        steps = [(step, MIGRATIONS[step]) for step in range(version, SCHEMA_VERSION)]
        self.dialect.migrate(self.conn, steps, after)
        self._check_version()  # another host may have taken it further meanwhile
