"""What a ``digest schedule`` wake costs when it finds nobody due, at 100,000 readers.

    cd bench && ../.venv/bin/python schedule_wake.py            # 10,000 and 100,000 readers
    cd bench && ../.venv/bin/python schedule_wake.py --quick    # 10,000 only

The scheduler wakes every 5 minutes and asks ``planning.due_now`` who is due before it reads any source.
Readers here have three schedules (the default daily 07:00 UTC; daily 08:00 in Asia/Tokyo; weekly on
Monday 07:00 in America/New_York), in a real SQLite file. Three moments are timed:

- **served**: everyone is inside their period and already got its digest (the typical wake);
- **between**: a third of the readers (Tokyo's) are before their hour and had a digest before (their
  period is closed: the check asks whether each ever had a digest, one index probe each), the rest served;
- **due**: everyone's period is open and nobody has its digest yet (the wake then runs the job).

Each is the median of 5 calls; it prints the table docs/benchmarks.md shows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

from synthetic import subscribers

from digest.run.planning import due_now
from digest.settings import Settings
from digest.store import NewMessage, Store

SCHEDULES = [("", "", ""), ("Asia/Tokyo", "08:00", "daily"), ("America/New_York", "07:00", "weekly:mon")]
# 13:00 UTC on Monday the 23rd: 22:00 in Tokyo, 08:00 in New York; every reader's period of the 23rd is open.
DUE = SERVED = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
# 22:30 UTC: Tokyo readers are at 07:30 on the 24th, before their hour (a closed period); the others are
# still in their period of the 23rd, which they got.
BETWEEN = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)


def timed(settings: Settings, store: Store, now: datetime) -> tuple[float, int]:
    runs = []
    fresh = 0
    for _ in range(5):
        started = time.perf_counter()
        fresh = due_now(store, now, settings.default_when(), since=None).fresh
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), fresh


def build(folder: Path, n: int) -> Store:
    store = Store.open(folder / "state.sqlite3")
    readers = []
    for i, s in enumerate(subscribers(n)):
        zone, hour, cadence = SCHEDULES[i % len(SCHEDULES)]
        readers.append(replace(s, profile=replace(s.profile, timezone=zone, send_at=hour, cadence=cadence)))
    store.readers.add_many(readers, SERVED)
    return store


def mark_served(store: Store, n: int, day: date) -> None:
    """A sent digest for ``day`` for every reader (their period key is the 23rd in every zone here)."""
    emails = [f"user{i:06d}@example.org" for i in range(n)]
    for start in range(0, n, 5000):
        chunk = emails[start : start + 5000]
        ids = store.outbox.begin([NewMessage(e, day, f"<bench.{e}@example.org>", ()) for e in chunk], SERVED)
        store.outbox.mark_sent_many([i for i in ids if i is not None], SERVED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    sizes = [10_000] if parser.parse_args().quick else [10_000, 100_000]
    settings = Settings(timezone="UTC")
    print(
        "| readers | due: nobody served yet | served: all got theirs | between: a third before their hour |"
    )
    print("| ---: | ---: | ---: | ---: |")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp, build(Path(tmp), n) as store:
            due, fresh_due = timed(settings, store, DUE)
            mark_served(store, n, date(2026, 11, 23))
            served, fresh_served = timed(settings, store, SERVED)
            between, fresh_between = timed(settings, store, BETWEEN)
            assert fresh_served == 0 and fresh_between == 0, (fresh_served, fresh_between)
            assert fresh_due == n, fresh_due
            print(f"| {n:,} | {due:.2f} s | {served:.2f} s | {between:.2f} s |")


if __name__ == "__main__":
    main()
