"""Runs that share one day's work: the subscribers cut into ranges that processes claim in the database.

A ``digest run`` *joins* the open run of the day when another process is still in it, and otherwise
begins a new one whose ranges cover every subscriber (``CHUNK`` addresses each, in address order). Every
process of every host then claims one range at a time (``Runs.claim``), delivers it and marks it done;
after each batch it renews its claim's lease. A claim is free again when

- its lease ran out (a host that hangs: when it wakes, ``Runs.renew`` says it lost the range and it stops),
- or, on PostgreSQL, the session that took it is gone (a host killed, even by ``kill -9``: the server ends
  the session when its socket closes, and the claim is taken over at once, not after the lease).

Whoever takes a range over plans it afresh: subscribers who got the day's digest are skipped, and outbox
rows left ``sending`` are sent again with their Message-ID. So a dead host costs at most the messages it had
in flight, as a crashed single run does. On PostgreSQL the claim is ``FOR UPDATE SKIP LOCKED``: two
processes asking at once get different ranges without waiting for each other. SQLite has one writer at a
time, so the same UPDATE is atomic there; a SQLite database is used by one run at a time (the run lock), so
a new run never joins an old one there.

Membership: every process working in a run holds a shared advisory lock on (``MEMBER_CLASS``, run id) for
its session's life. A run whose members are all gone is over, whatever it left undone; the next run begins
afresh and covers everyone (it sends what the dead run missed).

Ingest once (``ingest_turn``): hosts that start together take turns on an advisory lock; a host that
waited while another read the sources finds a newer row in ``ingests`` and does not read them again.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

from digest.store.dialect import Connection
from digest.store.sql import iso

CHUNK = 1000  # subscribers per range: enough to amortise a claim, small enough to balance the processes
MEMBER_CLASS = 7320454  # advisory lock class (int4): members of run N hold (MEMBER_CLASS, N) shared
JOIN_KEY = 7320455  # advisory lock: one process at a time decides whether to join or begin a run
INGEST_KEY = 7320456  # advisory lock: one host at a time reads the sources
ANALYZED = ("sent", "messages", "subscribers")  # the tables a run reads by address


@dataclass(frozen=True, slots=True)
class Claim:
    """A range of subscribers [start, stop) a process holds; ``taken_over`` when another held it first."""

    id: int
    run: int
    start: str
    stop: str | None
    owner: str
    taken_over: bool = False


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A run's ranges: done, held by a live claim (another process at work), and free to claim."""

    done: int
    held: int
    free: int


@dataclass(frozen=True, slots=True)
class RangeRecord:
    """Who did one range of a run, for reports and benchmarks."""

    start: str
    owner: str | None
    claims: int
    subscribers: int | None


def owner_name() -> str:
    """This process, as claims name it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Runs:
    """The ``runs``, ``run_ranges`` and ``ingests`` tables (``store.runs``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect

    def _free(self) -> str:
        """SQL: the range ``r`` may be claimed (never claimed, lease over, or its session gone)."""
        return f"(r.owner IS NULL OR r.lease_until < {self.dialect.clock}{self.dialect.session_gone('r.owner_pid')})"

    def join(self, day: date, now: datetime, bounds: Sequence[str]) -> int:
        """The run this process works in: the open run of ``day`` if a process is still in it, else a new
        one whose ranges start at ``bounds`` (``Readers.bounds``; the first range starts at "" so that an
        address added meanwhile is not missed). Open runs nobody works in any more are closed."""
        with self.conn.transaction() as tx:
            self.dialect.lock_for_transaction(tx, JOIN_KEY)
            open_runs = tx.execute("SELECT id, day FROM runs WHERE finished IS NULL ORDER BY id").fetchall()
            joined = None
            for r in open_runs:
                if r["day"] == day.isoformat() and self.dialect.members_alive(tx, MEMBER_CLASS, int(r["id"])):
                    joined = int(r["id"])
                else:
                    tx.execute(f"UPDATE runs SET finished = {self.dialect.clock} WHERE id = ?", (r["id"],))
            if joined is None:
                joined = int(
                    tx.execute(
                        "INSERT INTO runs (day, created) VALUES (?, ?) RETURNING id",
                        (day.isoformat(), iso(now)),
                    ).fetchone()[0]
                )
                starts = ["", *bounds[1:]] if bounds else [""]
                tx.executemany(
                    "INSERT INTO run_ranges (run, start, stop) VALUES (?, ?, ?)",
                    [(joined, s, e) for s, e in zip(starts, [*starts[1:], None], strict=True)],
                )
            self.attend(joined)  # before the decision is committed: nobody may close it meanwhile
            began = not any(r["id"] == joined for r in open_runs)
        if began:  # yesterday's growth, or a store just copied in by migrate-store
            self.dialect.analyze(self.conn, ANALYZED)
        return joined

    def attend(self, run: int) -> None:
        """Count this session among ``run``'s members until it ends (a worker process calls it on its own
        connection): while one member lives, another host joins the run instead of beginning one."""
        self.dialect.attend(self.conn, MEMBER_CLASS, run)

    def claim(self, run: int, owner: str, lease: float) -> Claim | None:
        """Claim the first free range of ``run`` for ``lease`` seconds; None when none is free."""
        clock = self.dialect.clock
        with self.conn.transaction() as tx:
            row = tx.execute(
                f"UPDATE run_ranges SET owner = ?, owner_pid = {self.dialect.session}, lease_until = {clock} + ?,"
                " claims = claims + 1"
                " WHERE id = (SELECT r.id FROM run_ranges r WHERE r.run = ? AND r.done IS NULL"
                f" AND {self._free()} ORDER BY r.id LIMIT 1{self.dialect.skip_locked})"
                " RETURNING id, start, stop, claims",
                (owner, lease, run),
            ).fetchone()
        if row is None:
            return None
        return Claim(int(row["id"]), run, row["start"], row["stop"], owner, taken_over=row["claims"] > 1)

    def renew(self, claim: Claim, lease: float) -> bool:
        """Extend the claim's lease; False if it was lost (it ran out and another process took it)."""
        with self.conn.transaction() as tx:
            cur = tx.execute(
                f"UPDATE run_ranges SET lease_until = {self.dialect.clock} + ? WHERE id = ? AND owner = ?"
                " AND done IS NULL",
                (lease, claim.id, claim.owner),
            )
        return bool(cur.rowcount)

    def finish_range(self, claim: Claim, subscribers: int) -> bool:
        """Mark the claimed range done (``subscribers`` planned in it); False if the claim was lost.

        Where the planner works from statistics (PostgreSQL), when the run's 1st, 2nd, 4th, 8th… range is
        done the outbox tables are analysed: a first day fills ``sent`` from nothing far faster than
        autovacuum notices, and with the statistics of an empty table the planner scans the whole table for
        each batch's history instead of using the index (see docs/benchmarks.md). Doubling keeps the
        statistics within a factor of two of the truth for a few ANALYZEs a run."""
        with self.conn.transaction() as tx:
            cur = tx.execute(
                f"UPDATE run_ranges SET done = {self.dialect.clock}, subscribers = ? WHERE id = ? AND owner = ?"
                " AND done IS NULL",
                (subscribers, claim.id, claim.owner),
            )
        if cur.rowcount and self.dialect.gathers_statistics:
            done = self.conn.execute(
                "SELECT count(*) FROM run_ranges WHERE run = ? AND done IS NOT NULL", (claim.run,)
            )
            finished = int(done.fetchone()[0])
            if finished & (finished - 1) == 0:
                self.dialect.analyze(self.conn, ANALYZED)
        return bool(cur.rowcount)

    def progress(self, run: int) -> RunProgress:
        """How far ``run`` is: ranges done, held by a live claim, and free."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN done IS NOT NULL THEN 1 ELSE 0 END), 0),"
            f" coalesce(sum(CASE WHEN done IS NULL AND {self._free()} THEN 1 ELSE 0 END), 0)"
            " FROM run_ranges r WHERE run = ?",
            (run,),
        ).fetchone()
        total, done, free = int(row[0]), int(row[1]), int(row[2])
        return RunProgress(done, total - done - free, free)

    def finish(self, run: int) -> None:
        """Mark ``run`` finished (every range done): the next run begins a new one."""
        with self.conn.transaction() as tx:
            tx.execute(
                f"UPDATE runs SET finished = {self.dialect.clock} WHERE id = ? AND finished IS NULL", (run,)
            )

    def ranges(self, run: int) -> list[RangeRecord]:
        """Every range of ``run`` and who did it, in key order."""
        rows = self.conn.execute(
            "SELECT start, owner, claims, subscribers FROM run_ranges WHERE run = ? ORDER BY id", (run,)
        )
        return [RangeRecord(r["start"], r["owner"], r["claims"], r["subscribers"]) for r in rows]

    def latest(self) -> int | None:
        """The id of the newest run begun, if any."""
        row = self.conn.execute("SELECT max(id) FROM runs").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @contextmanager
    def ingest_turn(self, now: datetime) -> Iterator[bool]:
        """This host's turn to read the sources: yields False when another host read them while this one
        waited (hosts started together ingest once), True when this one should; then records the ingest.

        Where the run lock already makes runs take turns (SQLite), the answer is always True."""
        newest = "SELECT coalesce(max(id), 0) FROM ingests"
        before = int(self.conn.execute(newest).fetchone()[0])
        with self.dialect.taking_turns(self.conn, INGEST_KEY):
            if int(self.conn.execute(newest).fetchone()[0]) > before:
                yield False
                return
            yield True
            with self.conn.transaction() as tx:
                tx.execute("INSERT INTO ingests (finished, host) VALUES (?, ?)", (iso(now), owner_name()))
