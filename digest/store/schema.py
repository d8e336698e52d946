"""The schema, as the migrations that build it: ``MIGRATIONS[n]`` takes a database from version n to n+1."""

from __future__ import annotations

from collections import Counter

from digest.identity import mailbox_key
from digest.store.dialect import Connection

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE papers (
        pid          INTEGER PRIMARY KEY,
        arxiv_id     TEXT UNIQUE,
        title_key    TEXT NOT NULL,
        title        TEXT NOT NULL,
        abstract     TEXT NOT NULL,
        authors      TEXT NOT NULL DEFAULT '[]',
        org          TEXT,
        author_count INTEGER,
        published    TEXT,
        upvotes      INTEGER,
        url          TEXT,
        source       TEXT NOT NULL,
        first_seen   TEXT NOT NULL,
        last_seen    TEXT NOT NULL
    );
    CREATE INDEX papers_title_key ON papers (title_key);
    CREATE INDEX papers_first_seen ON papers (first_seen);
    CREATE TABLE subscribers (
        email      TEXT PRIMARY KEY COLLATE NOCASE,
        name       TEXT NOT NULL DEFAULT '',
        keywords   TEXT NOT NULL DEFAULT '[]',
        exclude    TEXT NOT NULL DEFAULT '[]',
        max_papers INTEGER NOT NULL,
        origin     TEXT NOT NULL CHECK (origin IN ('cli', 'config')),
        in_config  INTEGER NOT NULL DEFAULT 0,
        active     INTEGER NOT NULL DEFAULT 1,
        created    TEXT NOT NULL,
        updated    TEXT NOT NULL
    );
    CREATE TABLE messages (
        id          INTEGER PRIMARY KEY,
        email       TEXT NOT NULL COLLATE NOCASE,
        message_id  TEXT NOT NULL UNIQUE,
        digest_date TEXT NOT NULL,
        status      TEXT NOT NULL,
        created     TEXT NOT NULL,
        sent_at     TEXT
    );
    CREATE INDEX messages_email ON messages (email, digest_date);
    CREATE TABLE sent (
        email   TEXT NOT NULL COLLATE NOCASE,
        pid     INTEGER NOT NULL REFERENCES papers (pid),
        message INTEGER NOT NULL REFERENCES messages (id),
        sent_at TEXT NOT NULL,
        PRIMARY KEY (email, pid)
    ) WITHOUT ROWID;
    CREATE TABLE fetch_state (
        source        TEXT PRIMARY KEY,
        url           TEXT NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        fetched_at    TEXT NOT NULL
    );
    """,
    # 1 -> 2: the outbox. A message row is written as 'sending' before the send, becomes 'sent' on
    # acceptance (only then are its papers recorded), 'retry' after a transient failure, 'failed' after a
    # permanent one, 'expired' when a retry is overtaken by a newer digest. At most one live digest per
    # subscriber and local date. Consecutive permanent failures mark a subscriber as bouncing.
    """
    ALTER TABLE messages ADD COLUMN papers TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE messages ADD COLUMN more INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN last_error TEXT;
    ALTER TABLE messages ADD COLUMN updated TEXT;
    CREATE UNIQUE INDEX messages_one_per_day ON messages (email, digest_date)
        WHERE status IN ('sending', 'sent', 'retry');
    CREATE INDEX messages_unfinished ON messages (status) WHERE status IN ('sending', 'retry');
    ALTER TABLE subscribers ADD COLUMN bounces INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscribers ADD COLUMN bouncing_since TEXT;
    """,
    # 2 -> 3: the web app's rate limits, kept in the database so that every `digest serve` worker process
    # (and every host) counts the same events. ``key`` is a SHA-256 of what is limited (an address that asked
    # to subscribe, a client's IP): a stranger's address is not kept in the clear before they confirm.
    """
    CREATE TABLE rate_events (
        key TEXT NOT NULL,
        at  REAL NOT NULL
    );
    CREATE INDEX rate_events_key ON rate_events (key, at);
    CREATE INDEX rate_events_at ON rate_events (at);
    """,
    # 3 -> 4: meaning. A profile's description and seed papers (arXiv ids or exact titles, JSON), and
    # the reader's "more / less like this" per paper: one opinion per reader and paper, the latest wins.
    """
    ALTER TABLE subscribers ADD COLUMN about TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN seeds TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE feedback (
        email TEXT NOT NULL COLLATE NOCASE,
        pid   INTEGER NOT NULL REFERENCES papers (pid),
        kind  TEXT NOT NULL CHECK (kind IN ('more', 'less')),
        at    TEXT NOT NULL,
        PRIMARY KEY (email, pid)
    ) WITHOUT ROWID;
    """,
    # 4 -> 5: paper vectors of a sentence-embedding model (float32 bytes), so that each paper is embedded
    # once per model, not once per run. The default TF-IDF model is fitted per run and keeps none.
    """
    CREATE TABLE paper_vectors (
        pid    INTEGER NOT NULL REFERENCES papers (pid),
        model  TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (pid, model)
    ) WITHOUT ROWID;
    """,
    # 5 -> 6: runs that share a day's work (see ``runs``). A run's subscribers are cut into ranges
    # that processes (on any host) claim with a lease; ``owner_pid`` is the PostgreSQL session that holds
    # the claim, so a killed host's range is taken over at once. ``ingests`` counts the reads of the
    # sources, so hosts started together read them once. Times are the database's clock, in seconds.
    """
    CREATE TABLE runs (
        id       INTEGER PRIMARY KEY,
        day      TEXT NOT NULL,
        created  TEXT NOT NULL,
        finished REAL
    );
    CREATE TABLE run_ranges (
        id          INTEGER PRIMARY KEY,
        run         INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        start       TEXT NOT NULL,
        stop        TEXT,
        owner       TEXT,
        owner_pid   INTEGER,
        lease_until REAL,
        claims      INTEGER NOT NULL DEFAULT 0,
        subscribers INTEGER,
        done        REAL
    );
    CREATE INDEX run_ranges_run ON run_ranges (run, id);
    CREATE TABLE ingests (
        id       INTEGER PRIMARY KEY,
        finished TEXT NOT NULL,
        host     TEXT NOT NULL
    );
    """,
    # 6 -> 7: the sent records by message. Deleting a message row (a reader's "delete me") makes the
    # foreign-key check look for sent records that point at it; without this index that was a scan of
    # every sent record per message, growing with both.
    """
    CREATE INDEX sent_message ON sent (message);
    """,
    # 7 -> 8: a day's messages by status, for /metrics: a scrape counts the latest day's digests
    # through this index instead of reading the whole outbox.
    """
    CREATE INDEX messages_day ON messages (digest_date, status);
    """,
    # 8 -> 9: returned mail. Soft bounces (a full mailbox, a greylisting that gave up) are counted
    # apart from refused sends, since a later accepted send says nothing about whether mail arrives: a
    # count that starts again when the last soft bounce is a week old (Mailman's rule, see record_bounce).
    """
    ALTER TABLE subscribers ADD COLUMN soft_bounces INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE subscribers ADD COLUMN last_soft_bounce TEXT;
    ALTER TABLE subscribers ADD COLUMN bounce_reason TEXT;
    """,
    # 9 -> 10: each reader's own time zone, hour and cadence (see ``cadence``); '' follows the
    # operator's settings, so existing readers keep the schedule they had.
    """
    ALTER TABLE subscribers ADD COLUMN timezone TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN send_at TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN cadence TEXT NOT NULL DEFAULT '';
    """,
    # 10 -> 11: each source's consecutive failed reads and the state the operator was last alerted about
    # (see ``alerts``), kept across runs and hosts.
    """
    CREATE TABLE source_health (
        source     TEXT PRIMARY KEY,
        failures   INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        alerted    TEXT
    );
    """,
    # 11 -> 12: one canonical key per mailbox (``identity.mailbox_key``). Every ``email`` column holds the
    # key (``rekey_addresses`` rewrites the rows), the subscriber's ``address`` the address as written, for
    # the To: line. SQLite's NOCASE stays on the old columns: a key has no ASCII capital, so NOCASE compares
    # keys byte for byte. PostgreSQL's ICU collation does not (it equates "ß" with "ss", "É" with "é"), so
    # there the columns become byte-wise ("C"). ``erasures`` keeps, for a reader who asked to be erased,
    # only a SHA-256 of their key and the newest paper ref at that moment, so that if they come back
    # (``sent_floor``) they are never sent a paper from before, and nothing else about them.
    """
    ALTER TABLE subscribers ADD COLUMN address TEXT NOT NULL DEFAULT '';
    ALTER TABLE subscribers ADD COLUMN sent_floor INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE erasures (
        fingerprint TEXT PRIMARY KEY,
        last_ref    INTEGER NOT NULL,
        at          TEXT NOT NULL
    );
    -- postgresql: ALTER TABLE subscribers ALTER COLUMN email TYPE TEXT COLLATE "C";
    -- postgresql: ALTER TABLE messages ALTER COLUMN email TYPE TEXT COLLATE "C";
    -- postgresql: ALTER TABLE sent ALTER COLUMN email TYPE TEXT COLLATE "C";
    -- postgresql: ALTER TABLE feedback ALTER COLUMN email TYPE TEXT COLLATE "C";
    """,
    # 12 -> 13: each reader's own model (``selection.learner``), fitted on their description, seeds and
    # "more / less like this", kept with the version of those: fitted again only when they change.
    """
    CREATE TABLE reader_models (
        email   TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        model   BLOB NOT NULL,
        fitted  TEXT NOT NULL
    );
    -- postgresql: ALTER TABLE reader_models ALTER COLUMN email TYPE TEXT COLLATE "C";
    """,
    # 13 -> 14: a pause until a date the reader chose (their local date of the first digest again); when
    # a reader who signed up on the web asked (the confirmation link's time; ``created`` is when they
    # confirmed), for their data download; the matches a digest left out (refs, best first), for its
    # page of all matches; the number of times the reader reset their feed's address (its links carry
    # it: a reset makes the old ones invalid); and the papers a reader saved ("Save" in a digest).
    """
    ALTER TABLE subscribers ADD COLUMN paused_until TEXT;
    ALTER TABLE subscribers ADD COLUMN signed_up TEXT;
    ALTER TABLE subscribers ADD COLUMN feed_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN rest TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE saved (
        email TEXT NOT NULL,
        pid   INTEGER NOT NULL REFERENCES papers (pid),
        at    TEXT NOT NULL,
        PRIMARY KEY (email, pid)
    ) WITHOUT ROWID;
    -- postgresql: ALTER TABLE saved ALTER COLUMN email TYPE TEXT COLLATE "C";
    """,
    # 14 -> 15: the authors a reader follows (a JSON list of names, as they wrote them), the arXiv
    # categories a reader narrows to or leaves out, each paper's categories (primary first), and the
    # sentence of its abstract that says what it found (``selection.finding``, picked when it is stored).
    """
    ALTER TABLE subscribers ADD COLUMN authors TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE subscribers ADD COLUMN categories TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE subscribers ADD COLUMN exclude_categories TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE papers ADD COLUMN categories TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE papers ADD COLUMN finding TEXT NOT NULL DEFAULT '';
    """,
    # 15 -> 16: new versions. Each paper's newest arXiv version seen (0: not known) and when a version
    # newer than one a reader may have been sent was first seen (``revised``); for each paper sent, the
    # version the reader was last told of (0: the one they were sent); the updates a digest tells of
    # ([ref, version] pairs, so a resend tells the same); and a reader's choices: updates on or off, a cap
    # per section of their digest (a JSON object), how much upvotes count in their ranking.
    """
    ALTER TABLE papers ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE papers ADD COLUMN revised TEXT;
    CREATE INDEX papers_revised ON papers (revised) WHERE revised IS NOT NULL;
    ALTER TABLE sent ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN updates TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE subscribers ADD COLUMN updates INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE subscribers ADD COLUMN sections TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE subscribers ADD COLUMN upvotes REAL NOT NULL DEFAULT 0;
    """,
    # 16 -> 17: one-sentence TL;DRs from the operator's language model (``run.summaries``), made once per
    # paper and language and kept; and the language a reader wants them in ('' : the operator's).
    """
    ALTER TABLE subscribers ADD COLUMN language TEXT NOT NULL DEFAULT '';
    CREATE TABLE summaries (
        pid      INTEGER NOT NULL REFERENCES papers (pid),
        language TEXT NOT NULL,
        text     TEXT NOT NULL,
        model    TEXT NOT NULL,
        made     TEXT NOT NULL,
        PRIMARY KEY (pid, language)
    ) WITHOUT ROWID;
    """,
    # 17 -> 18: the reasons of a digest's papers that its reader's keywords cannot tell again (chosen by
    # meaning: the liked paper or description and the words shared; trending), as [ref, keyword, where,
    # [words]] lists, so that a resend and the page of a sent digest say what the email said. NULL: a
    # message begun before this kept none.
    """
    ALTER TABLE messages ADD COLUMN reasons TEXT;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
REKEY_STEP = 11  # the migration after which ``rekey_addresses`` runs, in the same transaction
_LIVE = "('sending', 'sent', 'retry')"  # the statuses of messages_one_per_day


def rekey_addresses(tx: Connection) -> int:
    """Rewrite every stored address as its mailbox key (schema 12); returns the subscribers merged.

    Each address column is read once (distinct values) and only the rows whose key differs are written,
    set by set: the (old, new) pairs go into a temporary table that each table is joined with once (one
    statement per table, not per address, whose round trips dominate on PostgreSQL: bench/rekey.py). Matches
    are byte for byte: on SQLite through the NOCASE index and then ``COLLATE BINARY`` (NOCASE alone would
    match other spellings; BINARY alone could not use the index).

    Two stored subscribers of one mailbox (an address stored with its domain as an A-label and once in
    Unicode) become one: the active one, else the one updated last, keeps its profile; their history is
    merged, a paper recorded for both is kept once, and a day with a digest for both keeps one live row.
    Their rows are moved one spelling at a time, since one statement cannot see its own earlier writes.
    """
    rekey = _Rekey(tx)
    tx.execute("UPDATE subscribers SET address = email")
    merged = rekey.merge_subscribers()
    text = tx.dialect.text_type()
    tx.execute(f"CREATE TEMP TABLE rekey (old {text} PRIMARY KEY, new {text} NOT NULL)")
    for table, unique in (("subscribers", None), ("feedback", "pid"), ("sent", "pid"), ("messages", None)):
        found = tx.execute(f"SELECT DISTINCT email FROM {table}").fetchall()
        pairs = [(old, key) for (old,) in found if (key := mailbox_key(old)) != old]
        spellings = Counter(key for _, key in pairs)
        alone = [(old, key) for old, key in pairs if spellings[key] == 1]
        for batch in [alone, *([pair] for pair in pairs if spellings[pair[1]] > 1)]:
            rekey.move(table, unique, batch)
    tx.execute("DROP TABLE rekey")
    return merged


class _Rekey:
    """The statements of ``rekey_addresses``, in the connection's dialect."""

    def __init__(self, tx: Connection) -> None:
        self.tx, self.dialect = tx, tx.dialect

    def merge_subscribers(self) -> int:
        """Delete all but one stored subscriber of each mailbox (the active one, else the one updated last)."""
        groups: dict[str, list[tuple[str, int, str]]] = {}
        for email, active, updated in self.tx.execute(
            "SELECT email, active, updated FROM subscribers"
        ).fetchall():
            groups.setdefault(mailbox_key(email), []).append((email, int(active), str(updated)))
        gone = [m[0] for ms in groups.values() for m in sorted(ms, key=lambda m: (m[1], m[2]))[:-1]]
        for email in gone:
            exactly = self.dialect.same("email", "?")
            self.tx.execute(f"DELETE FROM subscribers WHERE {exactly}", self.dialect.same_params(email))
        return len(gone)

    def move(self, table: str, unique: str | None, pairs: list[tuple[str, str]]) -> None:
        """Move ``table``'s rows from each old spelling in ``pairs`` to its key."""
        if not pairs:
            return
        same = self.dialect.same
        self.tx.execute("DELETE FROM rekey")
        for start in range(0, len(pairs), 500):
            part = pairs[start : start + 500]
            rows = ",".join(["(?,?)"] * len(part))
            self.tx.execute(f"INSERT INTO rekey (old, new) VALUES {rows}", [v for pair in part for v in pair])
        # Planned from statistics where there are any: the temporary table has none, a changed column lost its.
        self.dialect.analyze(self.tx, ["rekey", table])
        match = same(f"{table}.email", "r.old")
        if unique:  # a paper recorded under both spellings is kept once
            self.tx.execute(
                f"UPDATE {table} SET email = r.new FROM rekey r WHERE {match} AND NOT EXISTS (SELECT 1 FROM {table}"
                f" other WHERE {same('other.email', 'r.new')} AND other.{unique} = {table}.{unique})"
            )
            self.tx.execute(
                f"DELETE FROM {table} WHERE {self.dialect.within('email', '(SELECT old FROM rekey)')}"
            )
            return
        if table == "messages":  # one live digest per reader and day: a second one of that day is expired
            self.tx.execute(
                f"UPDATE messages SET status = 'expired' FROM rekey r WHERE {match} AND messages.status IN {_LIVE}"
                f" AND EXISTS (SELECT 1 FROM messages other WHERE {same('other.email', 'r.new')}"
                f" AND other.digest_date = messages.digest_date AND other.status IN {_LIVE})"
            )
        self.tx.execute(f"UPDATE {table} SET email = r.new FROM rekey r WHERE {match}")


# PostgreSQL runs the same migrations, rewritten where SQLite's dialect differs. Case-insensitive
# addresses (SQLite's NOCASE) become a nondeterministic ICU collation: equality and uniqueness ignore case,
# the address keeps the case it was given, as in SQLite.
POSTGRESQL_PREAMBLE = "CREATE COLLATION IF NOT EXISTS nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
_POSTGRESQL = (
    ("INTEGER PRIMARY KEY,", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"),
    ("TEXT PRIMARY KEY COLLATE NOCASE", "TEXT COLLATE nocase PRIMARY KEY"),
    ("TEXT NOT NULL COLLATE NOCASE", "TEXT COLLATE nocase NOT NULL"),
    (") WITHOUT ROWID;", ");"),
    (" REAL", " DOUBLE PRECISION"),  # SQLite's REAL is 8 bytes; PostgreSQL's is 4 (too coarse for epochs)
    (" BLOB ", " BYTEA "),
    ("-- postgresql: ", ""),  # statements for PostgreSQL only (SQLite reads the line as a comment)
)


def for_postgresql(migration: str) -> str:
    """A migration in PostgreSQL's dialect.

    >>> for_postgresql("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;")
    'CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v BYTEA NOT NULL);'
    """
    for sqlite, postgresql in _POSTGRESQL:
        migration = migration.replace(sqlite, postgresql)
    return migration
