"""Deliveries: the outbox rows a run begins, marks and resends, and what was sent to whom."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from digest.identity import mailbox_key
from digest.models import MessageState, Paper
from digest.store.dialect import Connection
from digest.store.papers import paper_of
from digest.store.readers import BOUNCE_LIMIT
from digest.store.sql import chunks, iso, marks, values

# A paper's reason that its reader's keywords cannot tell again: (ref, keyword or title, where, words).
KeptReason = tuple[int, str, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A digest message that was begun but not (yet) accepted."""

    id: int
    email: str
    day: date
    message_id: str
    refs: tuple[int, ...]
    status: str
    attempts: int
    more: int = 0  # matches left out by the cap, so a resend says the same "N more" line
    rest: tuple[int, ...] = ()  # the best of them, best first (``Digest.rest``)
    updates: tuple[tuple[int, int], ...] = ()  # (ref, version) of the new versions it tells of
    reasons: tuple[KeptReason, ...] | None = None  # what keywords cannot tell again; None: kept none


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One paper sent to one subscriber."""

    key: str
    title: str
    sent_at: str
    message_id: str


@dataclass(frozen=True, slots=True)
class NewMessage:
    """An outbox row to begin: who, which digest day, its Message-ID, the papers' refs, the "N more"."""

    email: str
    day: date
    message_id: str
    refs: tuple[int, ...]
    more: int = 0
    rest: tuple[int, ...] = ()
    updates: tuple[tuple[int, int], ...] = ()  # (ref, version) of the papers' new versions it tells of
    reasons: tuple[KeptReason, ...] = ()  # the papers' reasons its reader's keywords cannot tell again


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What a batch of subscribers already has (see ``Outbox.state``), by mailbox key."""

    unfinished: dict[str, list[OutboxRow]]
    sent_on: set[tuple[str, date]]  # (reader, period key) with a digest sent
    refused_on: dict[tuple[str, date], str]  # the server's last permanent refusal of that period's digest


def _outbox_row(r: Any) -> OutboxRow:
    return OutboxRow(
        r["id"],
        r["email"],
        date.fromisoformat(r["digest_date"]),
        r["message_id"],
        tuple(json.loads(r["papers"])),
        r["status"],
        r["attempts"],
        r["more"],
        tuple(json.loads(r["rest"])),
        () if r["updates"] == "[]" else tuple((int(ref), int(v)) for ref, v in json.loads(r["updates"])),
        _kept(r["reasons"]),
    )


def _kept(stored: str | None) -> tuple[KeptReason, ...] | None:
    """A message's kept reasons as stored (None: it kept none, begun before they were kept).

    >>> _kept('[[7, "A paper", "similar", ["moe"]]]'), _kept(None)
    (((7, 'A paper', 'similar', ('moe',)),), None)
    """
    if stored is None:
        return None
    return tuple(
        (int(ref), str(kw), str(where), tuple(map(str, words)))
        for ref, kw, where, words in json.loads(stored)
    )


class Outbox:
    """The ``messages`` and ``sent`` tables (``store.outbox``): a digest's row from before its send until
    it was accepted, and then the papers it carried."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def begin(
        self, messages: Sequence[NewMessage], now: datetime, resume: Sequence[int] = ()
    ) -> list[int | None]:
        """Commit outbox rows for a batch before any of it is sent, and mark ``resume`` rows in flight again.

        Returns each new row's id, or None where the subscriber already has a live digest for that day
        (another run got there first): that one must not be sent.
        """
        stamp = iso(now)
        with self.conn.transaction() as tx:
            made: dict[str, int] = {}
            for part in chunks(messages, 100):
                rows_sql, flat = values(
                    [
                        (
                            mailbox_key(m.email),
                            m.message_id,
                            m.day.isoformat(),
                            MessageState.SENDING,
                            stamp,
                            stamp,
                            json.dumps(m.refs),
                            m.more,
                            json.dumps(m.rest),
                            json.dumps(m.updates),
                            json.dumps(m.reasons),
                        )
                        for m in part
                    ]
                )
                rows = tx.execute(
                    "INSERT INTO messages (email, message_id, digest_date, status, created, updated, papers,"
                    f" more, rest, updates, reasons) {rows_sql} ON CONFLICT DO NOTHING RETURNING id, message_id",
                    flat,
                ).fetchall()
                made.update((r["message_id"], int(r["id"])) for r in rows)
            # a message without a row: another run holds that subscriber's digest for the day
            ids = [made.get(m.message_id) for m in messages]
            for chunk in chunks(resume):
                tx.execute(
                    f"UPDATE messages SET status = ?, updated = ? WHERE id IN ({','.join('?' * len(chunk))})",
                    (MessageState.SENDING, stamp, *chunk),
                )
        return ids

    def mark_sent(self, row_id: int, now: datetime) -> None:
        """The server accepted the message: record it and its papers, in one transaction."""
        self.mark_sent_many([row_id], now)

    def mark_sent_many(self, row_ids: Sequence[int], now: datetime) -> None:
        """Several accepted messages recorded in one transaction (a batch delivered to a Maildir): their
        papers as sent, and the new versions they told of as told."""
        if not row_ids:
            return
        stamp = iso(now)
        with self.conn.transaction() as tx:
            for chunk in chunks(row_ids):
                marks = ",".join("?" * len(chunk))
                rows = tx.execute(
                    f"SELECT id, email, papers, updates FROM messages WHERE id IN ({marks})", chunk
                ).fetchall()
                tx.execute(
                    "UPDATE messages SET status = ?, sent_at = ?, updated = ?, attempts = attempts + 1"
                    f" WHERE id IN ({marks})",
                    (MessageState.SENT, stamp, stamp, *chunk),
                )
                records = [(r["email"], ref, r["id"], stamp) for r in rows for ref in json.loads(r["papers"])]
                for part in chunks(records, 250):
                    rows_sql, flat = values(part)
                    tx.execute(
                        f"INSERT INTO sent (email, pid, message, sent_at) {rows_sql} ON CONFLICT DO NOTHING",
                        flat,
                    )
                told = [
                    (version, r["email"], ref, version)
                    for r in rows
                    if r["updates"] != "[]"
                    for ref, version in json.loads(r["updates"])
                ]
                if told:
                    tx.executemany(
                        "UPDATE sent SET version = ? WHERE email = ? AND pid = ? AND version < ?", told
                    )
                emails = [r["email"] for r in rows]
                tx.execute(
                    f"UPDATE subscribers SET bounces = 0 WHERE bounces > 0 AND email IN ({','.join('?' * len(emails))})",
                    emails,
                )

    def mark_retry(self, row_id: int, error: str, now: datetime) -> None:
        """A transient failure: the row waits for the next run; its papers are not recorded."""
        with self.conn.transaction() as tx:
            tx.execute(
                "UPDATE messages SET status = ?, last_error = ?, updated = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (MessageState.RETRY, error, iso(now), row_id),
            )

    def mark_failed(self, row_id: int, error: str, now: datetime, *, bounce: bool = True) -> bool:
        """A permanent refusal. With ``bounce`` (the recipient was at fault, not our message) it counts
        toward bouncing; returns True if the subscriber is now bouncing."""
        stamp = iso(now)
        with self.conn.transaction() as tx:
            row = tx.execute("SELECT email FROM messages WHERE id = ?", (row_id,)).fetchone()
            tx.execute(
                "UPDATE messages SET status = ?, last_error = ?, updated = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (MessageState.FAILED, error, stamp, row_id),
            )
            if not bounce:
                return False
            tx.execute("UPDATE subscribers SET bounces = bounces + 1 WHERE email = ?", (row["email"],))
            tx.execute(
                "UPDATE subscribers SET bouncing_since = ?, bounce_reason = ? WHERE email = ? AND bounces >= ?"
                " AND bouncing_since IS NULL",
                (stamp, f"refused: {error}"[:500], row["email"], BOUNCE_LIMIT),
            )
            bouncing = tx.execute(
                "SELECT bouncing_since IS NOT NULL FROM subscribers WHERE email = ?", (row["email"],)
            ).fetchone()
        return bool(bouncing and bouncing[0])

    def expire(self, row_ids: Sequence[int], now: datetime) -> None:
        """Give up 'retry' rows whose period is over (planning decides, per reader's schedule): their papers
        are still unsent, so the reader's next digest takes them."""
        with self.conn.transaction() as tx:
            tx.executemany(
                "UPDATE messages SET status = ?, updated = ? WHERE id = ? AND status = ?",
                [(MessageState.EXPIRED, iso(now), i, MessageState.RETRY) for i in row_ids],
            )

    def state(self, emails: Sequence[str], days: Collection[date]) -> DeliveryState:
        """For a batch of subscribers at once: their unfinished rows, and which of them already have a
        digest sent (or refused) for any of ``days`` (the periods planning asks about), by mailbox key."""
        state = DeliveryState({}, set(), {})
        wanted = sorted(d.isoformat() for d in days)
        for chunk in chunks([mailbox_key(e) for e in emails]):
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(
                f"SELECT * FROM messages WHERE status IN (?, ?) AND email IN ({marks}) ORDER BY id",
                (MessageState.SENDING, MessageState.RETRY, *chunk),
            ):
                state.unfinished.setdefault(r["email"], []).append(_outbox_row(r))
            if not wanted:
                continue
            # By address (messages_email): SQLite, without statistics, would take the index by day and
            # status (messages_day, for /metrics) and read the whole day's rows for every batch, which
            # grows with the run (see docs/benchmarks.md); ``unindexed`` keeps SQLite off that index.
            day = self.conn.dialect.unindexed("digest_date")
            for r in self.conn.execute(
                f"SELECT email, digest_date, status, last_error FROM messages"
                f" WHERE {day} IN ({','.join('?' * len(wanted))}) AND status IN (?, ?)"
                f" AND email IN ({marks}) ORDER BY id",
                (*wanted, MessageState.SENT, MessageState.FAILED, *chunk),
            ):
                key = (r["email"], date.fromisoformat(r["digest_date"]))
                if r["status"] == MessageState.SENT:
                    state.sent_on.add(key)
                else:
                    state.refused_on[key] = r["last_error"] or "refused"
        return state

    def sent_refs(self, emails: Sequence[str], min_ref: int = 0) -> dict[str, set[int]]:
        """The refs (at least ``min_ref``: the candidate pool's) already sent to each subscriber, or that
        they must never get (papers from before they were erased and came back: ``sent_floor``), by key."""
        out: dict[str, set[int]] = {}
        for chunk in chunks([mailbox_key(e) for e in emails]):
            marks = ",".join("?" * len(chunk))
            for email, pid in self.conn.execute(
                f"SELECT email, pid FROM sent WHERE pid >= ? AND email IN ({marks})", (min_ref, *chunk)
            ):
                out.setdefault(email, set()).add(pid)
            for email, floor in self.conn.execute(
                f"SELECT email, sent_floor FROM subscribers WHERE sent_floor > 0 AND sent_floor >= ?"
                f" AND email IN ({marks})",
                (min_ref, *chunk),
            ):
                out.setdefault(email, set()).update(range(min_ref, int(floor) + 1))
        return out

    def updates_due(self, emails: Sequence[str], since: datetime) -> dict[str, list[Paper]]:
        """Papers sent to each of ``emails`` (by key) that have a version newer than the one they were
        sent or last told of, seen since it was sent and at or after ``since``: what their next digest's
        "Updated since you saw it" tells. Read from the few papers revised since ``since`` (an index),
        nothing when there are none."""
        out: dict[str, list[Paper]] = {}
        papers: dict[int, Paper] = {}  # each paper read once, however many readers it is due to
        for chunk in chunks([mailbox_key(e) for e in emails]):
            for r in self.conn.execute(
                "SELECT p.*, s.email AS reader FROM papers p JOIN sent s ON s.pid = p.pid"
                f" WHERE p.revised >= ? AND s.email IN ({marks(chunk)}) AND s.version < p.version"
                " AND s.sent_at < p.revised ORDER BY p.revised DESC, p.pid",
                (iso(since), *chunk),
            ):
                paper = papers.get(r["pid"])
                if paper is None:
                    paper = papers[r["pid"]] = paper_of(r)
                out.setdefault(r["reader"], []).append(paper)
        return out

    def ever_sent(self, emails: Sequence[str]) -> set[str]:
        """Which of ``emails`` were ever sent a digest (their keys): one index probe each, stopping at the
        first sent row, however long their history."""
        out: set[str] = set()
        for chunk in chunks([mailbox_key(e) for e in emails]):
            marks = ",".join("?" * len(chunk))
            for (email,) in self.conn.execute(
                f"SELECT s.email FROM subscribers s WHERE s.email IN ({marks}) AND EXISTS"
                " (SELECT 1 FROM messages m WHERE m.email = s.email AND m.status = ?)",
                (*chunk, MessageState.SENT),
            ):
                out.add(email)
        return out

    def owners(self, message_ids: Collection[str]) -> dict[str, str]:
        """Of ``message_ids``, those of digests we made: Message-ID -> the reader's mailbox key."""
        out: dict[str, str] = {}
        for chunk in chunks(sorted(message_ids)):
            marks = ",".join("?" * len(chunk))
            for mid, email in self.conn.execute(
                f"SELECT message_id, email FROM messages WHERE message_id IN ({marks})", chunk
            ):
                out[mid] = email
        return out

    def sent_message(self, email: str, day: date) -> OutboxRow | None:
        """The digest sent to ``email`` for local date ``day``, if one was: for viewing it in a browser."""
        row = self.conn.execute(
            "SELECT * FROM messages WHERE email = ? AND digest_date = ? AND status = ?",
            (mailbox_key(email), day.isoformat(), MessageState.SENT),
        ).fetchone()
        return _outbox_row(row) if row else None

    def sent_digests(self, email: str, limit: int = 400) -> list[OutboxRow]:
        """The digests sent to ``email``, newest first, at most ``limit``: the reader's archive."""
        rows = self.conn.execute(
            "SELECT * FROM messages WHERE email = ? AND status = ? ORDER BY digest_date DESC, id DESC LIMIT ?",
            (mailbox_key(email), MessageState.SENT, limit),
        ).fetchall()
        return [_outbox_row(r) for r in rows]

    def feed_version(self, email: str) -> tuple[int, str] | None:
        """(the newest sent digest's row id, when it was sent) for ``email``, or None before the first:
        what a feed's ETag and Last-Modified are made of, in one indexed lookup."""
        row = self.conn.execute(
            "SELECT id, sent_at FROM messages WHERE email = ? AND status = ? ORDER BY id DESC LIMIT 1",
            (mailbox_key(email), MessageState.SENT),
        ).fetchone()
        return (int(row["id"]), str(row["sent_at"])) if row else None

    def sent_papers(self, email: str, limit: int) -> list[tuple[Paper, str, date, tuple[KeptReason, ...]]]:
        """The last ``limit`` papers sent to ``email``, newest first: (paper, when sent, the digest's day,
        the reasons its message kept for it)."""
        rows = self.conn.execute(
            "SELECT p.*, s.sent_at AS sent_when, m.digest_date, m.reasons FROM sent s"
            " JOIN papers p ON p.pid = s.pid JOIN messages m ON m.id = s.message"
            " WHERE s.email = ? ORDER BY s.message DESC, p.pid LIMIT ?",
            (mailbox_key(email), limit),
        ).fetchall()
        parsed: dict[str | None, tuple[KeptReason, ...]] = {}  # each message's reasons, read once

        def kept_for(r: Any) -> tuple[KeptReason, ...]:
            if r["reasons"] not in parsed:
                parsed[r["reasons"]] = _kept(r["reasons"]) or ()
            return tuple(k for k in parsed[r["reasons"]] if k[0] == r["pid"])

        return [
            (paper_of(r), str(r["sent_when"]), date.fromisoformat(r["digest_date"]), kept_for(r))
            for r in rows
        ]

    def history(self, email: str) -> list[SentRecord]:
        """What was sent to ``email``, newest first: for the reader's own data download."""
        rows = self.conn.execute(
            "SELECT p.arxiv_id, p.title_key, p.title, s.sent_at, m.message_id FROM sent s"
            " JOIN papers p ON p.pid = s.pid JOIN messages m ON m.id = s.message"
            " WHERE s.email = ? ORDER BY s.sent_at DESC, p.pid",
            (mailbox_key(email),),
        ).fetchall()
        return [
            SentRecord(r["arxiv_id"] or f"title:{r['title_key']}", r["title"], r["sent_at"], r["message_id"])
            for r in rows
        ]
