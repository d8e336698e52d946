"""Each reader's own time zone, hour and cadence; one digest per period; quiet days.

The runs below go through the real pipeline on a real SQLite file, every half hour for days on end, with a
listing that brings new papers every few hours, and count what each reader was sent and when.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import NOW, write_config
from running import cli

from digest.cadence import When, first_key, next_opening, normalise_schedule, period_at
from digest.email.transport import MemoryTransport
from digest.models import Profile, Status, Subscriber
from digest.run import pipeline
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.wiring import Services

UTC_MINUS_12 = "Etc/GMT+12"  # POSIX signs: this is UTC-12 (Baker Island)
UTC_PLUS_14 = "Pacific/Kiritimati"
BERLIN = ZoneInfo("Europe/Berlin")


def listing(folder: Path, stamp: datetime, count: int = 2) -> None:
    """A listing capture with ``count`` papers nobody has seen, named after ``stamp``."""
    tag = stamp.strftime("%Y%m%dT%H%M")
    text = "\n".join(
        f"Paper {tag} number {i} on retrieval\n{'Retrieval matters. ' * 40}\n·\nNov 22 {i + 1}"
        for i in range(count)
    )
    (folder / f"{tag}.txt").write_text(text, encoding="utf-8")


def feed_config(tmp_path: Path, readers: list[dict[str, Any]], **top: Any) -> tuple[Path, Settings]:
    """A config reading the listings in ``tmp_path/feed`` (made empty here) for ``readers``."""
    feed = tmp_path / "feed"
    feed.mkdir()
    cfg = write_config(
        tmp_path,
        sources=[{"kind": "snapshot", "name": "feed", "path": "feed/*.txt"}],
        subscribers=readers,
        top={"send_at": "07:00", **top},
    )
    return feed, load_settings(cfg)


def simulate(
    tmp_path: Path,
    readers: list[dict[str, Any]],
    start: datetime,
    days: float,
    *,
    top: dict[str, object] | None = None,
    step: timedelta = timedelta(minutes=30),
    papers_every: timedelta = timedelta(hours=3),
) -> list[tuple[str, date, datetime]]:
    """Run the job every ``step`` from ``start`` for ``days``, a new listing every ``papers_every``;
    returns (reader, period key, when sent) for every message sent."""
    feed, settings = feed_config(tmp_path, readers, **{"lookback_days": 3, **(top or {})})
    sent: list[tuple[str, date, datetime]] = []
    now, last_listing = start, None
    services = Services(settings, transport=MemoryTransport())  # one process's, for every run
    with Store.open(settings.database) as store:
        while now < start + timedelta(days=days):
            if last_listing is None or now - last_listing >= papers_every:
                listing(feed, now)
                last_listing = now
            report = pipeline.run_once(services, store, now)
            assert report.ok, report
            for s in report.subscribers:
                if s.status == Status.SENT:
                    assert s.message_id is not None
                    day = s.message_id.split(".")[1]  # <digest.YYYYMMDD.hash@domain>
                    sent.append((s.email, datetime.strptime(day, "%Y%m%d").date(), now))
            now += step
    return sent


def test_readers_at_utc_minus_12_and_plus_14_get_one_digest_per_local_date_at_their_hour(
    tmp_path: Path,
) -> None:
    readers = [
        {"email": "baker@example.org", "timezone": UTC_MINUS_12},
        {"email": "kiri@example.org", "timezone": UTC_PLUS_14},
        {"email": "utc@example.org"},  # the operator's default: 07:00 UTC
    ]
    start = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    sent = simulate(tmp_path, readers, start, days=4)
    for reader, zone in (("baker", UTC_MINUS_12), ("kiri", UTC_PLUS_14), ("utc", "UTC")):
        mine = [(key, at) for who, key, at in sent if who.startswith(reader)]
        keys = [key for key, _ in mine]
        assert len(keys) == len(set(keys)), f"{reader} got two digests for one period: {keys}"
        first, *rest = mine
        assert first[1] == start  # the first digest does not wait for the reader's hour
        assert len(rest) >= 3
        for key, at in rest:
            local = at.astimezone(ZoneInfo(zone))
            assert local.date() == key  # named by the reader's own date, not the server's
            assert time(7, 0) <= local.time() < time(7, 30)  # at the first run after their hour
    # Within two hours of one another, the two ends of the world get the digests of dates a day apart.
    keyed = {(w.split("@")[0], a): k for w, k, a in sent}
    assert keyed["kiri", datetime(2026, 11, 24, 17, tzinfo=UTC)] == date(2026, 11, 25)  # 07:00 at UTC+14
    assert keyed["baker", datetime(2026, 11, 24, 19, tzinfo=UTC)] == date(2026, 11, 24)  # 07:00 at UTC-12


@pytest.mark.parametrize("start", [date(2025, 3, 28), date(2025, 10, 24)])
def test_a_dst_change_gives_one_digest_per_local_date(tmp_path: Path, start: date) -> None:
    """02:30 does not exist on 2025-03-30 in Berlin (the digest goes at 03:30 CEST, the first instant after
    the gap) and happens twice on 2025-10-26 (one digest, at the first)."""
    readers = [{"email": "ada@example.org", "timezone": "Europe/Berlin", "send_at": "02:30"}]
    begin = datetime.combine(start, time(12), tzinfo=BERLIN).astimezone(UTC)
    sent = simulate(tmp_path, readers, begin, days=4, papers_every=timedelta(hours=2))
    keys = [key for _, key, _ in sent]
    assert len(keys) == len(set(keys))
    assert keys[1:] == [start + timedelta(days=i) for i in range(1, 5)]
    for key, at in ((k, a) for _, k, a in sent[1:]):
        local = at.astimezone(BERLIN)
        expected = time(3, 30) if key == date(2025, 3, 30) else time(2, 30)
        assert local.date() == key and local.time() == expected, (key, local)
    autumn = [a for _, k, a in sent if k == date(2025, 10, 26)]
    assert len(autumn) <= 1 and all(a.astimezone(BERLIN).utcoffset() == timedelta(hours=2) for a in autumn)


def test_weekly_and_weekday_readers(tmp_path: Path) -> None:
    readers = [
        {"email": "fri@example.org", "cadence": "weekly:fri"},
        {"email": "work@example.org", "cadence": "weekdays"},
        {"email": "daily@example.org"},
    ]
    start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Monday, after everyone's hour
    sent = simulate(
        tmp_path, readers, start, days=15, step=timedelta(hours=1), papers_every=timedelta(hours=12)
    )
    by = Counter(who for who, _, _ in sent)
    fri = [(k, a) for w, k, a in sent if w.startswith("fri")]
    assert [k for k, _ in fri] == [
        date(2026, 11, 20),
        date(2026, 11, 27),
        date(2026, 12, 4),
    ]  # first, 2 Fridays
    assert all(a.weekday() == 4 and a.hour == 7 for _, a in fri[1:])
    work = [k for w, k, _ in sent if w.startswith("work")]
    assert all(k.weekday() < 5 for k in work) and len(work) == 1 + 11  # first, then 11 weekdays' hours
    assert by["daily@example.org"] == 1 + 15


def test_a_weekly_digest_gathers_the_week_and_never_repeats_a_paper(tmp_path: Path) -> None:
    readers = [{"email": "fri@example.org", "cadence": "weekly:fri", "max_papers": 100}]
    feed, settings = feed_config(tmp_path, readers, lookback_days=2)
    friday = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    papers: list[list[str]] = []
    with Store.open(settings.database) as store:
        for day in range(8):  # Friday to Friday, two new papers a day
            now = friday + timedelta(days=day)
            listing(feed, now)
            report = pipeline.run_once(Services(settings, transport=MemoryTransport()), store, now)
            (fri,) = report.subscribers
            if fri.status == Status.SENT:
                papers.append([m.paper.title for m in fri.matches])
            else:
                assert fri.note == "already got the digest for 2026-11-20", (day, fri)  # the week's
    first, week = papers
    assert len(first) == 2 and len(week) == 14  # the week's 7 listings, beyond lookback_days = 2
    assert not set(first) & set(week)


def test_a_waiting_reader_is_told_when_their_next_digest_is_due(tmp_path: Path) -> None:
    readers = [{"email": "ada@example.org", "timezone": "Asia/Tokyo", "send_at": "08:15"}]
    sent = simulate(tmp_path, readers, datetime(2026, 11, 23, 0, 0, tzinfo=UTC), days=0.5)
    assert len(sent) == 1  # the first digest; Tokyo's next 08:15 is at 23:15 UTC
    settings = load_settings(tmp_path / "digest.toml")
    with Store.open(settings.database) as store:
        report = pipeline.run_once(
            Services(settings, transport=MemoryTransport()), store, datetime(2026, 11, 23, 22, tzinfo=UTC)
        )
    (ada,) = report.subscribers
    assert ada.status == Status.WAITING
    assert ada.note == "waiting: next digest Tue 2026-11-24 08:15 (daily at 08:15 (Asia/Tokyo))"
    assert report.ok
    with Store.open(settings.database) as store:  # a new reader whose first digest came before their hour
        store.readers.add(Subscriber("bo@example.org", profile=Profile(send_at="23:00")), NOW)
        early = datetime(2026, 11, 24, 6, tzinfo=UTC)
        first = pipeline.run_once(Services(settings, transport=MemoryTransport()), store, early)
        assert [s.status for s in first.subscribers if s.email == "bo@example.org"] == [Status.SENT]
        later = pipeline.run_once(
            Services(settings, transport=MemoryTransport()), store, early + timedelta(hours=1)
        )
    (bo,) = [s for s in later.subscribers if s.email == "bo@example.org"]
    assert bo.note == "waiting: next digest Wed 2026-11-25 23:00 (daily at 23:00 (UTC))"  # not today's


def test_quiet_days_send_no_empty_email_and_a_late_paper_still_goes_out_that_day(tmp_path: Path) -> None:
    feed, settings = feed_config(tmp_path, [{"email": "ada@example.org"}])
    saturday = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
    listing(feed, saturday - timedelta(days=1))
    transport = MemoryTransport()
    with Store.open(settings.database) as store:
        pipeline.run_once(
            Services(settings, transport=transport), store, saturday - timedelta(days=1)
        )  # Friday's digest
        for hours in (2, 5, 9):  # Saturday 08:00, 11:00: nothing new
            report = pipeline.run_once(
                Services(settings, transport=transport), store, saturday + timedelta(hours=hours)
            )
            assert [s.status for s in report.subscribers] == [Status.NOTHING_NEW] or hours == 9
            if hours == 5:
                listing(feed, saturday + timedelta(hours=5))  # a paper comes late in the day
        assert len(transport.sent) == 2  # the first digest, and the late paper at 15:00; no empty one


def test_schedules_parse_and_periods_at_the_edges() -> None:
    assert normalise_schedule(" Asia/Tokyo", "7:05", "WEEKLY") == ("Asia/Tokyo", "07:05", "weekly:mon")
    for bad in (("Mars/Base", "", ""), ("", "25:00", ""), ("", "7", ""), ("", "", "monthly")):
        with pytest.raises(ValueError):
            normalise_schedule(*bad)
    when = When(ZoneInfo(UTC_MINUS_12), time(7), "daily")
    # 18:59 UTC is 06:59 at UTC-12: not yet; 19:00 is their 07:00.
    assert period_at(when, datetime(2026, 11, 23, 18, 59, tzinfo=UTC)) is None
    opened = period_at(when, datetime(2026, 11, 23, 19, 0, tzinfo=UTC))
    assert opened is not None and opened.key == date(2026, 11, 23)
    assert opened.closes == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # their midnight
    assert next_opening(when, datetime(2026, 11, 23, 19, 0, tzinfo=UTC)) == datetime(
        2026, 11, 24, 19, tzinfo=UTC
    )
    weekdays = When(ZoneInfo("UTC"), time(7), "weekdays")
    assert period_at(weekdays, datetime(2026, 11, 28, 9, tzinfo=UTC)) is None  # Saturday
    assert first_key(weekdays, datetime(2026, 11, 28, 9, tzinfo=UTC)) == date(2026, 11, 28)


def test_run_now_treats_every_hour_as_come_and_still_one_digest_per_period(tmp_path: Path) -> None:
    feed, settings = feed_config(tmp_path, [{"email": "ada@example.org"}])
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    listing(feed, monday)
    with Store.open(settings.database) as store:
        pipeline.run_once(Services(settings, transport=MemoryTransport()), store, monday)
        listing(feed, monday + timedelta(hours=12))
        early = monday + timedelta(hours=20)  # Tuesday 05:00, before her hour
        report = pipeline.run_once(Services(settings, transport=MemoryTransport()), store, early)
        assert [s.status for s in report.subscribers] == [Status.WAITING]
        report = pipeline.run_once(
            Services(settings, transport=MemoryTransport()), store, early, any_hour=True
        )
        assert [s.status for s in report.subscribers] == [Status.SENT]
        report = pipeline.run_once(
            Services(settings, transport=MemoryTransport()), store, early + timedelta(hours=3)
        )
        assert [s.note for s in report.subscribers] == ["already got the digest for 2026-11-24"]


def test_a_sign_up_keeps_the_browsers_zone_and_drops_a_bogus_one() -> None:
    from digest.subscriptions import Request

    form = {"email": "zoe@example.org", "keywords": "RAG"}
    assert Request.from_form({**form, "timezone": "America/New_York"}).profile.timezone == "America/New_York"
    assert Request.from_form({**form, "timezone": "Bogus/Zone"}).profile.timezone == ""


def test_the_cli_sets_a_readers_schedule_and_refuses_a_bad_one(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path))
    digest = ["subscribe", "bob@example.org", "-k", "RAG", "--config", cfg]
    ok = cli(*digest, "--timezone", "Asia/Tokyo", "--send-at", "7:30", "--cadence", "weekly:friday")
    assert ok.returncode == 0 and "RAG, weekly on Friday at 07:30 (Asia/Tokyo)" in ok.stdout
    bad = cli(*digest, "--send-at", "25:00")
    assert bad.returncode == 2 and "'25:00' is not a time of day as HH:MM" in bad.stderr
    table = cli("subscribers", "--config", cfg).stdout
    assert "default schedule: daily at 00:00 (UTC)" in table and "Asia/Tokyo" in table
