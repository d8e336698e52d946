"""The daily job: ingest every source, diff and select per subscriber, render, deliver, record.

``run_once(settings, transport, store, now)`` is the whole run and returns a ``RunReport``; the CLI and the
scheduler are thin wrappers around it. Failure is local: a source that fails is reported and the others
still run; a message that is not accepted is reported and the other subscribers still get theirs.

Delivery goes through the outbox (see ``store``): a digest's row is committed as ``sending`` before the
send and becomes ``sent`` only when the server accepted it, and only then are its papers recorded. A row a
crash left ``sending`` is resent on the next run with the same Message-ID; that is the one window in which a
subscriber can get a message twice (the server accepted it, the process died before recording it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage

from digest import sources
from digest.errors import (
    DeliveryAbortedError,
    PermanentDeliveryError,
    ProfileError,
    ServerUnavailableError,
    SourceError,
    SubscriberError,
    TransientDeliveryError,
)
from digest.mime import Outgoing
from digest.models import (
    BOUNCED,
    DRY_RUN,
    FAILED,
    NOTHING_NEW,
    RETRY_LATER,
    SENT,
    Digest,
    RunReport,
    SourceReport,
    Subscriber,
    SubscriberReport,
    Tally,
)
from digest.render import Composed, Renderer
from digest.select import PaperIndex, check_profile, explain
from digest.settings import Settings
from digest.store import DeliveryState, NewMessage, OutboxRow, Store
from digest.transport import Transport

log = logging.getLogger("digest")


def digest_day(settings: Settings, now: datetime) -> date:
    """The local date a run at ``now`` sends for, in the configured time zone."""
    return now.astimezone(settings.zone).date()


def ingest(settings: Settings, store: Store, now: datetime) -> list[SourceReport]:
    """Read every source into the store, one transaction per source; failures are reported, not raised."""
    today = digest_day(settings, now)
    reports = []
    for cfg in settings.sources:
        try:
            validators = store.validators(cfg.name, cfg.url) if cfg.url else None
            loaded = sources.load(cfg, validators, today)
            new = store.ingest(loaded.papers, now, source=cfg.name, url=cfg.url, validators=loaded.validators)
            reports.append(
                SourceReport(cfg.name, cfg.kind, len(loaded.papers), new, None, loaded.not_modified)
            )
            log.info("source %s: %d papers, %d new", cfg.name, len(loaded.papers), new)
        except SourceError as exc:
            log.warning("%s", exc)
            reports.append(SourceReport(cfg.name, cfg.kind, error=str(exc)))
        except Exception as exc:  # a bug or an unforeseen input must not stop the other sources
            log.exception("source %s failed unexpectedly", cfg.name)
            reports.append(SourceReport(cfg.name, cfg.kind, error=f"unexpected {type(exc).__name__}: {exc}"))
    return reports


@dataclass(frozen=True, slots=True)
class Planned:
    """One message to send (a new digest, or an unfinished one again), or why there is none."""

    subscriber: Subscriber
    digest: Digest | None = None
    error: str | None = None
    note: str | None = None
    resend: OutboxRow | None = None
    bouncing: bool = False


BATCH = 256  # subscribers planned, begun, delivered and recorded together


def candidate_pool(settings: Settings, store: Store, now: datetime) -> PaperIndex:
    """The stored papers of the lookback window, indexed once per run (or once per worker)."""
    return PaperIndex(store.recent_papers(now - timedelta(days=settings.lookback_days)))


def plan_batches(
    settings: Settings,
    store: Store,
    now: datetime,
    *,
    pool: PaperIndex | None = None,
    only: str | None = None,
    start: str = "",
    stop: str | None = None,
    size: int = BATCH,
) -> Iterator[list[Planned]]:
    """``plan`` a batch of subscribers at a time (addresses in [start, stop)), each batch's state read in
    a few queries; memory stays flat however many subscribers there are."""
    day = digest_day(settings, now)
    if pool is None:
        pool = candidate_pool(settings, store, now)
    min_ref = min((p.ref for p in pool.papers if p.ref is not None), default=0)
    for subs in store.subscriber_batches(size, start=start, stop=stop):
        if only is not None:
            subs = [s for s in subs if s.email.casefold() == only.casefold()]
        if subs:
            state = store.delivery_state([s.email for s in subs], day, min_ref)
            yield [p for sub in subs for p in _plan_one(sub, state, pool, store, day)]


def plan(settings: Settings, store: Store, now: datetime, *, only: str | None = None) -> list[Planned]:
    """Per active subscriber: unfinished messages to resend, then today's digest if they have none yet.

    Today's candidates are stored papers from the lookback window, never sent to them and not in a message
    being resent, selected and capped by their profile.
    """
    return [p for batch in plan_batches(settings, store, now, only=only) for p in batch]


def _plan_one(
    sub: Subscriber, state: DeliveryState, pool: PaperIndex, store: Store, day: date
) -> list[Planned]:
    if sub.bouncing:
        return [Planned(sub, bouncing=True)]
    problems = check_profile(sub.profile)
    if problems:
        detail = "; ".join(str(ProfileError(why, subscriber=sub.email, keyword=kw)) for kw, why in problems)
        log.warning("invalid profile, not sent: %s", detail)
        return [Planned(sub, error=f"invalid profile: {detail}")]
    out: list[Planned] = []
    key = sub.email.casefold()
    in_flight: set[int] = set()
    has_today = False
    for row in state.unfinished.get(key, ()):
        matches = tuple(explain(p, sub.profile) for p in store.papers_by_refs(row.refs))
        out.append(Planned(sub, Digest(sub, matches, row.day, more=row.more), resend=row))
        in_flight.update(row.refs)
        has_today = has_today or row.day == day
    if has_today or key in state.sent_today:
        if not has_today:
            out.append(Planned(sub, note=f"already got the digest for {day.isoformat()}"))
        return out
    skip = state.sent_refs.get(key, set()) | in_flight
    matches_today, total = pool.select(sub.profile, skip, sub.profile.max_papers)
    if not matches_today:
        return [*out, Planned(sub)]
    return [*out, Planned(sub, Digest(sub, tuple(matches_today), day, more=total - len(matches_today)))]


class Courier:
    """Sends through a transport with bounded retries and optional pacing.

    A transient failure is retried up to ``retries`` times, waiting ``backoff`` seconds doubled each time.
    ``budget`` caps the seconds one run spends on transient failures (the waits and the failed attempts
    themselves, timeouts included); once spent, a transient failure is final for this run. ``rate_limit``
    (messages per second) spaces the sends.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        retries: int = 3,
        backoff: float = 2.0,
        budget: float = 120.0,
        rate_limit: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.retries = retries
        self.backoff = backoff
        self.budget_left = budget
        self.interval = 1.0 / rate_limit if rate_limit else 0.0
        self.sleep = sleep
        self.clock = clock
        self._last: float | None = None

    def _pace(self) -> None:
        if self.interval and self._last is not None:
            wait = self._last + self.interval - self.clock()
            if wait > 0:
                self.sleep(wait)
        self._last = self.clock()

    def send(self, message: Outgoing) -> None:
        attempt = 0
        while True:
            self._pace()
            started = self.clock()
            try:
                self.transport.send(message)
                return
            except TransientDeliveryError as exc:
                self.budget_left -= self.clock() - started
                delay = self.backoff * (2**attempt)
                if attempt >= self.retries or delay > self.budget_left:
                    raise
                log.info("transient failure (%s); retry %d in %.1f s", exc, attempt + 1, delay)
                self.budget_left -= delay
                self.sleep(delay)
                attempt += 1


def _renderer(settings: Settings) -> Renderer:
    return Renderer(sender=settings.sender, templates_dir=settings.templates_dir, base_url=settings.base_url)


def _courier(
    settings: Settings, transport: Transport, sleep: Callable[[float], None] = time.sleep, share: int = 1
) -> Courier:
    """The courier for a transport; with ``share`` workers sending at once, each gets its share of the rate."""
    d = settings.delivery
    rate = settings.smtp.rate_limit / share if d.method == "smtp" and settings.smtp.rate_limit else None
    return Courier(
        transport,
        retries=d.retries,
        backoff=d.retry_backoff,
        budget=d.retry_budget,
        rate_limit=rate,
        sleep=sleep,
    )


class Delivery:
    """One run's (or one worker's) delivery state: turns batches of Planned into SubscriberReports.

    Per batch: render every digest, commit all their outbox rows in one transaction, send each, then
    record the accepted ones. Into a Maildir (idempotent: a resend of the same Message-ID adds no copy)
    the batch is flushed to disk and recorded in one transaction; over SMTP each accepted message is
    recorded at once, so a crash can resend at most the one message in flight.
    """

    def __init__(
        self, store: Store, renderer: Renderer, courier: Courier, now: datetime, dry_run: bool
    ) -> None:
        self.store = store
        self.renderer = renderer
        self.courier = courier
        self.now = now
        self.dry_run = dry_run
        self.aborted: str | None = None  # AUTH/TLS failure: a configuration problem
        self.deferred: str | None = None  # the server is unreachable after retries

    def _without_sending(self, item: Planned) -> SubscriberReport | None:
        email = item.subscriber.email
        if item.error:
            return SubscriberReport(email, FAILED, error=item.error)
        if item.bouncing:
            note = f"skipped: bouncing after repeated refusals; re-enable with: digest subscribe {email}"
            return SubscriberReport(email, BOUNCED, note=note)
        if item.digest is None:
            return SubscriberReport(email, NOTHING_NEW, note=item.note)
        if self.aborted or self.deferred:
            why = self.aborted or self.deferred
            return SubscriberReport(email, RETRY_LATER, item.digest.matches, error=f"not attempted: {why}")
        return None

    def deliver_batch(self, items: list[Planned]) -> list[SubscriberReport]:
        reports: dict[int, SubscriberReport] = {}
        ready: list[tuple[int, Planned, Composed]] = []
        for i, item in enumerate(items):
            early = self._without_sending(item)
            if early is not None:
                reports[i] = early
                continue
            assert item.digest is not None
            try:
                composed = self.renderer.compose(
                    item.digest, self.now, message_id=item.resend.message_id if item.resend else None
                )
            except Exception as exc:  # one bad digest must not stop the others
                log.exception("rendering the digest for %s failed", item.subscriber.email)
                reports[i] = SubscriberReport(
                    item.subscriber.email, FAILED, item.digest.matches, error=f"render failed: {exc}"
                )
                continue
            if self.dry_run:
                reports[i] = SubscriberReport(
                    item.subscriber.email,
                    DRY_RUN,
                    composed.digest.matches,
                    message_id=composed.outgoing.message_id,
                )
                continue
            ready.append((i, item, composed))
        fresh = [(i, c) for i, item, c in ready if item.resend is None]
        new_ids = self.store.begin_messages(
            [
                NewMessage(
                    c.digest.subscriber.email,
                    c.digest.day,
                    c.outgoing.message_id,
                    tuple(p.ref for p in c.digest.papers if p.ref is not None),
                    c.digest.more,
                )
                for _, c in fresh
            ],
            self.now,
            resume=[item.resend.id for _, item, _ in ready if item.resend is not None],
        )
        row_ids = dict(zip((i for i, _ in fresh), new_ids, strict=True))
        accepted: list[int] = []
        for i, item, composed in ready:
            row_id = item.resend.id if item.resend else row_ids[i]
            if row_id is None:
                day = composed.digest.day.isoformat()
                reports[i] = SubscriberReport(
                    item.subscriber.email,
                    NOTHING_NEW,
                    note=f"{item.subscriber.email} already has a digest for {day}",
                )
                continue
            reports[i] = self._send(item, composed, row_id, accepted)
        if accepted:
            self.courier.transport.flush()
            self.store.mark_sent_many(accepted, self.now)
        return [reports[i] for i in range(len(items))]

    def _send(self, item: Planned, composed: Composed, row_id: int, accepted: list[int]) -> SubscriberReport:
        email = item.subscriber.email
        digest, outgoing = composed.digest, composed.outgoing  # the papers that fit the size budget
        matches, message_id = digest.matches, outgoing.message_id
        if self.aborted or self.deferred:
            why = f"not attempted: {self.aborted or self.deferred}"
            self.store.mark_retry(row_id, why, self.now)
            return SubscriberReport(email, RETRY_LATER, matches, error=why, message_id=message_id)
        try:
            self.courier.send(outgoing)
        except DeliveryAbortedError as exc:
            self.store.mark_retry(row_id, str(exc), self.now)
            self.aborted = str(exc)
            log.error("delivery aborted: %s", exc)
            return SubscriberReport(email, FAILED, matches, error=str(exc), message_id=message_id)
        except TransientDeliveryError as exc:
            self.store.mark_retry(row_id, str(exc), self.now)
            if isinstance(exc, ServerUnavailableError):
                self.deferred = str(exc)
                log.error("server unavailable, the remaining messages wait for the next run: %s", exc)
            log.warning("delivery to %s will be retried next run: %s", email, exc)
            return SubscriberReport(email, RETRY_LATER, matches, error=str(exc), message_id=message_id)
        except PermanentDeliveryError as exc:
            bouncing = self.store.mark_failed(row_id, str(exc), self.now)
            log.warning("delivery to %s refused%s: %s", email, " (now bouncing)" if bouncing else "", exc)
            return SubscriberReport(email, BOUNCED if bouncing else FAILED, matches, error=str(exc))
        if self.courier.transport.idempotent:
            accepted.append(row_id)  # recorded with the rest of the batch, after one flush to disk
        else:
            self.store.mark_sent(row_id, self.now)
        note = (
            f"resent after an interrupted run (digest of {digest.day.isoformat()})" if item.resend else None
        )
        return SubscriberReport(email, SENT, matches, message_id=message_id, note=note)


def run_once(
    settings: Settings,
    transport: Transport,
    store: Store,
    now: datetime,
    *,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> RunReport:
    """The daily job. With ``dry_run``, it works on an in-memory copy of the store and sends nothing.

    ``progress`` is called with the number of subscribers done after each batch. With ``workers`` > 1
    (and not a dry run), deliveries run in that many processes (see ``workers``), each through its own
    transport made from ``settings``; ``transport`` then only names where the mail went.
    """
    started = time.perf_counter()
    if dry_run:
        store = store.snapshot()
    store.sync_config_subscribers(settings.config_subscribers(), now)
    source_reports = tuple(ingest(settings, store, now))
    store.expire_retries(digest_day(settings, now), now)
    ingested = time.perf_counter()
    if workers > 1 and not dry_run:
        from digest.workers import CHUNK, deliver_in_workers

        tally = deliver_in_workers(settings, store.subscriber_bounds(CHUNK), now, workers, progress)
    else:
        delivery = Delivery(store, _renderer(settings), _courier(settings, transport, sleep), now, dry_run)
        tally = Tally()
        with transport:
            for batch in plan_batches(settings, store, now):
                tally.add(delivery.deliver_batch(batch))
                if progress:
                    progress(len(batch))
    timings = {"ingest": ingested - started, "deliver": time.perf_counter() - ingested}
    return tally.report(now, source_reports, transport.describe(), dry_run, timings)


def run_configured(settings: Settings, store: Store, now: datetime, *, dry_run: bool = False) -> RunReport:
    """``run_once`` as the CLI and the scheduler run it: the transport and the number of worker processes
    from the settings (``[delivery] workers``; automatic by default), and progress on stderr for long
    runs (see ``progress``)."""
    from digest.progress import run_progress
    from digest.transport import make_transport
    from digest.workers import worker_count

    subscribers = store.count_subscribers()
    workers = worker_count(settings.delivery.workers, subscribers, settings.delivery.method)
    transport = make_transport(settings)
    with run_progress(subscribers) as progress:
        return run_once(settings, transport, store, now, dry_run=dry_run, progress=progress, workers=workers)


@dataclass(frozen=True, slots=True)
class Preview:
    planned: Planned
    message: EmailMessage | None


def preview(settings: Settings, store: Store, email: str, now: datetime) -> Preview:
    """What ``email`` would get if the job ran now; works on an in-memory copy, so nothing changes."""
    copy = store.snapshot()
    try:
        copy.sync_config_subscribers(settings.config_subscribers(), now)
        if copy.subscriber(email) is None:
            raise SubscriberError(
                f"no subscriber {email}", hint=f"add one with: digest subscribe {email} --keyword ..."
            )
        ingest(settings, copy, now)
        planned = plan(settings, copy, now, only=email)
        if not planned:
            raise SubscriberError(
                f"{email} is unsubscribed", hint=f"re-subscribe with: digest subscribe {email}"
            )
        item = next((p for p in planned if p.digest is not None), planned[0])
        message = _renderer(settings).render(item.digest, now) if item.digest else None
        return Preview(item, message)
    finally:
        copy.close()
