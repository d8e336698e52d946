"""`digest schedule` wakes every few minutes, runs only when someone is due, shares the lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import read_maildir, write_config
from test_cadence import listing

from digest.run.runlock import run_lock
from digest.scheduler import JOB_ID, Waker, build_scheduler
from digest.settings import load_settings

ADA = {"email": "ada@example.org"}  # the trending digest: every new paper is news to her
MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Berlin


def _config(tmp_path: Path) -> Path:
    (tmp_path / "feed").mkdir()
    listing(tmp_path / "feed", MONDAY - timedelta(days=1))
    return write_config(
        tmp_path,
        sources=[{"kind": "snapshot", "name": "feed", "path": "feed/*.txt"}],
        subscribers=[ADA],
        top={"timezone": "Europe/Berlin", "send_at": "07:00"},
        tables={"schedule": {"every": 5, "recheck": 60}},
    )


def _add_listing(tmp_path: Path, index: int) -> None:
    listing(tmp_path / "feed", MONDAY + timedelta(days=index))


def _outbox(tmp_path: Path) -> int:
    return len(read_maildir(tmp_path / "var" / "outbox"))


def test_the_scheduler_wakes_every_few_minutes_at_once_coalesced_one_at_a_time(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path))
    scheduler = build_scheduler(settings, Waker(None), now=MONDAY)
    job = scheduler.get_job(JOB_ID)
    assert job.trigger.interval == timedelta(minutes=5)
    assert job.misfire_grace_time == 300
    assert job.coalesce is True and job.max_instances == 1
    assert job.next_run_time == MONDAY  # the first wake at once: a restart catches up


def test_a_wake_runs_only_when_a_reader_is_due(tmp_path: Path) -> None:
    waker = Waker(str(_config(tmp_path)))
    assert waker(MONDAY) == 0 and _outbox(tmp_path) == 1  # a new reader: the first digest at once
    assert waker.last_run == MONDAY
    assert waker(MONDAY + timedelta(minutes=5)) == 0 and waker.last_run == MONDAY  # nobody due: no run
    _add_listing(tmp_path, 1)
    tuesday_early = datetime(2026, 11, 24, 5, 55, tzinfo=UTC)  # 06:55 in Berlin: not her hour yet
    assert waker(tuesday_early) == 0 and waker.last_run == MONDAY and _outbox(tmp_path) == 1
    tuesday = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 in Berlin
    assert waker(tuesday) == 0 and waker.last_run == tuesday and _outbox(tmp_path) == 2
    assert waker(tuesday + timedelta(minutes=5)) == 0 and waker.last_run == tuesday


def test_readers_waiting_for_news_are_checked_again_after_recheck_minutes(tmp_path: Path) -> None:
    waker = Waker(str(_config(tmp_path)))
    waker(MONDAY)
    tuesday = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    waker(tuesday)  # her hour, but nothing new: no email, her period stays open
    assert waker.last_run == tuesday and _outbox(tmp_path) == 1
    _add_listing(tmp_path, 1)  # papers come late
    waker(tuesday + timedelta(minutes=30))
    assert waker.last_run == tuesday  # not yet: the sources are not read every five minutes
    waker(tuesday + timedelta(minutes=60))
    assert waker.last_run == tuesday + timedelta(minutes=60) and _outbox(tmp_path) == 2


def test_a_wake_shares_the_run_lock_and_a_broken_config_returns_2(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with run_lock(tmp_path / "var" / "digest.sqlite3.lock", datetime.now(UTC)):
        assert Waker(str(cfg))(MONDAY) == 2
    assert not (tmp_path / "var" / "outbox").exists()
    broken = tmp_path / "broken.toml"
    broken.write_text("lookback_days = 0\n", encoding="utf-8")
    assert Waker(str(broken))(MONDAY) == 2


def test_the_scheduler_thread_runs_the_wake_and_stops(tmp_path: Path) -> None:
    ran = threading.Event()

    class Recording(Waker):
        def __call__(self, now: datetime | None = None) -> int:
            ran.set()
            return 0

    scheduler = build_scheduler(load_settings(_config(tmp_path)), Recording(None))
    thread = threading.Thread(target=scheduler.start, daemon=True)
    thread.start()
    try:
        assert ran.wait(10), "the first wake did not happen"
    finally:
        scheduler.shutdown(wait=True)
        thread.join(5)
    assert not thread.is_alive()
