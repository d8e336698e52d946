"""What an operator watches: the counts behind ``/metrics``, read in a few small queries.

Each query is bounded by an index or by a small table, so a scrape every 15 seconds costs little however
long the history grows: subscribers by state (one pass over the subscribers), the outbox rows still in
flight (the partial index on unfinished rows), the messages of the latest run's day (``messages_day``),
the runs (one row a run) and, per source, when it last brought a new paper. And each source's run of
failed reads and the state last alerted about (``alerts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from digest.alerts import SourceHealth
from digest.models import MessageState
from digest.store.dialect import Connection


@dataclass(frozen=True, slots=True)
class Figures:
    """A snapshot of the store for monitoring; times are Unix seconds."""

    subscribers: dict[str, int]  # "active", "bouncing", "unsubscribed"
    unfinished: dict[str, int]  # outbox rows "sending" and "retry", whatever their day
    day: str | None  # the latest run's digest date
    day_messages: dict[str, int]  # that day's messages by status
    runs: int  # runs finished
    last_run_finished: float | None
    last_new_paper: dict[str, float]  # source name -> when it last brought a paper not seen before


def _epoch(iso: str) -> float:
    """``first_seen`` as Unix seconds.

    >>> _epoch("2026-11-23T06:00:00+00:00")
    1795413600.0
    """
    return datetime.fromisoformat(iso).timestamp()


class Health:
    """Each source's health (``source_health``) and the figures an operator watches (``store.health``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def last_new(self) -> dict[str, str]:
        """Per source name, when it last brought a paper not seen before (``first_seen``, ISO)."""
        rows = self.conn.execute("SELECT source, max(first_seen) FROM papers GROUP BY source")
        return {r[0]: r[1] for r in rows}

    def record_read(self, source: str, error: str | None) -> None:
        """One read of ``source``: a failure adds to its run of failures, a success ends it."""
        with self.conn.transaction() as tx:
            tx.execute(
                "INSERT INTO source_health (source, failures, last_error) VALUES (?, ?, ?)"
                " ON CONFLICT (source) DO UPDATE SET failures = CASE WHEN excluded.failures = 0 THEN 0"
                " ELSE source_health.failures + 1 END, last_error = coalesce(excluded.last_error,"
                " source_health.last_error)",
                (source, 0 if error is None else 1, error),
            )

    def sources(self, names: Sequence[str]) -> list[SourceHealth]:
        """What ``alerts`` needs of each named source, in the order given."""
        rows = {r["source"]: r for r in self.conn.execute("SELECT * FROM source_health")}
        fresh = self.last_new()
        return [
            SourceHealth(
                n,
                int(rows[n]["failures"]) if n in rows else 0,
                rows[n]["last_error"] if n in rows else None,
                fresh.get(n),
                rows[n]["alerted"] if n in rows else None,
            )
            for n in names
        ]

    def set_alerted(self, source: str, kind: str | None) -> None:
        """The state the operator was told about (None: recovered)."""
        with self.conn.transaction() as tx:
            tx.execute(
                "INSERT INTO source_health (source, alerted) VALUES (?, ?)"
                " ON CONFLICT (source) DO UPDATE SET alerted = excluded.alerted",
                (source, kind),
            )

    def figures(self) -> Figures:
        """The counts ``/metrics`` shows, read now."""
        subscribers = {
            r[0]: int(r[1])
            for r in self.conn.execute(
                "SELECT CASE WHEN active = 0 THEN 'unsubscribed' WHEN bouncing_since IS NOT NULL"
                " THEN 'bouncing' ELSE 'active' END AS state, count(*) FROM subscribers GROUP BY state"
            )
        }
        unfinished = {
            r[0]: int(r[1])
            for r in self.conn.execute(
                "SELECT status, count(*) FROM messages WHERE status IN (?, ?) GROUP BY status",
                (MessageState.SENDING, MessageState.RETRY),
            )
        }
        runs, last = self.conn.execute(
            "SELECT count(*), max(finished) FROM runs WHERE finished IS NOT NULL"
        ).fetchone()
        latest = self.conn.execute("SELECT day FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        day = latest[0] if latest else None
        day_messages = {
            r[0]: int(r[1])
            for r in self.conn.execute(
                "SELECT status, count(*) FROM messages WHERE digest_date = ? GROUP BY status", (day,)
            )
        }
        return Figures(
            subscribers,
            unfinished,
            day,
            day_messages,
            int(runs),
            float(last) if last is not None else None,
            {source: _epoch(seen) for source, seen in self.last_new().items()},
        )
