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
from collections.abc import Callable
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
    StoreError,
    SubscriberError,
    TransientDeliveryError,
)
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
)
from digest.render import Renderer
from digest.select import PaperIndex, check_profile, explain
from digest.settings import Settings
from digest.store import OutboxRow, Store
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


def plan(settings: Settings, store: Store, now: datetime, *, only: str | None = None) -> list[Planned]:
    """Per active subscriber: unfinished messages to resend, then today's digest if they have none yet.

    Today's candidates are stored papers from the lookback window, never sent to them and not in a message
    being resent, selected and capped by their profile.
    """
    day = digest_day(settings, now)
    pool = PaperIndex(store.recent_papers(now - timedelta(days=settings.lookback_days)))
    out: list[Planned] = []
    for sub in store.subscribers():
        if only is not None and sub.email.casefold() != only.casefold():
            continue
        if sub.bouncing:
            out.append(Planned(sub, bouncing=True))
            continue
        problems = check_profile(sub.profile)
        if problems:
            detail = "; ".join(
                str(ProfileError(why, subscriber=sub.email, keyword=kw)) for kw, why in problems
            )
            log.warning("invalid profile, not sent: %s", detail)
            out.append(Planned(sub, error=f"invalid profile: {detail}"))
            continue
        in_flight: set[int] = set()
        has_today = False
        for row in store.unfinished(sub.email):
            matches = tuple(explain(p, sub.profile) for p in store.papers_by_refs(row.refs))
            out.append(Planned(sub, Digest(sub, matches, row.day, more=row.more), resend=row))
            in_flight.update(row.refs)
            has_today = has_today or row.day == day
        if has_today or store.sent_on(sub.email, day):
            if not has_today:
                out.append(Planned(sub, note=f"already got the digest for {day.isoformat()}"))
            continue
        skip = store.sent_refs(sub.email) | in_flight
        matches_today, total = pool.select(sub.profile, skip, sub.profile.max_papers)
        if not matches_today:
            out.append(Planned(sub))
            continue
        out.append(Planned(sub, Digest(sub, tuple(matches_today), day, more=total - len(matches_today))))
    return out


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

    def send(self, message: EmailMessage) -> None:
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


def _courier(settings: Settings, transport: Transport, sleep: Callable[[float], None]) -> Courier:
    d = settings.delivery
    rate = settings.smtp.rate_limit if d.method == "smtp" else None
    return Courier(
        transport,
        retries=d.retries,
        backoff=d.retry_backoff,
        budget=d.retry_budget,
        rate_limit=rate,
        sleep=sleep,
    )


class _Run:
    """One run's delivery state: what it needs to turn a Planned into a SubscriberReport."""

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

    def deliver(self, item: Planned) -> SubscriberReport:
        email = item.subscriber.email
        if item.error:
            return SubscriberReport(email, FAILED, error=item.error)
        if item.bouncing:
            note = f"skipped: bouncing after repeated refusals; re-enable with: digest subscribe {email}"
            return SubscriberReport(email, BOUNCED, note=note)
        if item.digest is None:
            return SubscriberReport(email, NOTHING_NEW, note=item.note)
        matches = item.digest.matches
        if self.aborted or self.deferred:
            why = self.aborted or self.deferred
            return SubscriberReport(email, RETRY_LATER, matches, error=f"not attempted: {why}")
        try:
            composed = self.renderer.compose(
                item.digest, self.now, message_id=item.resend.message_id if item.resend else None
            )
        except Exception as exc:  # one bad digest must not stop the others
            log.exception("rendering the digest for %s failed", email)
            return SubscriberReport(email, FAILED, matches, error=f"render failed: {exc}")
        digest, message = composed.digest, composed.message  # the papers that fit the size budget
        matches = digest.matches
        message_id = str(message["Message-ID"])
        if self.dry_run:
            return SubscriberReport(email, DRY_RUN, matches, message_id=message_id)
        resent_note: str | None = None
        if item.resend:
            resent_note = f"resent after an interrupted run (digest of {digest.day.isoformat()})"
        try:
            if item.resend:
                row_id = item.resend.id
                self.store.resume_message(row_id, self.now)
            else:
                row_id = self.store.begin_message(
                    email, digest.day, message_id, digest.papers, self.now, digest.more
                )
        except StoreError as exc:
            return SubscriberReport(email, NOTHING_NEW, note=str(exc))
        try:
            self.courier.send(message)
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
        self.store.mark_sent(row_id, self.now)
        return SubscriberReport(email, SENT, matches, message_id=message_id, note=resent_note)


def run_once(
    settings: Settings,
    transport: Transport,
    store: Store,
    now: datetime,
    *,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    """The daily job. With ``dry_run``, it works on an in-memory copy of the store and sends nothing."""
    if dry_run:
        store = store.snapshot()
    store.sync_config_subscribers(settings.config_subscribers(), now)
    source_reports = ingest(settings, store, now)
    store.expire_retries(digest_day(settings, now), now)
    run = _Run(store, _renderer(settings), _courier(settings, transport, sleep), now, dry_run)
    with transport:
        results = [run.deliver(item) for item in plan(settings, store, now)]
    return RunReport(now, tuple(source_reports), tuple(results), transport.describe(), dry_run)


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
