"""``digest schedule``: the job under APScheduler, for hosts without cron.

Readers have their own hours and time zones (see ``cadence``), so the scheduler does not fire once a
day: it wakes every ``[schedule] every`` minutes and asks who is due (``planning.due_now``, no selection).
It runs the job (read the sources, plan, send) only when that is worth it:

- a reader's period opened since the last run, a reader is new, or a message waits to be sent again;
- or readers are inside a period with nothing new yet, and the last run is ``recheck`` minutes old (papers
  that come late in the day still reach them, without reading the sources every few minutes).

A wake that finds nothing to do costs a pass over the subscribers' schedules and one indexed query per
1,000 of them. Wakes coalesce (after a suspend, one wake, not one per missed interval), one at a time, and
the run lock is shared with ``digest run`` so a manual run and a scheduled one never both send. The config
is read again at each wake, so edits apply without a restart. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from digest.errors import DigestError
from digest.models import Status
from digest.run import pipeline
from digest.run.planning import due_now
from digest.run.runlock import database_lock
from digest.settings import Settings, load_settings
from digest.store import RUN_SYNC, Store
from digest.wiring import Services

log = logging.getLogger("digest.scheduler")
JOB_ID = "digest-wake"


@dataclass
class Waker:
    """The job of each wake, remembering when it last ran the pipeline (None: not since it started, so
    the first wake runs for anyone in an open period: a restart catches up at once)."""

    config: str | None
    last_run: datetime | None = None

    def should_run(self, settings: Settings, store: Store, now: datetime) -> bool:
        due = due_now(store, now, settings.default_when(), self.last_run)
        if due.fresh:
            log.info("%d reader(s) due now", due.fresh)
            return True
        recheck = timedelta(minutes=settings.schedule.recheck)
        if due.open and (self.last_run is None or now - self.last_run >= recheck):
            log.info("checking again for %d reader(s) still waiting for new papers", due.open)
            return True
        log.debug("nobody is due (%d waiting for new papers)", due.open)
        return False

    def __call__(self, now: datetime | None = None) -> int:
        """One wake; returns the exit code of the run (0 when nothing was due)."""
        now = now or datetime.now(UTC)
        try:
            services = Services(load_settings(self.config))  # the config is read again at each wake
            settings = services.settings
            with (
                database_lock(settings.database, now),
                services.open_store(sync=RUN_SYNC) as store,
            ):
                store.readers.sync_config(settings.config_subscribers(), now)
                if not self.should_run(settings, store, now):
                    return 0
                report = pipeline.run_configured(services, store, now)
        except DigestError as exc:
            log.error("scheduled run could not run: %s", exc)
            return 2
        self.last_run = now
        sent = report.status_counts.get(Status.SENT, 0)
        problems = [s.error for s in report.sources if s.error] + [
            s.error for s in report.subscribers if s.error
        ]
        log.info("scheduled run: %d message(s) sent, %d problem(s)", sent, len(problems))
        for problem in problems:
            log.warning("scheduled run: %s", problem)
        return pipeline.exit_status(report)


def _log_error(event: JobExecutionEvent) -> None:
    log.error("the wake at %s failed: %r", event.scheduled_run_time, event.exception)


def build_scheduler(settings: Settings, job: Waker, now: datetime | None = None) -> BackgroundScheduler:
    """A scheduler that calls ``job`` every ``[schedule] every`` minutes, the first time at once."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_listener(_log_error, EVENT_JOB_ERROR)
    every = settings.schedule.every
    scheduler.add_job(
        job,
        IntervalTrigger(minutes=every, timezone=UTC),
        id=JOB_ID,
        misfire_grace_time=every * 60,
        coalesce=True,
        max_instances=1,
        next_run_time=now or datetime.now(UTC),
    )
    return scheduler


def run_forever(config: str | None) -> None:
    """Block, waking every few minutes to send to the readers who are due, until SIGTERM (then return) or
    SIGINT (then raise ``KeyboardInterrupt``, which the CLI turns into exit 130)."""
    settings = load_settings(config)
    scheduler = build_scheduler(settings, Waker(config))
    stopping = threading.Event()
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        # Only a flag: a handler runs between any two steps of the main thread, inside the scheduler's
        # locks too, so the main thread winds the scheduler down, whenever the signal came.
        log.info("received %s, stopping", signal.Signals(signum).name)
        received.append(signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.warning(
        "digest schedule: waking every %d min; readers' default is %s; Ctrl-C or SIGTERM stops",
        settings.schedule.every,
        settings.default_when().describe(),
    )
    scheduler.start()
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=False)  # a wake under way finishes before the process ends
    if received[:1] == [signal.SIGINT]:
        raise KeyboardInterrupt  # Ctrl-C exits 130, as every command does; SIGTERM is a clean stop (0)
