"""When a reader's digest is due: their time zone, hour and cadence, as pure functions of ``now``.

A reader's *period* is what one digest covers, named by its *key*, the local date it opens on:

- ``daily``: every local date; it opens at ``send_at`` and closes at the next local midnight;
- ``weekdays``: Monday to Friday, likewise (nothing at weekends: their papers wait for Monday);
- ``weekly`` (on Monday) or ``weekly:fri`` (on a day): the week from that day's ``send_at`` to the local
  midnight seven days after that day opened.

A reader is due when ``now`` lies in one of their periods and they have no digest for its key (the store
holds one per reader and key). Keys are local dates, so one digest per period holds across DST changes: on
the autumn change the repeated 02:30 is the same date, on the spring change a ``send_at`` inside the gap
opens the period at the first instant after it. A reader's very first digest does not wait for their hour
(see ``first_key``): someone who signs up at 15:00 gets today's papers within minutes, not tomorrow.

Readers leave ``timezone``, ``send_at`` or ``cadence`` empty to follow the operator's settings.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAILY, WEEKDAYS, WEEKLY = "daily", "weekdays", "weekly"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LONG_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# What the web form and the CLI offer; "weekly" alone means Monday.
CADENCES = (DAILY, WEEKDAYS, *(f"{WEEKLY}:{d}" for d in DAY_NAMES))
WEEK_WINDOW_DAYS = 8  # a weekly digest's candidates: a week of papers, and a day for a late run


def parse_cadence(text: str) -> str:
    """The cadence's one spelling; ValueError with the choices if it is none.

    >>> parse_cadence("Weekly"), parse_cadence("weekly:Friday"), parse_cadence(" weekdays ")
    ('weekly:mon', 'weekly:fri', 'weekdays')
    """
    value = text.strip().casefold()
    if value in (DAILY, WEEKDAYS):
        return value
    kind, _, day = value.partition(":")
    day = day.strip()
    if kind.strip() == WEEKLY:
        if not day:
            return f"{WEEKLY}:mon"
        for short, long in zip(DAY_NAMES, LONG_NAMES, strict=True):
            if day in (short, long):
                return f"{WEEKLY}:{short}"
    raise ValueError(
        f"unknown cadence {text!r}; use daily, weekdays, weekly or weekly:<day> (e.g. weekly:fri)"
    )


def parse_send_at(text: str) -> time:
    """A local wall time ``HH:MM``; ValueError if it is not one.

    >>> parse_send_at("7:30"), parse_send_at("23:05"), parse_send_at("06:00:00")
    (datetime.time(7, 30), datetime.time(23, 5), datetime.time(6, 0))
    """
    parts = text.strip().split(":")
    if parts[2:] in ([], ["00"]) and len(parts) >= 2:  # a browser's <input type="time"> may add ":00"
        hours, minutes = parts[0], parts[1]
        if hours.isdigit() and minutes.isdigit() and len(minutes) == 2:
            with contextlib.suppress(ValueError):
                return time(int(hours), int(minutes))
    raise ValueError(f"{text!r} is not a time of day as HH:MM (e.g. 07:00)")


def parse_zone(name: str) -> ZoneInfo:
    """An IANA time zone; ValueError naming the mistake otherwise.

    >>> parse_zone("Pacific/Kiritimati").key
    'Pacific/Kiritimati'
    """
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'") from exc


def cadence_label(cadence: str) -> str:
    """How a form or a report names a cadence.

    >>> cadence_label("weekly:fri"), cadence_label("weekdays")
    ('Weekly on Friday', 'On weekdays')
    """
    if cadence.startswith(WEEKLY):
        return f"Weekly on {LONG_NAMES[DAY_NAMES.index(cadence.partition(':')[2] or 'mon')].capitalize()}"
    return "On weekdays" if cadence == WEEKDAYS else "Daily"


def normalise_schedule(timezone: str, send_at: str, cadence: str) -> tuple[str, str, str]:
    """A reader's own schedule in its one spelling ('' stays '': the default); ValueError at a mistake.

    >>> normalise_schedule(" Asia/Tokyo", "7:30", "Weekly:Friday")
    ('Asia/Tokyo', '07:30', 'weekly:fri')
    >>> normalise_schedule("", "", "")
    ('', '', '')
    """
    zone = parse_zone(timezone).key if timezone.strip() else ""
    hour = f"{parse_send_at(send_at):%H:%M}" if send_at.strip() else ""
    every = parse_cadence(cadence) if cadence.strip() else ""
    return zone, hour, every


@dataclass(frozen=True, slots=True)
class When:
    """A schedule with every part known: the reader's own values over the operator's defaults."""

    zone: ZoneInfo
    send_at: time
    cadence: str

    @classmethod
    def of(cls, timezone: str, send_at: str, cadence: str, default: When) -> When:
        """The reader's values where set and valid, else the default's (a stored value that no longer
        parses, such as a zone a tzdata update removed, falls back rather than stopping the run).

        >>> d = When(ZoneInfo("UTC"), time(7), "daily")
        >>> When.of("Asia/Tokyo", "", "weekly", d)
        When(zone=zoneinfo.ZoneInfo(key='Asia/Tokyo'), send_at=datetime.time(7, 0), cadence='weekly:mon')
        """
        zone, hour, every = default.zone, default.send_at, default.cadence
        with contextlib.suppress(ValueError):
            zone = parse_zone(timezone) if timezone.strip() else zone
        with contextlib.suppress(ValueError):
            hour = parse_send_at(send_at) if send_at.strip() else hour
        with contextlib.suppress(ValueError):
            every = parse_cadence(cadence) if cadence.strip() else every
        return cls(zone, hour, every)

    @property
    def weekly(self) -> bool:
        return self.cadence.startswith(WEEKLY)

    def every(self) -> str:
        """``"daily at 07:00"``, ``"weekly on Friday at 18:30"``, ``"on weekdays at 06:00"``."""
        label = cadence_label(self.cadence)
        return f"{label[0].lower()}{label[1:]} at {self.send_at:%H:%M}"

    def describe(self) -> str:
        """``"daily at 07:00 (Europe/Berlin)"``, ``"weekly on Friday at 18:30 (UTC)"``."""
        return f"{self.every()} ({self.zone.key})"


@dataclass(frozen=True, slots=True)
class Period:
    """One digest's span: ``key`` (the local date it opens on) and the instants it opens and closes (UTC)."""

    key: date
    opens: datetime
    closes: datetime


def at(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """``day`` at the wall time ``wall`` in ``zone``, as a UTC instant; a wall time the spring DST change
    skips is the instant after the gap.

    >>> at(date(2026, 3, 29), time(2, 30), ZoneInfo("Europe/Berlin")).isoformat()
    '2026-03-29T01:30:00+00:00'
    """
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def key_of(when: When, local_day: date) -> date | None:
    """The key of the period the local date ``local_day`` belongs to (None: a weekend for ``weekdays``).

    >>> w = When(ZoneInfo("UTC"), time(7), "weekly:fri")
    >>> key_of(w, date(2026, 11, 23))  # a Monday: the week that opened on Friday the 20th
    datetime.date(2026, 11, 20)
    """
    if when.cadence == DAILY:
        return local_day
    if when.cadence == WEEKDAYS:
        return local_day if local_day.weekday() < 5 else None
    weekday = DAY_NAMES.index(when.cadence.partition(":")[2] or "mon")
    return local_day - timedelta(days=(local_day.weekday() - weekday) % 7)


def _span(when: When, key: date) -> Period:
    days = 7 if when.weekly else 1
    return Period(key, at(key, when.send_at, when.zone), at(key + timedelta(days=days), time(0), when.zone))


def period_at(when: When, now: datetime) -> Period | None:
    """The period ``now`` lies in, or None: before the day's hour, or on a day the cadence skips.

    >>> w = When(ZoneInfo("Pacific/Kiritimati"), time(7), "daily")  # UTC+14
    >>> period_at(w, datetime(2026, 11, 23, 6, tzinfo=UTC)).key  # 20:00 on the 23rd there
    datetime.date(2026, 11, 23)
    """
    key = key_of(when, now.astimezone(when.zone).date())
    if key is None:
        return None
    period = _span(when, key)
    return period if period.opens <= now < period.closes else None


def first_key(when: When, now: datetime) -> date:
    """The key of a reader's first digest, sent at the first run after they subscribe whatever the hour: the
    period ``now`` is in, else the one opening next today (so their hour that day sends nothing more), else
    today's date (a weekend for ``weekdays``).

    >>> w = When(ZoneInfo("UTC"), time(7), "daily")
    >>> first_key(w, datetime(2026, 11, 23, 5, tzinfo=UTC))
    datetime.date(2026, 11, 23)
    """
    local_day = now.astimezone(when.zone).date()
    key = key_of(when, local_day)
    return key if key is not None else local_day


def next_opening(when: When, now: datetime) -> datetime:
    """When the reader's next period opens after ``now`` (UTC).

    >>> w = When(ZoneInfo("UTC"), time(7), "weekdays")
    >>> next_opening(w, datetime(2026, 11, 28, 9, tzinfo=UTC)).isoformat()  # a Saturday
    '2026-11-30T07:00:00+00:00'
    """
    local_day = now.astimezone(when.zone).date()
    for ahead in range(9):
        day = local_day + timedelta(days=ahead)
        if key_of(when, day) == day:
            opens = at(day, when.send_at, when.zone)
            if opens > now:
                return opens
    raise AssertionError(f"no opening within 9 days of {now} for {when}")  # every cadence opens weekly
