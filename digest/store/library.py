"""What a reader keeps beside their profile (``store.library``): the papers they saved, their feed's
epoch (its address; a reset counts it up), and what their data download reads (when they signed up and
changed their profile, what they said of papers). Erasing a reader (``readers.forget``) erases all of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from digest.identity import mailbox_key
from digest.models import Paper
from digest.store.dialect import Connection
from digest.store.papers import paper_of
from digest.store.sql import iso


class Library:
    """The ``saved`` table and the library columns of ``subscribers`` (see the module's docstring)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def save(self, email: str, ref: int, now: datetime, *, keep: bool = True) -> None:
        """Keep paper ``ref`` in ``email``'s saved papers (``keep=False``: take it out)."""
        with self.conn.transaction() as tx:
            if keep:
                tx.execute(
                    "INSERT INTO saved (email, pid, at) VALUES (?, ?, ?) ON CONFLICT (email, pid) DO NOTHING",
                    (mailbox_key(email), ref, iso(now)),
                )
            else:
                tx.execute("DELETE FROM saved WHERE email = ? AND pid = ?", (mailbox_key(email), ref))

    def saved(self, email: str) -> list[tuple[Paper, str]]:
        """``email``'s saved papers, newest first, with when each was saved."""
        rows = self.conn.execute(
            "SELECT p.*, s.at AS saved_at FROM saved s JOIN papers p ON p.pid = s.pid WHERE s.email = ?"
            " ORDER BY s.at DESC, p.pid DESC",
            (mailbox_key(email),),
        )
        return [(paper_of(r), str(r["saved_at"])) for r in rows]

    def times(self, email: str) -> dict[str, str | None]:
        """When ``email``'s profile was made (``created``: added, or a web sign-up confirmed), last changed
        (``updated``), and asked for on the web (``signed_up``), as stored (ISO 8601 UTC); {} if unknown."""
        row = self.conn.execute(
            "SELECT created, updated, signed_up FROM subscribers WHERE email = ?", (mailbox_key(email),)
        ).fetchone()
        return (
            {"created": row["created"], "updated": row["updated"], "signed_up": row["signed_up"]}
            if row
            else {}
        )

    def feed_epoch(self, email: str) -> int | None:
        """How many times ``email`` reset their feed's address (its links carry it); None if unknown."""
        state = self.feed_state(email)
        return state[0] if state else None

    def feed_state(self, email: str) -> tuple[int, str] | None:
        """(feed epoch, when the profile last changed) of ``email``: what their feed's ETag holds of them."""
        row = self.conn.execute(
            "SELECT feed_epoch, updated FROM subscribers WHERE email = ?", (mailbox_key(email),)
        ).fetchone()
        return (int(row["feed_epoch"]), str(row["updated"])) if row else None

    def reset_feed(self, email: str, now: datetime) -> int | None:
        """A new address for ``email``'s feed (the old one stops working): the new epoch, None if unknown."""
        with self.conn.transaction() as tx:
            tx.execute(
                "UPDATE subscribers SET feed_epoch = feed_epoch + 1, updated = ? WHERE email = ?",
                (iso(now), mailbox_key(email)),
            )
        return self.feed_epoch(email)

    def ratings(self, email: str) -> list[dict[str, Any]]:
        """What ``email`` said of papers ("more" / "less like this"), oldest first: id, title, kind, when."""
        rows = self.conn.execute(
            "SELECT f.kind, f.at, p.* FROM feedback f JOIN papers p ON p.pid = f.pid WHERE f.email = ?"
            " ORDER BY f.at, f.pid",
            (mailbox_key(email),),
        )
        return [{"id": paper_of(r).key, "title": r["title"], "kind": r["kind"], "at": r["at"]} for r in rows]
