"""Delivering a run: plan each subscriber's message, send it through the outbox, record it. One loop.

``deliver_range(context, start, stop)`` is the whole of it for the subscribers whose addresses fall in
[start, stop). A run's ranges are claimed in the database (``sharing.deliver_claims``, see ``store.runs``),
so one process, several worker processes and several hosts all go through the same loop, each range once. Per
batch of ``BATCH`` subscribers:

1. **plan** (``planning.plan_batches``): their delivery state in a few queries, then per subscriber a
   ``Skip`` (with the reason) or a ``Send``: an unfinished message to send again, then their period's digest
   if it is due (their hour and cadence, ``cadence``) and they have none;
2. **begin**: render every ``Send`` and commit all their outbox rows (``sending``) in one transaction;
3. **send** each through the ``Courier`` (bounded retries, pacing, a run-wide retry budget);
4. **record**: a row becomes ``sent`` and its papers are recorded only once the channel accepted it; over
   SMTP at once, into a Maildir after the batch was made durable (the delivery is idempotent there).

Steps 2 to 4 go through a ``Channel`` (``channel``: compose, address, send), the same loop for every
channel: email (a Maildir or SMTP) today.

A crash between 2 and 4 leaves rows ``sending``; the next run sends exactly those again, with the same
Message-ID. That is the one window in which a subscriber can get a message twice.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from time import perf_counter

from digest.cadence import When
from digest.errors import (
    DeliveryAbortedError,
    DeliveryError,
    PermanentDeliveryError,
    ServerUnavailableError,
    TransientDeliveryError,
)
from digest.models import Status
from digest.reports import RunReport, SourceReport, SubscriberReport, is_problem
from digest.run.channel import Channel, Piece
from digest.run.planning import Planned, Send, Skip, plan_batches
from digest.run.recall import kept_reasons
from digest.selection.index import PaperIndex
from digest.store import NewMessage, Store

log = logging.getLogger("digest")


# -- the report --------------------------------------------------------------------------------------


# Where a delivery's time goes: planning and selection (who is due, what each gets), composing (render,
# MIME, DKIM), writing (the transport's send), making a batch durable (fsync), and the outbox's records.
PHASES = ("plan", "compose", "write", "fsync", "record")


class Tally:
    """Builds a RunReport batch by batch: counts every outcome, keeps the details of the first
    ``keep_first`` subscribers and of up to ``limit`` problems, and drops the rest (they were logged);
    adds up the seconds of each phase (``PHASES``) of every process that delivered."""

    def __init__(self, limit: int = 1000, keep_first: int | None = None) -> None:
        self.limit = limit
        self.keep_first = limit if keep_first is None else keep_first
        self.phases = dict.fromkeys(PHASES, 0.0)
        self.counts: dict[str, int] = {}
        self.kept: list[SubscriberReport] = []
        self.kept_problems = 0
        self.problems = 0
        self.omitted = 0
        self.internal = 0

    def add(self, reports: list[SubscriberReport]) -> None:
        for r in reports:
            self.counts[r.status] = self.counts.get(r.status, 0) + 1
            self.problems += is_problem(r)
            self.internal += r.internal
            self._keep(r)

    def _keep(self, r: SubscriberReport) -> None:
        """Keep the details of ``r`` (already counted) if there is room, else count it as omitted."""
        problem = is_problem(r)
        if len(self.kept) < self.keep_first or (problem and self.kept_problems < self.limit):
            self.kept.append(r)
            self.kept_problems += problem
        else:
            self.omitted += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: Tally) -> None:
        """Another tally's outcomes (a worker's) added to this one."""
        for status, n in other.counts.items():
            self.counts[status] = self.counts.get(status, 0) + n
        self.problems += other.problems
        self.omitted += other.omitted
        self.internal += other.internal
        self.add_phases(other.phases)
        for r in other.kept:
            self._keep(r)

    def add_phases(self, phases: dict[str, float]) -> None:
        for phase, seconds in phases.items():
            self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def report(
        self,
        started: datetime,
        sources: tuple[SourceReport, ...],
        delivered_to: str,
        dry_run: bool,
        timings: dict[str, float] | None = None,
        processes: int = 1,
    ) -> RunReport:
        return RunReport(
            started,
            sources,
            tuple(self.kept),
            delivered_to,
            dry_run,
            dict(self.counts),
            self.problems,
            self.omitted,
            timings,
            self.internal,
            {phase: round(seconds, 3) for phase, seconds in self.phases.items()},
            processes,
        )


# -- the outbox loop ---------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One run's (or one worker's) delivery state: turns batches of ``Planned`` into reports.

    Per batch: render every digest, commit all their outbox rows in one transaction, send each, then
    record the accepted ones. Into a Maildir (idempotent: a resend of the same Message-ID adds no copy)
    the batch is made durable and recorded in one transaction; over SMTP each accepted message is recorded
    at once, so a crash can resend at most the one message in flight.
    """

    store: Store
    channel: Channel
    now: datetime
    dry_run: bool = False
    aborted: str | None = None  # AUTH/TLS failure: a configuration problem
    deferred: str | None = None  # the server is unreachable after retries
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    def take_phases(self) -> dict[str, float]:
        """The seconds spent per phase since the last call (each is counted once, in one tally)."""
        taken, self.phases = self.phases, dict.fromkeys(PHASES, 0.0)
        return taken

    def _before_sending(self, item: Planned) -> SubscriberReport | None:
        """The report of a subscriber who gets nothing this run, or None for a message to send."""
        email = item.subscriber.email
        if isinstance(item, Skip):
            return SubscriberReport(email, item.status, error=item.error, note=item.note)
        if self.aborted or self.deferred:
            why = self.aborted or self.deferred
            return SubscriberReport(
                email, Status.RETRY_LATER, item.digest.matches, error=f"not attempted: {why}"
            )
        return None

    def _compose(self, item: Send) -> Piece | SubscriberReport:
        try:
            return self.channel.compose(
                item.digest, self.now, message_id=item.resend.message_id if item.resend else None
            )
        except Exception as exc:  # one bad digest must not stop the others
            log.exception("internal error: rendering the digest for %s failed", item.subscriber.email)
            return SubscriberReport(
                item.subscriber.email,
                Status.FAILED,
                item.digest.matches,
                error=f"internal error while rendering: {type(exc).__name__}: {exc}",
                internal=True,
            )

    def deliver_batch(self, items: list[Planned]) -> list[SubscriberReport]:
        reports: dict[int, SubscriberReport] = {}
        ready: list[tuple[int, Send, Piece]] = []
        for i, item in enumerate(items):
            early = self._before_sending(item)
            if early is not None:
                reports[i] = early
                continue
            assert isinstance(item, Send)
            began = perf_counter()
            composed = self._compose(item)
            self.phases["compose"] += perf_counter() - began
            if isinstance(composed, SubscriberReport):
                reports[i] = composed
            elif self.dry_run:
                reports[i] = SubscriberReport(
                    item.subscriber.email,
                    Status.DRY_RUN,
                    composed.digest.matches,
                    message_id=composed.message_id,
                    updates=tuple(p.key for p in composed.digest.updates),
                )
            else:
                ready.append((i, item, composed))
        began = perf_counter()
        row_ids = self._begin(ready)
        self.phases["record"] += perf_counter() - began
        accepted: dict[int, int] = {}  # report index -> row id, recorded after the batch is durable
        for i, item, composed in ready:
            row_id = row_ids[i]
            if row_id is None:
                day = composed.digest.day.isoformat()
                email = item.subscriber.email
                reports[i] = SubscriberReport(
                    email, Status.NOTHING_NEW, note=f"{email} already has a digest for {day}"
                )
                continue
            reports[i] = self._send(item, composed, row_id)
            if reports[i].status == Status.SENT and self.channel.idempotent:
                accepted[i] = row_id
        if accepted:
            self._record_batch(accepted, reports)
        return [reports[i] for i in range(len(items))]

    def _record_batch(self, accepted: dict[int, int], reports: dict[int, SubscriberReport]) -> None:
        """Make a batch delivered through an idempotent channel durable, then record it; if it cannot be made
        durable, its rows wait for the next run (which finds the files already there and adds no copy)."""
        began = perf_counter()
        try:
            self.channel.flush()
        except DeliveryError as exc:
            log.error("%s; the batch is sent again by the next run", exc)
            for i, row_id in accepted.items():
                self.store.outbox.mark_retry(row_id, str(exc), self.now)
                reports[i] = replace(reports[i], status=Status.RETRY_LATER, error=str(exc))
            return
        flushed = perf_counter()
        self.store.outbox.mark_sent_many(list(accepted.values()), self.now)
        self.phases["fsync"] += flushed - began
        self.phases["record"] += perf_counter() - flushed

    def _begin(self, ready: list[tuple[int, Send, Piece]]) -> dict[int, int | None]:
        """Commit the outbox rows of a batch (new ones begun, resends marked in flight again)."""
        fresh = [(i, c) for i, item, c in ready if item.resend is None]
        new_ids = self.store.outbox.begin(
            [
                NewMessage(
                    c.digest.subscriber.email,
                    c.digest.day,
                    c.message_id,
                    tuple(p.ref for p in c.digest.papers if p.ref is not None),
                    c.digest.more,
                    c.digest.rest,
                    tuple((p.ref, p.version or 0) for p in c.digest.updates if p.ref is not None),
                    kept_reasons(c.digest),
                )
                for _, c in fresh
            ],
            self.now,
            resume=[item.resend.id for _, item, _ in ready if item.resend is not None],
        )
        row_ids: dict[int, int | None] = dict(zip((i for i, _ in fresh), new_ids, strict=True))
        row_ids.update((i, item.resend.id) for i, item, _ in ready if item.resend is not None)
        return row_ids

    def _send(self, item: Send, composed: Piece, row_id: int) -> SubscriberReport:
        email = item.subscriber.email
        digest = composed.digest  # the papers that fit (an email's size budget)
        matches, message_id = digest.matches, composed.message_id
        if self.aborted or self.deferred:
            why = f"not attempted: {self.aborted or self.deferred}"
            self.store.outbox.mark_retry(row_id, why, self.now)
            return SubscriberReport(email, Status.RETRY_LATER, matches, error=why, message_id=message_id)
        began = perf_counter()
        try:
            self.channel.send(composed)
        except DeliveryAbortedError as exc:
            self.store.outbox.mark_retry(row_id, str(exc), self.now)
            self.aborted = str(exc)
            log.error("delivery aborted: %s", exc)
            return SubscriberReport(email, Status.FAILED, matches, error=str(exc), message_id=message_id)
        except TransientDeliveryError as exc:
            self.store.outbox.mark_retry(row_id, str(exc), self.now)
            if isinstance(exc, ServerUnavailableError):
                self.deferred = str(exc)
                log.error("server unavailable, the remaining messages wait for the next run: %s", exc)
            log.warning("delivery to %s will be retried next run: %s", email, exc)
            return SubscriberReport(email, Status.RETRY_LATER, matches, error=str(exc), message_id=message_id)
        except PermanentDeliveryError as exc:
            bouncing = self.store.outbox.mark_failed(
                row_id, str(exc), self.now, bounce=exc.recipient_at_fault
            )
            if not exc.recipient_at_fault:
                log.error("the server refused our message to %s (not counted as a bounce): %s", email, exc)
            else:
                log.warning("delivery to %s refused%s: %s", email, " (now bouncing)" if bouncing else "", exc)
            return SubscriberReport(
                email, Status.BOUNCED if bouncing else Status.FAILED, matches, error=str(exc)
            )
        sent = perf_counter()
        self.phases["write"] += sent - began
        if not self.channel.idempotent:  # else recorded with the batch, once it is durable
            self.store.outbox.mark_sent(row_id, self.now)
            self.phases["record"] += perf_counter() - sent
        note = (
            f"resent after an interrupted run (digest of {digest.day.isoformat()})" if item.resend else None
        )
        told = tuple(p.key for p in digest.updates)
        return SubscriberReport(email, Status.SENT, matches, message_id=message_id, note=note, updates=told)


# A run allocates many short-lived containers (reasons, matches, template contexts) beside a large heap that
# lasts (the pool, its caches, the templates). With the collector's default, a young collection every 700
# allocations and the full passes over that heap they lead to were a large share of a run's time
# (docs/benchmarks.md); reference counting frees nearly all of it anyway.
YOUNG_COLLECTION = 100_000


@contextmanager
def fewer_collections(young: int = YOUNG_COLLECTION) -> Iterator[None]:
    """The cyclic garbage collector runs a young collection every ``young`` allocations (never more often
    than it already did), and as before once this is left.

    >>> before = gc.get_threshold()
    >>> with fewer_collections(123_456):
    ...     gc.get_threshold()[0]
    123456
    >>> gc.get_threshold() == before
    True
    """
    before = gc.get_threshold()
    gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass
class RangeContext:
    """What delivering a range needs, built once per run (or once per worker process): the delivery loop's
    state, the candidate pool, the schedule of readers who set none."""

    delivery: Delivery
    pool: PaperIndex
    default: When
    any_hour: bool = False  # every reader's hour counts as come (``digest run --now``)


def deliver_range(
    context: RangeContext,
    start: str = "",
    stop: str | None = None,
    *,
    tally: Tally | None = None,
    after_batch: Callable[[int], None] | None = None,
) -> Tally:
    """Plan and deliver the subscribers in [start, stop), a batch at a time; the outcomes in ``tally``.

    ``after_batch`` is called with the batch's size after each batch (progress; a worker's liveness check).
    """
    tally = tally if tally is not None else Tally()
    d = context.delivery
    batches = plan_batches(
        d.store, d.now, context.default, context.pool, start=start, stop=stop, any_hour=context.any_hour
    )
    planning = perf_counter()
    try:
        with fewer_collections():
            for batch in batches:
                d.phases["plan"] += perf_counter() - planning
                tally.add(d.deliver_batch(batch))
                if after_batch:
                    after_batch(len(batch))
                planning = perf_counter()
        d.phases["plan"] += perf_counter() - planning
    finally:
        tally.add_phases(d.take_phases())
    return tally
