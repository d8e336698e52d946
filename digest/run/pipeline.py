"""The daily job's orchestration: ingest every source, then deliver (``delivery``), in one process or
spread over workers (``workers``); and the preview of one subscriber's digest.

``run_once(services, store, now)`` is the whole run and returns a ``RunReport``; the CLI and the scheduler
are thin wrappers around ``run_configured``. ``services`` (``wiring.Services``) holds what the run works
with, built once from the settings: the renderer, transports and couriers, the candidate pool's model.

Failure is local: a source that fails is reported and the others still run; a message that is not
accepted is reported and the other subscribers still get theirs. A failure of the database itself
(``StoreError``) is nobody's source's fault: it stops the run.

Exit status (``exit_status``): 0 all well; 1 something failed that the next run retries; 2 the run could
not run, or met an internal error (a bug: retrying will not fix it).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from digest import sources
from digest.alerts import Change, alert_message, changes
from digest.email.bounces import BounceReport, address_key, read_report, subscriber_of
from digest.email.dkim import signed
from digest.errors import (
    EXIT_CANNOT_RUN,
    EXIT_OK,
    EXIT_RETRY,
    DeliveryError,
    SourceError,
    StoreError,
    SubscriberError,
)
from digest.reports import RunReport, SourceReport
from digest.run.delivery import Delivery, RangeContext, Tally, deliver_range
from digest.run.planning import Planned, Send, plan
from digest.run.sharing import Sharing, deliver_claims
from digest.run.summaries import summarise
from digest.run.workers import deliver_in_workers, worker_count
from digest.store import CHUNK, Store, owner_name
from digest.wiring import Services

log = logging.getLogger("digest")


def exit_status(report: RunReport) -> int:
    """0 all well; 1 the run finished but something failed that the next run retries; 2 an internal
    error (a bug) was met: retrying will not fix it."""
    if report.internal:
        return EXIT_CANNOT_RUN
    return EXIT_OK if report.ok else EXIT_RETRY


def ingest(services: Services, store: Store, now: datetime) -> list[SourceReport]:
    """Read every source into the store, one transaction per source; failures are reported, not raised
    (except the database's own, which no other source could get past)."""
    today = services.day(now)
    reports = []
    for cfg in services.settings.sources:
        try:
            validators = store.papers.validators(cfg.name, cfg.url) if cfg.url else None
            loaded = sources.load(cfg, validators, today)
            new = store.papers.ingest(
                loaded.papers, now, source=cfg.name, url=cfg.url, validators=loaded.validators
            )
            revisions = sum(p.revision for p in loaded.papers)
            reports.append(
                SourceReport(
                    cfg.name,
                    cfg.kind,
                    len(loaded.papers) - revisions,
                    new,
                    None,
                    loaded.not_modified,
                    skipped=loaded.skipped,
                    clamped=loaded.clamped,
                    revisions=revisions,
                )
            )
            log.info(
                "source %s: %d papers, %d new, %d revisions", cfg.name, len(loaded.papers), new, revisions
            )
        except SourceError as exc:
            log.warning("%s", exc)
            reports.append(SourceReport(cfg.name, cfg.kind, error=str(exc)))
        except StoreError:
            raise
        except Exception as exc:  # a bug or an unforeseen input must not stop the other sources
            log.exception("internal error reading source %s", cfg.name)
            error = f"internal error: {type(exc).__name__}: {exc} (please report it with digest -vv's output)"
            reports.append(SourceReport(cfg.name, cfg.kind, error=error, internal=True))
    return reports


def ingest_once(services: Services, store: Store, now: datetime) -> list[SourceReport]:
    """``ingest``, unless another host read the sources while this one waited for its turn (hosts started
    together read them once; see ``store.runs``): then each source is reported as read by that run."""
    with store.runs.ingest_turn(now) as mine:
        if mine:
            reports = ingest(services, store, now)
            for report in reports:
                store.health.record_read(report.name, report.error)
            send_alerts(services, store, now)
            summaries = services.settings.summaries
            if summaries.url is not None:
                try:
                    summarise(summaries, store, now, lookback_days=services.settings.lookback_days)
                except StoreError:
                    raise
                except Exception:  # optional: a bug here never stops the digests, which go out without
                    log.exception("internal error while asking for summaries; the digests go out without")
            return reports
    log.info("the sources were read by a run on another host just now; not reading them again")
    return [SourceReport(cfg.name, cfg.kind, shared=True) for cfg in services.settings.sources]


def send_alerts(services: Services, store: Store, now: datetime) -> list[Change]:
    """With ``[alerts] to``: one email naming the sources that began failing or went stale, or recovered,
    since the last one (see ``alerts``); each is marked alerted only once the email was accepted, so a
    failed send is tried again by the next run. Returns what was sent about."""
    settings = services.settings
    if not settings.alerts.to:
        return []
    after = settings.alerts.after
    health = store.health.sources([cfg.name for cfg in settings.sources])
    found = changes(health, now, services.zone, after)
    if not found:
        return []
    message = signed(services.dkim, alert_message(settings.sender, settings.alerts.to, found, after, now))
    try:
        services.send_now(message)
    except DeliveryError as exc:
        log.error("the alert to %s was not sent (the next run tries again): %s", settings.alerts.to, exc)
        return []
    for change in found:
        store.health.set_alerted(change.source.name, change.kind)
    log.warning(
        "alert sent to %s: %s",
        settings.alerts.to,
        ", ".join(f"{c.source.name} {c.kind or 'recovered'}" for c in found),
    )
    return found


def run_once(
    services: Services,
    store: Store,
    now: datetime,
    *,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    any_hour: bool = False,
    range_size: int = CHUNK,
) -> RunReport:
    """The job: every reader who is due gets their digest (see ``planning``; with ``any_hour`` every
    reader's hour counts as come). With ``dry_run``, it works on an in-memory copy of the store and sends
    nothing.

    ``progress`` is called with the number of subscribers done after each batch. With ``workers`` > 1
    (and not a dry run), deliveries run in that many processes (see ``workers``), each building its own
    services from the settings. The day's readers are shared out in ranges of ``range_size`` (a new
    day's run only: a run joined keeps the ranges it was begun with).
    """
    started = time.perf_counter()
    services.check()  # a missing or bad DKIM key stops the run here, not in each worker process
    channel = services.channel(sleep=sleep)
    # A dry run works on a copy (closed at the end), and claims nothing: it must not hold back a real run.
    with store.snapshot() if dry_run else contextlib.nullcontext(store) as store:
        ready = time.perf_counter()
        store.readers.sync_config(services.settings.config_subscribers(), now)
        synced = time.perf_counter()
        source_reports = tuple(ingest(services, store, now) if dry_run else ingest_once(services, store, now))
        fresh = store.health.last_new()
        source_reports = tuple(replace(r, last_new=fresh.get(r.name)) for r in source_reports)
        ingested = time.perf_counter()
        if workers > 1 and not dry_run:
            sharing = _join(services, store, now, range_size)
            tally = deliver_in_workers(services.settings, sharing, now, workers, progress, any_hour=any_hour)
        else:
            with channel:
                context = RangeContext(
                    Delivery(store, channel, now, dry_run),
                    services.pool(store, now),
                    services.default_when,
                    any_hour,
                )
                if dry_run:
                    tally = deliver_range(context, tally=Tally(), after_batch=progress)
                else:
                    tally = deliver_claims(
                        context, _join(services, store, now, range_size), tally=Tally(), after_batch=progress
                    )
    timings = {
        "start": ready - started,
        "sync": synced - ready,
        "ingest": ingested - synced,
        "deliver": time.perf_counter() - ingested,
    }
    processes = workers if workers > 1 and not dry_run else 1
    return tally.report(now, source_reports, channel.describe(), dry_run, timings, processes)


def _join(services: Services, store: Store, now: datetime, range_size: int) -> Sharing:
    """This process's part in the day's shared run (joined, or begun: see ``store.runs``)."""
    run = store.runs.join(services.day(now), now, store.readers.bounds(range_size))
    return Sharing(run, owner_name(), services.settings.delivery.claim_lease)


def run_configured(
    services: Services, store: Store, now: datetime, *, dry_run: bool = False, any_hour: bool = False
) -> RunReport:
    """``run_once`` as the CLI and the scheduler run it: the number of worker processes from the settings
    (``[delivery] workers``; automatic by default), and progress on stderr for long runs (see
    ``progress``)."""
    from digest.run.progress import run_progress

    # The config's readers count before their first run has stored them: a first run of a config that
    # declares 20,000 readers is as parallel as the runs after it.
    subscribers = max(store.readers.count(), len(services.settings.subscribers))
    delivery = services.settings.delivery
    workers = worker_count(delivery.workers, subscribers, delivery.method)
    with run_progress(subscribers) as progress:
        return run_once(
            services, store, now, dry_run=dry_run, progress=progress, workers=workers, any_hour=any_hour
        )


@dataclass(frozen=True, slots=True)
class Preview:
    planned: Planned
    message: EmailMessage | None


def preview(services: Services, store: Store, email: str, now: datetime) -> Preview:
    """What ``email`` would get if the job ran now, from the papers already stored.

    It fetches nothing (``digest ingest`` refreshes the papers) and works on an in-memory copy, so
    nothing changes: not even the config's subscribers are written back.
    """
    copy = store.snapshot()
    try:
        copy.readers.sync_config(services.settings.config_subscribers(), now)
        if copy.readers.get(email) is None:
            raise SubscriberError(
                f"no subscriber {email}", hint=f"add one with: digest subscribe {email} --keyword ..."
            )
        planned = plan(copy, now, services.default_when, services.pool(copy, now), only=email, any_hour=True)
        if not planned:
            raise SubscriberError(
                f"{email} is unsubscribed", hint=f"re-enable them with: digest resume {email}"
            )
        item = next((p for p in planned if isinstance(p, Send)), planned[0])
        message = services.renderer.render(item.digest, now) if isinstance(item, Send) else None
        return Preview(item, message)
    finally:
        copy.close()


@dataclass(frozen=True, slots=True)
class BounceOutcome:
    """One returned message read by ``process_bounces``: the file, its kind (None: not a bounce, or about
    nobody we know), the subscribers it was about, and those it suspended."""

    file: str
    kind: str | None
    subscribers: tuple[str, ...]
    suspended: tuple[str, ...]


BOUNCE_BYTES_MAX = 10_000_000  # a returned message larger than this is not read (moved to .unrecognised)


def _read_bounce(path: Path) -> tuple[BounceReport, str]:
    """(what the message at ``path`` says, its subject); raises for anything it cannot read."""
    if not path.is_file() or path.is_symlink():
        raise ValueError("not a message file")
    with path.open("rb") as fh:
        data = fh.read(BOUNCE_BYTES_MAX + 1)
    if len(data) > BOUNCE_BYTES_MAX:
        raise ValueError(f"larger than {BOUNCE_BYTES_MAX:,} bytes")
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return read_report(msg), " ".join(str(msg.get("subject", "")).split())[:200]


def process_bounces(services: Services, store: Store, folder: Path, now: datetime) -> list[BounceOutcome]:
    """Read every message in the Maildir ``folder`` (new/ and cur/), act on each bounce and complaint that
    proves it is about a message we sent (``bounces``: a signed VERP tag, or one of our Message-IDs), and
    move each message aside into ``folder/.processed`` (acted on) or ``folder/.unrecognised`` (nothing to
    do, or it could not be read), so that no message is ever read twice. Each message is read inside its
    own guard: one that cannot be read (too large, nested past parsing, not a file) is moved aside and the
    others go on."""
    keys = services.bounce_keys
    everyone = store.readers.all(include_inactive=True)
    by_key = {address_key(s.email): s.key for s in everyone}
    shown = {s.key: s.email for s in everyone}
    outcomes = []
    for path in sorted([*folder.glob("new/*"), *folder.glob("cur/*")]):
        try:
            report, reason = _read_bounce(path)
            who = subscriber_of(report, keys, by_key) if report.kind else set()
            if report.kind and report.message_ids:
                who |= set(store.outbox.owners(report.message_ids).values())
        except Exception as exc:  # one odd message must not stop the rest, nor stay to be read again
            log.warning("%s could not be read as a bounce (%s); moved to .unrecognised", path.name, exc)
            report, reason, who = BounceReport(None, frozenset()), "", set()
        suspended = [
            k for k in sorted(who) if report.kind and store.readers.record_bounce(k, report.kind, reason, now)
        ]
        aside = folder / (".processed" if who else ".unrecognised")
        for sub in ("new", "cur", "tmp"):
            (aside / sub).mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, aside / "cur" / path.name)
        except OSError as exc:
            log.error("could not move %s into %s: %s; it will be read again", path.name, aside.name, exc)
        outcomes.append(
            BounceOutcome(
                path.name,
                report.kind if who else None,
                tuple(shown.get(k, k) for k in sorted(who)),
                tuple(shown.get(k, k) for k in suspended),
            )
        )
    return outcomes
