"""What readers said of papers ("more / less like this"), what was learned from it (each reader's own
model, ``selection.learner``), and what they were shown, which a model counts against when they did not
like it. Every method keys the addresses it is given (``identity.mailbox_key``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from digest.identity import mailbox_key
from digest.models import Paper
from digest.store.dialect import Connection
from digest.store.papers import paper_of
from digest.store.sql import chunks, iso, marks


class Feedback:
    """Readers' feedback, their models and the papers they were shown, over one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def set(self, email: str, ref: int, kind: str | None, now: datetime) -> None:
        """Record the reader's "more" or "less" like paper ``ref`` (replacing an earlier one); None undoes it."""
        email = mailbox_key(email)
        with self.conn.transaction() as tx:
            if kind is None:
                tx.execute("DELETE FROM feedback WHERE email = ? AND pid = ?", (email, ref))
            else:
                tx.execute(
                    "INSERT INTO feedback (email, pid, kind, at) VALUES (?,?,?,?) ON CONFLICT (email, pid)"
                    " DO UPDATE SET kind = excluded.kind, at = excluded.at",
                    (email, ref, kind, iso(now)),
                )

    def of(self, emails: Sequence[str]) -> dict[str, dict[str, list[Paper]]]:
        """For a batch of subscribers: mailbox key -> {"more": papers, "less": papers}, oldest first."""
        out: dict[str, dict[str, list[Paper]]] = {}
        for chunk in chunks([mailbox_key(e) for e in emails]):
            for r in self.conn.execute(
                f"SELECT f.email AS reader, f.kind, p.* FROM feedback f JOIN papers p ON p.pid = f.pid"
                f" WHERE f.email IN ({marks(chunk)}) ORDER BY f.at, f.pid",
                tuple(chunk),
            ):
                mine = out.setdefault(r["reader"], {"more": [], "less": []})
                mine[r["kind"]].append(paper_of(r))
        return out

    def models(self, emails: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """The stored models of readers (``selection.learner``): mailbox key -> (version, bytes)."""
        out: dict[str, tuple[str, bytes]] = {}
        for chunk in chunks([mailbox_key(e) for e in emails]):
            for r in self.conn.execute(
                f"SELECT email, version, model FROM reader_models WHERE email IN ({marks(chunk)})",
                tuple(chunk),
            ):
                out[r["email"]] = (r["version"], bytes(r["model"]))
        return out

    def save_models(self, models: Sequence[tuple[str, str, bytes]], now: datetime) -> None:
        """Keep readers' models: (email, version, bytes) each, replacing what was kept."""
        with self.conn.transaction() as tx:
            for email, version, blob in models:
                tx.execute(
                    "INSERT INTO reader_models (email, version, model, fitted) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (email) DO UPDATE SET version = excluded.version, model = excluded.model,"
                    " fitted = excluded.fitted",
                    (mailbox_key(email), version, blob, iso(now)),
                )

    def shown(self, email: str, limit: int) -> list[Paper]:
        """The papers most recently sent to ``email``, at most ``limit``."""
        rows = self.conn.execute(
            "SELECT p.* FROM sent s JOIN papers p ON p.pid = s.pid WHERE s.email = ?"
            " ORDER BY s.sent_at DESC, p.pid DESC LIMIT ?",
            (mailbox_key(email), limit),
        )
        return [paper_of(r) for r in rows]
