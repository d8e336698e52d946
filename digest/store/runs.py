"""Runs that share one day's work (#16): the subscribers cut into ranges that processes claim in the database.

A ``digest run`` *joins* the open run of the day when another process is still in it, and otherwise
begins a new one whose ranges cover every subscriber (``CHUNK`` addresses each, in address order). Every
process of every host then claims one range at a time (``claim_range``), delivers it and marks it done;
after each batch it renews its claim's lease. A claim is free again when

- its lease ran out (a host that hangs: when it wakes, ``renew_claim`` says it lost the range and it stops),
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

from digest.store.base import Connection, _iso

CHUNK = 1000  # subscribers per range: enough to amortise a claim, small enough to balance the processes
MEMBER_CLASS = 7320454  # advisory lock class (int4): members of run N hold (MEMBER_CLASS, N) shared
JOIN_KEY = 7320455  # advisory lock: one process at a time decides whether to join or begin a run
INGEST_KEY = 7320456  # advisory lock: one host at a time reads the sources


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


class Runs(Connection):
    """The run-sharing half of ``Store``."""

    def _epoch(self) -> str:
        """SQL for the database's clock in seconds: one clock for every host's leases."""
        if self.dialect == "postgresql":
            return "extract(epoch from clock_timestamp())::double precision"
        return "((julianday('now') - 2440587.5) * 86400.0)"

    def _free(self) -> str:
        """SQL: the range ``r`` may be claimed (never claimed, lease over, or its session gone)."""
        gone = ""
        if self.dialect == "postgresql":
            gone = " OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.owner_pid)"
        return f"(r.owner IS NULL OR r.lease_until < {self._epoch()}{gone})"

    def _members_alive(self, run: int) -> bool:
        """PostgreSQL: whether a process still works in ``run`` (its members hold the lock shared)."""
        row = self.conn.execute("SELECT pg_try_advisory_xact_lock(?, ?)", (MEMBER_CLASS, run)).fetchone()
        return not row[0]

    def join_run(self, day: date, now: datetime, bounds: Sequence[str]) -> int:
        """The run this process works in: the open run of ``day`` if a process is still in it, else a new
        one whose ranges start at ``bounds`` (``subscriber_bounds``; the first range starts at "" so that
        an address added meanwhile is not missed). Open runs nobody works in any more are closed."""
        postgresql = self.dialect == "postgresql"
        with self.transaction() as tx:
            if postgresql:
                tx.execute("SELECT pg_advisory_xact_lock(?)", (JOIN_KEY,))
            open_runs = tx.execute("SELECT id, day FROM runs WHERE finished IS NULL ORDER BY id").fetchall()
            joined = None
            for r in open_runs:
                if postgresql and r["day"] == day.isoformat() and self._members_alive(r["id"]):
                    joined = int(r["id"])
                else:
                    tx.execute(f"UPDATE runs SET finished = {self._epoch()} WHERE id = ?", (r["id"],))
            if joined is None:
                joined = int(
                    tx.execute(
                        "INSERT INTO runs (day, created) VALUES (?, ?) RETURNING id",
                        (day.isoformat(), _iso(now)),
                    ).fetchone()[0]
                )
                starts = ["", *bounds[1:]] if bounds else [""]
                tx.executemany(
                    "INSERT INTO run_ranges (run, start, stop) VALUES (?, ?, ?)",
                    [(joined, s, e) for s, e in zip(starts, [*starts[1:], None], strict=True)],
                )
            self.attend_run(joined)  # before the decision is committed: nobody may close it meanwhile
            began = not any(r["id"] == joined for r in open_runs)
        if began and postgresql:
            self._analyze()  # yesterday's growth, or a store just copied in by migrate-store
        return joined

    def _analyze(self) -> None:
        """PostgreSQL: refresh the planner's statistics of the tables a run reads by address."""
        self.conn.execute("ANALYZE sent, messages, subscribers")

    def attend_run(self, run: int) -> None:
        """Count this session among ``run``'s members until it ends (PostgreSQL; a worker process calls it
        on its own connection)."""
        if self.dialect == "postgresql":
            self.conn.execute("SELECT pg_advisory_lock_shared(?, ?)", (MEMBER_CLASS, run))

    def claim_range(self, run: int, owner: str, lease: float) -> Claim | None:
        """Claim the first free range of ``run`` for ``lease`` seconds; None when none is free."""
        session = "pg_backend_pid()" if self.dialect == "postgresql" else "NULL"
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.dialect == "postgresql" else ""
        with self.transaction() as tx:
            row = tx.execute(
                f"UPDATE run_ranges SET owner = ?, owner_pid = {session}, lease_until = {self._epoch()} + ?,"
                " claims = claims + 1"
                " WHERE id = (SELECT r.id FROM run_ranges r WHERE r.run = ? AND r.done IS NULL"
                f" AND {self._free()} ORDER BY r.id LIMIT 1{skip_locked})"
                " RETURNING id, start, stop, claims",
                (owner, lease, run),
            ).fetchone()
        if row is None:
            return None
        return Claim(int(row["id"]), run, row["start"], row["stop"], owner, taken_over=row["claims"] > 1)

    def renew_claim(self, claim: Claim, lease: float) -> bool:
        """Extend the claim's lease; False if it was lost (it ran out and another process took it)."""
        with self.transaction() as tx:
            cur = tx.execute(
                f"UPDATE run_ranges SET lease_until = {self._epoch()} + ? WHERE id = ? AND owner = ?"
                " AND done IS NULL",
                (lease, claim.id, claim.owner),
            )
        return bool(cur.rowcount)

    def finish_range(self, claim: Claim, subscribers: int) -> bool:
        """Mark the claimed range done (``subscribers`` planned in it); False if the claim was lost.

        On PostgreSQL, when the run's 1st, 2nd, 4th, 8th… range is done, the outbox tables are analysed:
        a first day fills ``sent`` from nothing far faster than autovacuum notices, and with the statistics
        of an empty table the planner scans the whole table for each batch's history instead of using the
        index (0.6 s instead of 7 ms per batch of 250 at 360,000 rows; see docs/benchmarks.md).
        Doubling keeps the statistics within a factor of two of the truth for a few ANALYZEs a run."""
        with self.transaction() as tx:
            cur = tx.execute(
                f"UPDATE run_ranges SET done = {self._epoch()}, subscribers = ? WHERE id = ? AND owner = ?"
                " AND done IS NULL",
                (subscribers, claim.id, claim.owner),
            )
        if cur.rowcount and self.dialect == "postgresql":
            done = self.conn.execute(
                "SELECT count(*) FROM run_ranges WHERE run = ? AND done IS NOT NULL", (claim.run,)
            )
            finished = int(done.fetchone()[0])
            if finished & (finished - 1) == 0:
                self._analyze()
        return bool(cur.rowcount)

    def run_progress(self, run: int) -> RunProgress:
        """How far ``run`` is: ranges done, held by a live claim, and free."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN done IS NOT NULL THEN 1 ELSE 0 END), 0),"
            f" coalesce(sum(CASE WHEN done IS NULL AND {self._free()} THEN 1 ELSE 0 END), 0)"
            " FROM run_ranges r WHERE run = ?",
            (run,),
        ).fetchone()
        total, done, free = int(row[0]), int(row[1]), int(row[2])
        return RunProgress(done, total - done - free, free)

    def finish_run(self, run: int) -> None:
        """Mark ``run`` finished (every range done): the next run begins a new one."""
        with self.transaction() as tx:
            tx.execute(
                f"UPDATE runs SET finished = {self._epoch()} WHERE id = ? AND finished IS NULL", (run,)
            )

    def run_ranges(self, run: int) -> list[RangeRecord]:
        """Every range of ``run`` and who did it, in address order."""
        rows = self.conn.execute(
            "SELECT start, owner, claims, subscribers FROM run_ranges WHERE run = ? ORDER BY id", (run,)
        )
        return [RangeRecord(r["start"], r["owner"], r["claims"], r["subscribers"]) for r in rows]

    def latest_run(self) -> int | None:
        """The id of the newest run begun, if any."""
        row = self.conn.execute("SELECT max(id) FROM runs").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @contextmanager
    def ingest_turn(self, now: datetime) -> Iterator[bool]:
        """This host's turn to read the sources: yields False when another host read them while this one
        waited (hosts started together ingest once), True when this one should; then records the ingest.

        On SQLite the run lock already makes runs take turns, so the answer is always True."""
        postgresql = self.dialect == "postgresql"
        newest = "SELECT coalesce(max(id), 0) FROM ingests"
        before = int(self.conn.execute(newest).fetchone()[0])
        if postgresql:
            self.conn.execute("SELECT pg_advisory_lock(?)", (INGEST_KEY,))
        try:
            if int(self.conn.execute(newest).fetchone()[0]) > before:
                yield False
                return
            yield True
            with self.transaction() as tx:
                tx.execute("INSERT INTO ingests (finished, host) VALUES (?, ?)", (_iso(now), owner_name()))
        finally:
            if postgresql:
                self.conn.execute("SELECT pg_advisory_unlock(?)", (INGEST_KEY,))
