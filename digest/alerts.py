"""The operator's alert: one email when a source keeps failing or stops bringing papers on weekdays.

"Why didn't I get an email today?" is most often a source: a feed that moved, a capture that stopped
being refreshed. With ``[alerts] to`` set, each run that reads the sources looks at each one:

- **failing**: its last ``after`` reads all failed;
- **stale**: on a weekday (in ``timezone``), its last new paper is ``after`` weekdays old or more (arXiv
  and Hugging Face announce nothing at weekends, so Saturday and Sunday neither count nor alert);

and sends one email naming every source that entered such a state since the last alert, and every source
that left it (recovered). A source that stays failing is not alerted again. The states live in the store
(``source_health``), so this holds across runs, processes and hosts; the email is built here (pure).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from digest.email.mime import Outgoing, notice

FAILING, STALE = "failing", "stale"


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """What the store knows of a source: consecutive failed reads, the last error, when it last brought a
    new paper (ISO, None if never), and the state last alerted about (None: all well)."""

    name: str
    failures: int = 0
    last_error: str | None = None
    last_new: str | None = None
    alerted: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """A source that entered a state (``kind``) or left the one alerted (``kind`` None: recovered)."""

    source: SourceHealth
    kind: str | None


def weekdays_since(start: date, end: date) -> int:
    """Monday-to-Friday dates after ``start`` up to ``end``.

    >>> weekdays_since(date(2026, 11, 20), date(2026, 11, 23))  # Friday -> Monday: only Monday counts
    1
    >>> weekdays_since(date(2026, 11, 23), date(2026, 11, 23))
    0
    """
    days = (end - start).days
    return sum(1 for i in range(1, days + 1) if (start + timedelta(days=i)).weekday() < 5)


def state_of(source: SourceHealth, now: datetime, zone: ZoneInfo, after: int) -> str | None:
    """The source's state now: ``failing``, ``stale`` or None (all well, or a weekend for a quiet source).

    >>> utc = ZoneInfo("UTC")
    >>> state_of(SourceHealth("a", last_new="2026-11-19T06:00:00+00:00"), datetime(2026, 11, 24, 6, tzinfo=utc), utc, 3)
    'stale'
    """
    if source.failures >= after:
        return FAILING
    today = now.astimezone(zone).date()
    if today.weekday() >= 5:  # a weekend changes nothing: a stale source stays stale, nothing new alerts
        return STALE if source.alerted == STALE else None
    if source.last_new is None:
        return None
    seen = datetime.fromisoformat(source.last_new).astimezone(zone).date()
    return STALE if weekdays_since(seen, today) >= after else None


def changes(sources: list[SourceHealth], now: datetime, zone: ZoneInfo, after: int) -> list[Change]:
    """The sources whose state differs from the one last alerted about."""
    out = []
    for source in sources:
        state = state_of(source, now, zone, after)
        if state != source.alerted:
            out.append(Change(source, state))
    return out


def _line(change: Change, after: int) -> str:
    s = change.source
    last = f"last new paper {s.last_new[:16].replace('T', ' ')}" if s.last_new else "no paper yet"
    if change.kind == FAILING:
        return f"{s.name}: failed the last {s.failures} reads ({last}). Last error: {s.last_error or '?'}"
    if change.kind == STALE:
        return f"{s.name}: no new paper for {after} weekdays or more ({last}). Is the listing still updated?"
    return f"{s.name}: recovered ({last})."


def alert_message(sender: str, to: str, found: list[Change], after: int, now: datetime) -> Outgoing:
    """The one email about ``found``: a line per source, plain text and the same as HTML."""
    bad = [c for c in found if c.kind is not None]
    subject = (
        f"digest: {len(bad)} source{'s' if len(bad) != 1 else ''} need{'s' if len(bad) == 1 else ''} attention"
        if bad
        else f"digest: {len(found)} source{'s' if len(found) != 1 else ''} recovered"
    )
    lines = [_line(c, after) for c in found]
    hint = (
        "The run report (digest run, --json) and /metrics show each source's state; see docs/operations.md."
    )
    text = "\n\n".join([*lines, hint]) + "\n"
    html = (
        '<!DOCTYPE html><html><body style="font-family:sans-serif;line-height:1.5">'
        + "".join(f"<p>{escape(line)}</p>" for line in lines)
        + f"<p>{escape(hint)}</p></body></html>\n"
    )
    return notice(
        sender,
        to,
        subject,
        text,
        html,
        f"alert.{hashlib.sha256(f'{text}{now.isoformat()}'.encode()).hexdigest()[:24]}",
        now,
    )
