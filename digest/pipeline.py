"""The daily job: ingest every source, diff and select per subscriber, render, deliver, record.

``run_once(settings, transport, store, now)`` is the whole run and returns a ``RunReport``; the CLI and the
scheduler are thin wrappers around it. Failure is local: a source that fails is reported and the others
still run; a message that is not accepted is reported and the other subscribers still get theirs. State is
saved step by step (each source's papers, each accepted message), never only at the end, so a crash loses
at most the message in flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage

from digest import sources
from digest.errors import DeliveryAbortedError, DeliveryError, ProfileError, SourceError, SubscriberError
from digest.models import (
    DRY_RUN,
    FAILED,
    NOTHING_NEW,
    SENT,
    Digest,
    RunReport,
    SourceReport,
    Subscriber,
    SubscriberReport,
)
from digest.render import Renderer
from digest.select import PaperIndex, check_profile
from digest.settings import Settings
from digest.store import Store
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
    """One subscriber's outcome before delivery: a digest to send, nothing new, or an error."""

    subscriber: Subscriber
    digest: Digest | None = None
    error: str | None = None
    note: str | None = None


def plan(settings: Settings, store: Store, now: datetime, *, only: str | None = None) -> list[Planned]:
    """Each active subscriber's digest: unsent candidates from the lookback window, selected and capped."""
    day = digest_day(settings, now)
    pool = PaperIndex(store.recent_papers(now - timedelta(days=settings.lookback_days)))
    out = []
    for sub in store.subscribers():
        if only is not None and sub.email.casefold() != only.casefold():
            continue
        problems = check_profile(sub.profile)
        if problems:
            detail = "; ".join(
                str(ProfileError(why, subscriber=sub.email, keyword=kw)) for kw, why in problems
            )
            log.warning("invalid profile, not sent: %s", detail)
            out.append(Planned(sub, error=f"invalid profile: {detail}"))
            continue
        if store.sent_on(sub.email, day):
            out.append(Planned(sub, note=f"already got the digest for {day.isoformat()}"))
            continue
        matches, total = pool.select(sub.profile, store.sent_refs(sub.email), sub.profile.max_papers)
        if not matches:
            out.append(Planned(sub))
            continue
        out.append(Planned(sub, Digest(sub, tuple(matches), day, more=total - len(matches))))
    return out


def _renderer(settings: Settings) -> Renderer:
    return Renderer(sender=settings.sender, templates_dir=settings.templates_dir, base_url=settings.base_url)


def run_once(
    settings: Settings, transport: Transport, store: Store, now: datetime, *, dry_run: bool = False
) -> RunReport:
    """The daily job. With ``dry_run``, it works on an in-memory copy of the store and sends nothing."""
    if dry_run:
        store = store.snapshot()
    store.sync_config_subscribers(settings.config_subscribers(), now)
    source_reports = ingest(settings, store, now)
    renderer = _renderer(settings)
    results: list[SubscriberReport] = []
    aborted: str | None = None
    with transport:
        for item in plan(settings, store, now):
            email = item.subscriber.email
            if item.error:
                results.append(SubscriberReport(email, FAILED, error=item.error))
                continue
            if item.digest is None:
                results.append(SubscriberReport(email, NOTHING_NEW, note=item.note))
                continue
            matches = item.digest.matches
            if aborted:
                results.append(SubscriberReport(email, FAILED, matches, error=aborted))
                continue
            try:
                message = renderer.render(item.digest, now)
            except Exception as exc:  # one bad digest must not stop the others
                log.exception("rendering the digest for %s failed", email)
                results.append(SubscriberReport(email, FAILED, matches, error=f"render failed: {exc}"))
                continue
            if dry_run:
                results.append(SubscriberReport(email, DRY_RUN, matches, message_id=message["Message-ID"]))
                continue
            try:
                transport.send(message)
            except DeliveryAbortedError as exc:
                aborted = str(exc)
                log.error("delivery aborted: %s", exc)
                results.append(SubscriberReport(email, FAILED, matches, error=aborted))
                continue
            except DeliveryError as exc:
                log.warning("delivery to %s failed: %s", email, exc)
                results.append(SubscriberReport(email, FAILED, matches, error=str(exc)))
                continue
            store.record_sent(email, message["Message-ID"], item.digest.day, item.digest.papers, now)
            results.append(SubscriberReport(email, SENT, matches, message_id=message["Message-ID"]))
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
        item = planned[0]
        message = _renderer(settings).render(item.digest, now) if item.digest else None
        return Preview(item, message)
    finally:
        copy.close()
