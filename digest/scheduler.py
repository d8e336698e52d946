"""``digest schedule``: the daily job under APScheduler, for hosts without cron.

Chosen for a once-a-day job: a misfire grace of hours (APScheduler's default is one second, which silently
drops a run after a suspend or a slow start), coalescing (after downtime, one catch-up run, not one per
missed day), one instance at a time, and the run lock shared with ``digest run`` so a manual run and the
scheduled one never both send. Missed and failed runs are logged. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from types import FrameType

from apscheduler.events import (
    EVENT_JOB_ADDED,
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_MODIFIED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from digest import pipeline
from digest.errors import DigestError
from digest.runlock import database_lock
from digest.settings import Settings, load_settings
from digest.store import RUN_SYNC, Store

log = logging.getLogger("digest.scheduler")
MISFIRE_GRACE_SECONDS = 6 * 3600
JOB_ID = "daily-digest"


def daily_job(config: str | None) -> int:
    """One scheduled run. Reads the config afresh so edits apply without a restart; returns the exit code."""
    try:
        settings = load_settings(config)
        now = datetime.now(UTC)
        with (
            database_lock(settings.database, now),
            Store.open(settings.database, sync=RUN_SYNC) as store,
        ):
            report = pipeline.run_configured(settings, store, now)
    except DigestError as exc:
        log.error("scheduled run could not run: %s", exc)
        return 2
    sent = report.status_counts.get("sent", 0)
    problems = [s.error for s in report.sources if s.error] + [s.error for s in report.subscribers if s.error]
    log.info("scheduled run: %d message(s) sent, %d problem(s)", sent, len(problems))
    for problem in problems:
        log.warning("scheduled run: %s", problem)
    return pipeline.exit_status(report)


class DailyTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler 3 ships no types
    """A cron trigger that fires at most once per local date.

    On the autumn DST change a wall time like 02:30 happens twice (CEST, then CET) and a plain cron trigger
    fires twice; on the spring change 02:30 does not exist and it fires at 03:30. This keeps the spring
    behaviour and drops the second autumn firing, so every local date gets exactly one run.
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire = super().get_next_fire_time(previous_fire_time, now)
        if fire is not None and previous_fire_time is not None:
            fired_on = _local_date(previous_fire_time, self.timezone)
            if _local_date(fire, self.timezone) == fired_on:
                # The repeated autumn hour: look again from the next local midnight. (Asking from a second
                # later does not help: APScheduler 3 hands back the same fold=1 time forever.)
                midnight = datetime.combine(fired_on + timedelta(days=1), time(0), tzinfo=self.timezone)
                fire = super().get_next_fire_time(None, midnight)
        # APScheduler 3 hands back a wall time that does not exist (2025-03-30 02:30+01:00) as is; going
        # through UTC names the same instant as a real local time (03:30+02:00) for logs and comparisons.
        return None if fire is None else fire.astimezone(UTC).astimezone(self.timezone)


def _local_date(moment: datetime, zone: tzinfo) -> date:
    """The calendar date of an instant in ``zone``, via UTC so a nonexistent wall time cannot fool it."""
    return moment.astimezone(UTC).astimezone(zone).date()


def trigger_for(settings: Settings) -> DailyTrigger:
    """Every day at ``send_at`` local time in ``timezone``, once per local date."""
    return DailyTrigger(hour=settings.send_at.hour, minute=settings.send_at.minute, timezone=settings.zone)


def _log_event(event: JobExecutionEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.warning(
            "missed the run due at %s (more than %d s late)", event.scheduled_run_time, MISFIRE_GRACE_SECONDS
        )
    elif event.exception is not None:
        log.error("the run due at %s failed: %r", event.scheduled_run_time, event.exception)


class CoalescedRunLog:
    """Logs the runs that coalescing folds away, which APScheduler 3 drops without an event.

    After a suspend or a stall, APScheduler submits only the latest due run; the earlier ones vanish. This
    listener remembers when the job was next due and, when a later run is submitted, logs every run due in
    between as missed.
    """

    def __init__(self, scheduler: BaseScheduler, trigger: DailyTrigger) -> None:
        self.scheduler = scheduler
        self.trigger = trigger
        self.expected: datetime | None = None

    def __call__(self, event: JobEvent) -> None:
        if event.job_id != JOB_ID:
            return
        if event.code in (EVENT_JOB_ADDED, EVENT_JOB_MODIFIED):
            job = self.scheduler.get_job(JOB_ID)
            self.expected = job.next_run_time if job is not None else None
        elif isinstance(event, JobSubmissionEvent) and event.scheduled_run_times:
            fire = event.scheduled_run_times[-1]
            due = self.expected
            while due is not None and due < fire:
                log.warning("missed the run due at %s (the scheduler was not running); catching up once", due)
                due = self.trigger.get_next_fire_time(due, due)
            self.expected = self.trigger.get_next_fire_time(fire, fire)


def catch_up_time(trigger: DailyTrigger, now: datetime) -> datetime | None:
    """Today's run time if it passed less than the grace period ago, else None.

    ``digest schedule`` started at 09:00 with ``send_at = "07:00"`` (a reboot, a restart after an upgrade)
    runs today's digest at once instead of waiting for tomorrow; a second run the same day sends nothing
    new, so this is safe.
    """
    due = trigger.get_next_fire_time(None, now - timedelta(seconds=MISFIRE_GRACE_SECONDS))
    return due if due is not None and due <= now else None


def build_scheduler(
    settings: Settings, job: Callable[[], object], now: datetime | None = None
) -> BlockingScheduler:
    scheduler = BlockingScheduler(timezone=settings.zone)
    trigger = trigger_for(settings)
    catch_up = catch_up_time(trigger, now or datetime.now(settings.zone))
    scheduler.add_listener(_log_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_EXECUTED)
    scheduler.add_listener(
        CoalescedRunLog(scheduler, trigger), EVENT_JOB_ADDED | EVENT_JOB_MODIFIED | EVENT_JOB_SUBMITTED
    )
    scheduler.add_job(
        job,
        trigger,
        id=JOB_ID,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
        coalesce=True,
        max_instances=1,
        **({"next_run_time": catch_up} if catch_up else {}),
    )
    return scheduler


def run_forever(config: str | None) -> None:
    """Block, running the daily job at each due time, until SIGTERM or SIGINT."""
    settings = load_settings(config)
    scheduler = build_scheduler(settings, lambda: daily_job(config))

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    job = scheduler.get_job(JOB_ID)
    log.warning(
        "digest schedule: daily at %s %s; Ctrl-C or SIGTERM stops",
        settings.send_at.strftime("%H:%M"),
        settings.timezone,
    )
    del job
    scheduler.start()
