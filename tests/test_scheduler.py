"""#2 point 8: `digest schedule` wiring: send_at and timezone, misfire grace, coalescing, the shared lock."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import read_maildir, samples_source, write_config

from digest.runlock import run_lock
from digest.scheduler import (
    JOB_ID,
    MISFIRE_GRACE_SECONDS,
    build_scheduler,
    catch_up_time,
    daily_job,
    trigger_for,
)
from digest.settings import load_settings

ADA = {"email": "ada@example.org", "keywords": ["RAG"]}


def test_job_is_daily_at_send_at_in_the_timezone_with_grace_and_coalescing(tmp_path: Path) -> None:
    cfg = tmp_path / "digest.toml"
    cfg.write_text('timezone = "Europe/Berlin"\nsend_at = "07:30"\n', encoding="utf-8")
    settings = load_settings(cfg)
    scheduler = build_scheduler(settings, lambda: None)
    job = scheduler.get_job(JOB_ID)
    assert job.misfire_grace_time == MISFIRE_GRACE_SECONDS >= 3600
    assert job.coalesce is True
    assert job.max_instances == 1
    berlin = ZoneInfo("Europe/Berlin")
    after = datetime(2025, 11, 22, 8, 0, tzinfo=berlin)
    fire = trigger_for(settings).get_next_fire_time(None, after)
    assert fire == datetime(2025, 11, 23, 7, 30, tzinfo=berlin)
    assert fire.utcoffset().total_seconds() == 3600


def test_daily_job_runs_the_pipeline_and_shares_the_run_lock(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=[ADA])
    with run_lock(tmp_path / "var" / "digest.sqlite3.lock", datetime.now(UTC)):
        assert daily_job(str(cfg)) == 2
    assert not (tmp_path / "var" / "outbox").exists()
    assert daily_job(str(cfg)) == 0
    assert len(read_maildir(tmp_path / "var" / "outbox")) == 1


def test_daily_job_with_a_broken_config_returns_2(tmp_path: Path) -> None:
    cfg = tmp_path / "digest.toml"
    cfg.write_text("lookback_days = 0\n", encoding="utf-8")
    assert daily_job(str(cfg)) == 2


@pytest.mark.parametrize("start", [date(2025, 3, 27), date(2025, 10, 23)])
def test_dst_days_give_exactly_one_run_per_local_date(tmp_path: Path, start: date) -> None:
    cfg = tmp_path / "digest.toml"
    cfg.write_text('timezone = "Europe/Berlin"\nsend_at = "02:30"\n', encoding="utf-8")
    trigger = trigger_for(load_settings(cfg))
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(start.year, start.month, start.day, 12, 0, tzinfo=berlin)
    fires: list[datetime] = []
    previous = None
    for _ in range(6):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire)
        previous = now = fire
    local_dates = [f.astimezone(berlin).date() for f in fires]
    assert local_dates == [start + timedelta(days=i) for i in range(1, 7)]  # every date, once
    for f in fires:
        local = f.astimezone(berlin)
        # 02:30 where it exists; on 2025-03-30 it does not, and the run is at 03:30 CEST.
        assert (local.hour, local.minute) == ((3, 30) if local.date() == date(2025, 3, 30) else (2, 30))


def test_a_second_run_on_the_same_local_date_sends_nothing(tmp_path: Path) -> None:
    """Whatever fires twice (a manual run, a misbehaving clock), the pipeline sends one digest per date."""
    cfg = write_config(
        tmp_path, sources=[samples_source()], subscribers=[ADA], top={"timezone": "Europe/Berlin"}
    )
    assert daily_job(str(cfg)) == 0
    assert daily_job(str(cfg)) == 0
    assert len(read_maildir(tmp_path / "var" / "outbox")) == 1


def test_after_downtime_missed_days_are_logged_and_one_catch_up_run_happens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The scheduler was down two days and came back an hour after today's send time."""
    berlin = ZoneInfo("Europe/Berlin")
    due_today = (datetime.now(berlin) - timedelta(hours=1)).replace(second=0, microsecond=0)
    cfg = tmp_path / "digest.toml"
    cfg.write_text(f'timezone = "Europe/Berlin"\nsend_at = "{due_today:%H:%M}"\n', encoding="utf-8")
    ran = threading.Event()
    runs: list[datetime] = []

    def job() -> None:
        runs.append(datetime.now(UTC))
        ran.set()

    scheduler = build_scheduler(load_settings(cfg), job)
    scheduler.modify_job(JOB_ID, next_run_time=due_today - timedelta(days=2))
    caplog.set_level(logging.WARNING, logger="digest.scheduler")
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    try:
        assert ran.wait(10), "the catch-up run did not happen"
        time.sleep(0.2)  # room for a wrong second run to show up
    finally:
        scheduler.shutdown(wait=True)
        thread.join(5)
    assert len(runs) == 1  # coalesced: one catch-up run, not one per missed day
    missed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("missed the run due at")]
    assert len(missed) == 2, missed  # the two days beyond the grace period are logged


def test_started_after_todays_send_time_it_runs_today_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "digest.toml"
    cfg.write_text('timezone = "Europe/Berlin"\nsend_at = "07:00"\n', encoding="utf-8")
    settings = load_settings(cfg)
    berlin = ZoneInfo("Europe/Berlin")
    trigger = trigger_for(settings)
    today_7 = datetime(2025, 11, 24, 7, 0, tzinfo=berlin)
    assert catch_up_time(trigger, datetime(2025, 11, 24, 9, 0, tzinfo=berlin)) == today_7  # 2 h late: run
    assert catch_up_time(trigger, datetime(2025, 11, 24, 6, 0, tzinfo=berlin)) is None  # not due yet
    assert catch_up_time(trigger, datetime(2025, 11, 24, 14, 0, tzinfo=berlin)) is None  # beyond the grace
    scheduler = build_scheduler(settings, lambda: None, now=datetime(2025, 11, 24, 9, 0, tzinfo=berlin))
    thread = threading.Thread(target=scheduler.start, kwargs={"paused": True}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while scheduler.get_job(JOB_ID).next_run_time is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.get_job(JOB_ID).next_run_time == today_7
    finally:
        scheduler.shutdown(wait=False)
        thread.join(5)
