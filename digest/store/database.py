"""The state database: the only package that speaks SQL (papers and subscribers here, deliveries in
``outbox``, the schema in ``schema``).

SQLite, one file. What it keeps:

- ``papers``: every paper seen, keyed by arXiv id without version where known, else by normalised title;
  the same paper from two sources, or twice in one listing, is one row. ``first_seen`` drives the diff.
- ``subscribers``: profiles added by ``digest subscribe`` or declared in the config (``origin``), keyed by
  their mailbox's canonical key (``identity.mailbox_key``; ``address`` is the address as written). Every
  method that takes an address keys it, so a caller may pass an address in any spelling.
- ``messages`` and ``sent``: which papers went to whom, when, in which message. A paper is written here only
  after its message was accepted.
- ``fetch_state``: ETag / Last-Modified per URL source, saved in the same transaction as its papers.

The schema version is ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes a database from version n to n+1, so
an old file is upgraded in place on open and a newer one is refused rather than damaged.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

from digest.errors import StoreError
from digest.identity import fingerprint, mailbox_key
from digest.models import Paper, Profile, Subscriber, Validators, arxiv_id_from
from digest.store.base import Database, _iso, store_error
from digest.store.figures import Monitoring
from digest.store.outbox import Outbox
from digest.store.runs import Runs
from digest.store.schema import (
    MIGRATIONS,
    POSTGRESQL_PREAMBLE,
    REKEY_STEP,
    SCHEMA_VERSION,
    for_postgresql,
    rekey_addresses,
)

# A run's connection commits with synchronous=NORMAL: in WAL mode a commit then survives the process being
# killed (the log is written before COMMIT returns) but not a power cut, which may undo its last commits.
# What those hold is the run's "sent" marks, so the worst a power cut can do is resend a few messages (the
# outbox rows say which); it can never lose one. FULL costs an fsync per commit: 0.17 ms here, and with
# several SMTP workers each recording every message as it is accepted, lock waits that cut throughput.
RUN_SYNC = "NORMAL"

# A subscriber's profile columns (``Store._profile_row`` gives their values, then the fingerprint that
# ``_FLOOR`` reads): a reader erased earlier and added again is never sent a paper from before.
_PROFILE = "email, address, name, keywords, exclude, max_papers, about, seeds, timezone, send_at, cadence"
_PROFILE_MARKS = ",".join("?" * len(_PROFILE.split(",")))
_FLOOR = "(SELECT coalesce(max(last_ref), 0) FROM erasures WHERE fingerprint = ?)"


def _subscriber(r: sqlite3.Row) -> Subscriber:
    return Subscriber(
        email=r["address"] or r["email"],
        name=r["name"],
        profile=Profile(
            tuple(json.loads(r["keywords"])),
            tuple(json.loads(r["exclude"])),
            r["max_papers"],
            about=r["about"],
            seeds=tuple(json.loads(r["seeds"])),
            timezone=r["timezone"],
            send_at=r["send_at"],
            cadence=r["cadence"],
        ),
        active=bool(r["active"]) and (r["origin"] == "cli" or bool(r["in_config"])),
        bouncing=r["bouncing_since"] is not None,
        bounce_reason=r["bounce_reason"],
    )


class Store(Outbox, Runs, Monitoring):
    """A connection to the state database. Use ``Store.open(path)``; close it, or use it as a context."""

    url = ""  # a PostgreSQL database's URL (``path`` is the same without its password)

    # -- opening -------------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, sync: str = "FULL", read_only: bool = False) -> Store:
        """Open (creating it and its folder if needed) and migrate the database at ``path``.

        ``sync`` is SQLite's ``synchronous``: FULL (each commit on disk before it returns) by default;
        a run's deliveries use NORMAL (see ``RUN_SYNC``). ``read_only`` opens an existing database as it is,
        never creating, migrating or writing it (a preview).

        A SQLite file that holds another application's tables is refused before anything is written to
        it, so it is left byte for byte as it was.
        """
        where = str(path)
        if where.startswith(("postgresql://", "postgres://")):
            return cls._open_postgresql(where, read_only)
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
        try:
            target = f"file:{Path(where).resolve()}?mode=ro" if read_only else where
            conn = sqlite3.connect(target, isolation_level=None, timeout=30, uri=read_only)
            conn.row_factory = sqlite3.Row
            store = cls(conn, where, read_only)
            store._refuse_foreign()
            conn.execute("PRAGMA foreign_keys = ON")
            if read_only:
                store._check_version(upgrade_hint="run digest run (or digest ingest) once to upgrade it")
                return store
            if not memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'NORMAL' if sync == 'NORMAL' else 'FULL'}")
            store._migrate()
        except sqlite3.Error as exc:
            raise store_error(exc, where) from exc
        return store

    @classmethod
    def _open_postgresql(cls, url: str, read_only: bool) -> Store:
        """A PostgreSQL database (#16): the same schema and migrations (``schema.for_postgresql``), its
        version in the table ``digest_schema``; errors name the URL without its password."""
        from digest.store import postgresql

        shown = postgresql.without_password(url)
        try:
            store = cls(postgresql.Connection(url), shown, read_only)
            store.dialect, store.url = "postgresql", url
            store._refuse_foreign()
            if read_only:
                store._check_version(upgrade_hint="run digest run (or digest ingest) once to upgrade it")
            else:
                store._migrate()
        except sqlite3.Error as exc:
            raise store_error(exc, shown) from exc
        return store

    def _tables(self) -> set[str]:
        """The database's tables (on PostgreSQL, ``digest_schema`` holds the schema version)."""
        if self.dialect == "postgresql":
            rows = self.conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                " AND table_type = 'BASE TABLE'"
            )
        else:
            rows = self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(r[0]) for r in rows}

    def _refuse_foreign(self) -> None:
        """Refuse a database that has tables of its own and not ours (another application's file)."""
        tables = self._tables() - {"digest_schema"}
        if tables and not {"papers", "subscribers", "messages"} <= tables:
            self.conn.close()
            raise StoreError(
                f"{self.path} is not a digest database (it has tables {', '.join(sorted(tables)[:5])}); "
                "it was left untouched",
                hint="point the database setting at a new file, or at digest's own database",
            )

    def snapshot(self) -> Store:
        """A copy to work on that the real database never sees: what a dry run or a preview uses. For SQLite
        an in-memory copy; for PostgreSQL a connection inside a transaction that is never committed."""
        if self.dialect == "postgresql":
            from digest.store import postgresql

            scratch = Store(postgresql.Connection(self.url), self.path)
            scratch.dialect, scratch.url, scratch.scratch = "postgresql", self.url, True
            scratch.conn.execute("BEGIN")
            return scratch
        assert isinstance(self.conn, sqlite3.Connection)
        copy = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.backup(copy)
        copy.row_factory = sqlite3.Row
        copy.execute("PRAGMA foreign_keys = ON")
        return Store(copy, ":memory:")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _version(self) -> int:
        if self.dialect == "postgresql":
            if "digest_schema" not in self._tables():
                return 0
            row = self.conn.execute("SELECT max(version) FROM digest_schema").fetchone()
            return int(row[0] or 0)
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, upgrade_hint: str | None = None) -> int:
        version = self._version()
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
        if self.dialect == "postgresql":
            self._migrate_postgresql()
            return
        version = self._check_version()
        for step in range(version, SCHEMA_VERSION):
            with self.transaction() as tx:
                if self._version() > step:  # another process (a server's worker) took this step meanwhile
                    continue
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        tx.execute(statement)
                if step == REKEY_STEP:
                    rekey_addresses(tx, self.dialect)
                tx.execute(f"PRAGMA user_version = {step + 1}")

    def _migrate_postgresql(self) -> None:
        """Each step in one transaction (PostgreSQL's DDL is transactional), under an advisory lock, so
        hosts that start at once upgrade the database once."""
        self._check_version()
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(7320451)")
            tx.execute("CREATE TABLE IF NOT EXISTS digest_schema (version INTEGER NOT NULL)")
            tx.execute(POSTGRESQL_PREAMBLE)
            version = self._check_version()
            for step in range(version, SCHEMA_VERSION):
                tx.execute(for_postgresql(MIGRATIONS[step]))
                if step == REKEY_STEP:
                    rekey_addresses(tx, self.dialect)
            if version < SCHEMA_VERSION:
                tx.execute("DELETE FROM digest_schema")
                tx.execute("INSERT INTO digest_schema (version) VALUES (?)", (SCHEMA_VERSION,))

    # -- papers --------------------------------------------------------------------------------------

    def ingest(
        self,
        papers: Iterable[Paper],
        now: datetime,
        *,
        source: str | None = None,
        url: str | None = None,
        validators: Validators | None = None,
    ) -> int:
        """Store papers (folding duplicates into one row each) and, for a URL source, its validators.

        All in one transaction: a failure stores nothing and keeps the old validators. Returns how many
        papers were new.
        """
        new = 0
        stamp = _iso(now)
        with self.transaction() as tx:
            for paper in papers:
                pid = self._find(tx, paper)
                if pid is None:
                    self._insert(tx, paper, stamp)
                    new += 1
                else:
                    self._merge(tx, pid, paper, stamp)
            if source is not None and url is not None and validators is not None:
                tx.execute(
                    "INSERT INTO fetch_state (source, url, etag, last_modified, fetched_at) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (source) DO UPDATE SET url = excluded.url, etag = excluded.etag,"
                    " last_modified = excluded.last_modified, fetched_at = excluded.fetched_at",
                    (source, url, validators.etag, validators.last_modified, stamp),
                )
        return new

    @staticmethod
    def _find(tx: Database, paper: Paper) -> int | None:
        """The row that already holds this paper: by arXiv id, else by title among id-less rows (or any)."""
        if paper.arxiv_id:
            row = tx.execute("SELECT pid FROM papers WHERE arxiv_id = ?", (paper.arxiv_id,)).fetchone()
            if row:
                return int(row[0])
            row = tx.execute(
                "SELECT pid FROM papers WHERE title_key = ? AND arxiv_id IS NULL", (paper.title_key,)
            ).fetchone()
        else:
            row = tx.execute(
                "SELECT pid FROM papers WHERE title_key = ? ORDER BY pid LIMIT 1", (paper.title_key,)
            ).fetchone()
        return int(row[0]) if row else None

    @staticmethod
    def _insert(tx: Database, p: Paper, stamp: str) -> None:
        tx.execute(
            "INSERT INTO papers (arxiv_id, title_key, title, abstract, authors, org, author_count, published,"
            " upvotes, url, source, first_seen, last_seen) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                p.arxiv_id,
                p.title_key,
                p.title,
                p.abstract,
                json.dumps(list(p.authors)),
                p.org,
                p.author_count,
                p.published.isoformat() if p.published else None,
                p.upvotes,
                p.url,
                p.source,
                stamp,
                stamp,
            ),
        )

    @staticmethod
    def _merge(tx: Database, pid: int, p: Paper, stamp: str) -> None:
        """Fill what the stored row lacks; upvotes only grow; first_seen never changes."""
        tx.execute(
            "UPDATE papers SET arxiv_id = COALESCE(arxiv_id, ?),"
            " abstract = CASE WHEN length(?) > length(abstract) THEN ? ELSE abstract END,"
            " authors = CASE WHEN authors = '[]' THEN ? ELSE authors END,"
            " org = COALESCE(org, ?), author_count = COALESCE(author_count, ?),"
            " published = COALESCE(published, ?), upvotes = MAX(COALESCE(upvotes, 0), COALESCE(?, 0)),"
            " url = COALESCE(url, ?), last_seen = ? WHERE pid = ?",
            (
                p.arxiv_id,
                p.abstract,
                p.abstract,
                json.dumps(list(p.authors)),
                p.org,
                p.author_count,
                p.published.isoformat() if p.published else None,
                p.upvotes,
                p.url,
                stamp,
                pid,
            ),
        )

    @staticmethod
    def _paper(row: sqlite3.Row) -> Paper:
        return Paper(
            title=row["title"],
            abstract=row["abstract"],
            arxiv_id=row["arxiv_id"],
            authors=tuple(json.loads(row["authors"])),
            org=row["org"],
            author_count=row["author_count"],
            published=date.fromisoformat(row["published"]) if row["published"] else None,
            upvotes=row["upvotes"],
            url=row["url"],
            source=row["source"],
            ref=row["pid"],
        )

    def papers_by_refs(self, refs: Sequence[int]) -> list[Paper]:
        """Stored papers in the order of ``refs`` (a digest being resent)."""
        if not refs:
            return []
        marks = ",".join("?" * len(refs))
        rows = {r["pid"]: r for r in self.conn.execute(f"SELECT * FROM papers WHERE pid IN ({marks})", refs)}
        return [self._paper(rows[ref]) for ref in refs if ref in rows]

    def recent_papers(self, since: datetime) -> list[Paper]:
        """Papers first seen at or after ``since``, oldest first: the pool every subscriber's diff draws on."""
        rows = self.conn.execute(
            "SELECT * FROM papers WHERE first_seen >= ? ORDER BY pid", (_iso(since),)
        ).fetchall()
        return [self._paper(r) for r in rows]

    def find_papers(self, names: Iterable[str]) -> dict[str, Paper]:
        """Stored papers by the names a reader gives them (an arXiv id, with or without version or as a
        link, else the exact title, compared as ``normalise_title`` folds it); unknown names are left out.

        The same identity rule as ingesting (``_find``): one lookup per name (seeds are few per profile, and
        a run resolves each distinct name once), then the papers in one query."""
        refs = {name: self._find(self.conn, Paper(name, "", arxiv_id=arxiv_id_from(name))) for name in names}
        papers = {p.ref: p for p in self.papers_by_refs([r for r in refs.values() if r is not None])}
        return {name: papers[ref] for name, ref in refs.items() if ref is not None and ref in papers}

    def set_feedback(self, email: str, ref: int, kind: str | None, now: datetime) -> None:
        """Record the reader's "more" or "less" like paper ``ref`` (replacing an earlier one); None undoes it."""
        email = mailbox_key(email)
        with self.transaction() as tx:
            if kind is None:
                tx.execute("DELETE FROM feedback WHERE email = ? AND pid = ?", (email, ref))
            else:
                tx.execute(
                    "INSERT INTO feedback (email, pid, kind, at) VALUES (?,?,?,?) ON CONFLICT (email, pid)"
                    " DO UPDATE SET kind = excluded.kind, at = excluded.at",
                    (email, ref, kind, _iso(now)),
                )

    def feedback(self, emails: Sequence[str]) -> dict[str, dict[str, list[Paper]]]:
        """For a batch of subscribers: mailbox key -> {"more": papers, "less": papers}, oldest first."""
        out: dict[str, dict[str, list[Paper]]] = {}
        keys = [mailbox_key(e) for e in emails]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(
                f"SELECT f.email AS reader, f.kind, p.* FROM feedback f JOIN papers p ON p.pid = f.pid"
                f" WHERE f.email IN ({marks}) ORDER BY f.at, f.pid",
                tuple(chunk),
            ):
                mine = out.setdefault(r["reader"], {"more": [], "less": []})
                mine[r["kind"]].append(self._paper(r))
        return out

    def paper_vectors(self, model: str, refs: Sequence[int]) -> dict[int, bytes]:
        """The stored vectors (float32 bytes) of ``model`` for those of ``refs`` that have one."""
        out: dict[int, bytes] = {}
        for start in range(0, len(refs), 500):
            chunk = refs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for pid, vector in self.conn.execute(
                f"SELECT pid, vector FROM paper_vectors WHERE model = ? AND pid IN ({marks})", (model, *chunk)
            ):
                out[pid] = vector
        return out

    def save_paper_vectors(self, model: str, vectors: Iterable[tuple[int, bytes]]) -> None:
        with self.transaction() as tx:
            tx.executemany(
                "INSERT INTO paper_vectors (pid, model, vector) VALUES (?, ?, ?)"
                " ON CONFLICT (pid, model) DO UPDATE SET vector = excluded.vector",
                [(ref, model, blob) for ref, blob in vectors],
            )

    def papers_version(self, since: datetime) -> tuple[int, int]:
        """(how many, newest ref) of the papers ``recent_papers(since)`` would return: one indexed query that
        says whether an index built on them is still current, without reading them."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(max(pid), 0) FROM papers WHERE first_seen >= ?", (_iso(since),)
        ).fetchone()
        return int(row[0]), int(row[1])

    def validators(self, source: str, url: str) -> Validators | None:
        row = self.conn.execute(
            "SELECT etag, last_modified FROM fetch_state WHERE source = ? AND url = ?", (source, url)
        ).fetchone()
        return Validators(row["etag"], row["last_modified"]) if row else None

    # -- subscribers ---------------------------------------------------------------------------------

    def sync_config_subscribers(self, subscribers: Iterable[Subscriber], now: datetime) -> None:
        """Make the config's subscribers the store's ``config`` subscribers.

        A config subscriber's profile comes from the config; one who unsubscribed stays unsubscribed;
        one removed from the config gets no more mail.
        """
        stamp = _iso(now)
        with self.transaction() as tx:
            tx.execute("UPDATE subscribers SET in_config = 0")
            for s in subscribers:
                tx.execute(
                    f"INSERT INTO subscribers ({_PROFILE}, sent_floor, origin, in_config, active, created,"
                    f" updated) VALUES ({_PROFILE_MARKS},{_FLOOR},'config',1,1,?,?)"
                    " ON CONFLICT (email) DO UPDATE SET address = excluded.address, name = excluded.name,"
                    " keywords = excluded.keywords,"
                    " exclude = excluded.exclude, max_papers = excluded.max_papers, about = excluded.about,"
                    " seeds = excluded.seeds, timezone = excluded.timezone, send_at = excluded.send_at,"
                    " cadence = excluded.cadence, origin = 'config',"
                    " in_config = 1, updated = excluded.updated",
                    (*self._profile_row(s), stamp, stamp),
                )

    @staticmethod
    def _profile_row(s: Subscriber) -> tuple[str | int, ...]:
        """The values of ``_PROFILE`` and then ``_FLOOR`` for ``s``."""
        p = s.profile
        key = s.key
        return (
            key,
            s.email,
            s.name,
            json.dumps(list(p.keywords)),
            json.dumps(list(p.exclude)),
            p.max_papers,
            p.about,
            json.dumps(list(p.seeds)),
            p.timezone,
            p.send_at,
            p.cadence,
            fingerprint(key),
        )

    def add_subscriber(self, subscriber: Subscriber, now: datetime) -> bool:
        """Add or update a subscriber from the command line, (re-)activating them. True if new. A mailbox
        already stored keeps the address as first written (the config's spelling wins for its readers)."""
        stamp = _iso(now)
        with self.transaction() as tx:
            existed = tx.execute("SELECT 1 FROM subscribers WHERE email = ?", (subscriber.key,)).fetchone()
            tx.execute(
                f"INSERT INTO subscribers ({_PROFILE}, sent_floor, origin, active, created, updated)"
                f" VALUES ({_PROFILE_MARKS},{_FLOOR},'cli',1,?,?)"
                " ON CONFLICT (email) DO UPDATE SET name = CASE WHEN excluded.name = '' THEN subscribers.name"
                " ELSE excluded.name END, keywords = excluded.keywords, exclude = excluded.exclude,"
                " max_papers = excluded.max_papers, about = excluded.about, seeds = excluded.seeds,"
                " timezone = excluded.timezone, send_at = excluded.send_at, cadence = excluded.cadence, active = 1,"
                " bounces = 0, soft_bounces = 0, bouncing_since = NULL, bounce_reason = NULL,"
                " updated = excluded.updated",
                (*self._profile_row(subscriber), stamp, stamp),
            )
        return existed is None

    def add_subscribers(self, subscribers: Iterable[Subscriber], now: datetime) -> int:
        """Add or update many subscribers in one transaction (an import); returns how many rows were given."""
        stamp = _iso(now)
        rows = [(*self._profile_row(s), stamp, stamp) for s in subscribers]
        with self.transaction() as tx:
            tx.executemany(
                f"INSERT INTO subscribers ({_PROFILE}, sent_floor, origin, active, created, updated)"
                f" VALUES ({_PROFILE_MARKS},{_FLOOR},'cli',1,?,?)"
                " ON CONFLICT (email) DO UPDATE SET keywords = excluded.keywords, exclude = excluded.exclude,"
                " max_papers = excluded.max_papers, about = excluded.about, seeds = excluded.seeds,"
                " timezone = excluded.timezone, send_at = excluded.send_at, cadence = excluded.cadence,"
                " active = 1, updated = excluded.updated",
                rows,
            )
        return len(rows)

    def unsubscribe(self, email: str, now: datetime) -> bool:
        """Stop mail to ``email``; the sent history is kept. False if no such subscriber."""
        return self.unsubscribe_many([email], now) > 0

    def unsubscribe_many(self, emails: Sequence[str], now: datetime) -> int:
        """Stop mail to each of ``emails`` in one transaction (one commit for many one-click requests);
        returns how many subscribers there were."""
        with self.transaction() as tx:
            cur = tx.executemany(
                "UPDATE subscribers SET active = 0, updated = ? WHERE email = ?",
                [(_iso(now), mailbox_key(e)) for e in emails],
            )
        return max(int(cur.rowcount), 0)

    def subscribers(self, *, include_inactive: bool = False) -> list[Subscriber]:
        """Subscribers in address order; by default only those who get mail."""
        return [s for batch in self.subscriber_batches(include_inactive=include_inactive) for s in batch]

    def subscriber_batches(
        self, size: int = 500, *, include_inactive: bool = False, start: str = "", stop: str | None = None
    ) -> Iterator[list[Subscriber]]:
        """Subscribers in key order, ``size`` at a time, with keys in [start, stop) (``start`` and ``stop``
        are mailbox keys, as ``subscriber_bounds`` gives them): a run's memory does not grow with the number
        of subscribers, and workers can each take a range."""
        last, first = start, True
        while True:
            below = "" if stop is None else " AND email < ?"
            rows = self.conn.execute(
                f"SELECT * FROM subscribers WHERE (email > ? OR (? AND email = ?)){below} ORDER BY email LIMIT ?",
                (last, first, start, *(() if stop is None else (stop,)), size),
            ).fetchall()
            if not rows:
                return
            first, last = False, rows[-1]["email"]
            batch = [_subscriber(r) for r in rows]
            yield [s for s in batch if s.active or include_inactive]

    def schedule_batches(self, size: int = 1000) -> Iterator[list[Subscriber]]:
        """The readers who get mail, ``size`` at a time, with only what says when they are due (address,
        schedule, bouncing; the rest of the profile left empty): a scheduler's wake reads 100,000 of them
        in a fraction of what whole profiles cost (no JSON to parse)."""
        last = ""
        while True:
            rows = self.conn.execute(
                "SELECT email, address, timezone, send_at, cadence, bouncing_since FROM subscribers WHERE email > ?"
                " AND active = 1 AND (origin = 'cli' OR in_config = 1) ORDER BY email LIMIT ?",
                (last, size),
            ).fetchall()
            if not rows:
                return
            last = rows[-1]["email"]
            yield [
                Subscriber(
                    r["address"] or r["email"],
                    profile=Profile(timezone=r["timezone"], send_at=r["send_at"], cadence=r["cadence"]),
                    bouncing=r["bouncing_since"] is not None,
                )
                for r in rows
            ]

    def ping(self) -> None:
        """A query that reads the schema (a health check): raises StoreError if the database cannot answer."""
        self.conn.execute("SELECT count(*) FROM (SELECT 1 FROM subscribers LIMIT 1) AS one").fetchone()

    def count_subscribers(self) -> int:
        """Subscribers who get mail: what sizes a run."""
        return int(
            self.conn.execute(
                "SELECT count(*) FROM subscribers WHERE active = 1 AND (origin = 'cli' OR in_config = 1)"
            ).fetchone()[0]
        )

    def has_weekly_readers(self) -> bool:
        """Whether any reader who gets mail chose a weekly cadence (their candidates span a week)."""
        row = self.conn.execute(
            "SELECT 1 FROM subscribers WHERE active = 1 AND (origin = 'cli' OR in_config = 1)"
            " AND cadence LIKE 'weekly%' LIMIT 1"
        ).fetchone()
        return row is not None

    def subscriber_bounds(self, every: int) -> list[str]:
        """Every ``every``-th subscriber key in order: the starts of equal ranges for workers."""
        rows = self.conn.execute(
            "SELECT email FROM (SELECT email, row_number() OVER (ORDER BY email) AS n FROM subscribers)"
            " AS numbered"
            " WHERE (n - 1) % ? = 0 ORDER BY email",
            (every,),
        )
        return [r[0] for r in rows]

    def allow(self, what: str, limit: int, window: float, now: float) -> bool:
        """Record one event for ``what`` at ``now`` (seconds) if fewer than ``limit`` were recorded in the
        ``window`` seconds before; False (nothing recorded) if not. Events older than a day are dropped.
        One transaction, so every process sharing the database counts the same events."""
        key = hashlib.sha256(what.encode()).hexdigest()
        with self.transaction() as tx:
            tx.execute("DELETE FROM rate_events WHERE at <= ?", (now - max(window, 86_400),))
            (seen,) = tx.execute(
                "SELECT count(*) FROM rate_events WHERE key = ? AND at > ?", (key, now - window)
            ).fetchone()
            if seen >= limit:
                return False
            tx.execute("INSERT INTO rate_events (key, at) VALUES (?, ?)", (key, now))
        return True

    def subscriber(self, email: str) -> Subscriber | None:
        """The subscriber of this address's mailbox (``identity.mailbox_key``), or None."""
        row = self.conn.execute("SELECT * FROM subscribers WHERE email = ?", (mailbox_key(email),)).fetchone()
        return _subscriber(row) if row is not None else None

    def resume(self, email: str, now: datetime) -> bool:
        """Mail ``email`` again (after an unsubscribe, or bouncing), keeping their profile. False if unknown."""
        with self.transaction() as tx:
            cur = tx.execute(
                "UPDATE subscribers SET active = 1, bounces = 0, soft_bounces = 0, bouncing_since = NULL,"
                " bounce_reason = NULL, updated = ?"
                " WHERE email = ?",
                (_iso(now), mailbox_key(email)),
            )
        return bool(cur.rowcount > 0)
