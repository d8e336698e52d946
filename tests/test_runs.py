"""Runs that share a day's work through claims in the database (``digest.store.runs``), on both
backends; and, on PostgreSQL, what makes several hosts safe: membership, sessions that die, ingest once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime

import pytest

from digest.models import Profile, Subscriber
from digest.store import RunProgress, Store

DAY = date(2026, 11, 28)


@pytest.fixture
def store(store_location: str) -> Iterator[Store]:
    s = Store.open(store_location)
    yield s
    s.close()


def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Wait for ``condition`` (polled), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.02)


def _waiting_for_a_lock(store: Store) -> int:
    """How many PostgreSQL sessions wait for an advisory lock."""
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    return int(store.conn.execute(query).fetchone()[0])


def _subscribe(store: Store, now: datetime, n: int = 25) -> list[str]:
    store.readers.add_many(
        [Subscriber(f"u{i:03d}@example.org", "", Profile(("RAG",))) for i in range(n)], now
    )
    return store.readers.bounds(10)


def test_each_range_is_claimed_by_one_process_until_the_run_is_done(store: Store, now: datetime) -> None:
    run = store.runs.join(DAY, now, _subscribe(store, now))
    a, b, c = (store.runs.claim(run, owner, 60) for owner in ("a", "b", "c"))
    assert a and b and c
    assert [(x.start, x.stop) for x in (a, b, c)] == [
        ("", "u010@example.org"),  # the first range starts at "": an address added meanwhile is not missed
        ("u010@example.org", "u020@example.org"),
        ("u020@example.org", None),
    ]
    assert not any(x.taken_over for x in (a, b, c))
    assert store.runs.claim(run, "d", 60) is None
    assert store.runs.progress(run) == RunProgress(done=0, held=3, free=0)
    assert store.runs.renew(a, 60)
    assert all(store.runs.finish_range(x, 10) for x in (a, b, c))
    assert store.runs.progress(run) == RunProgress(done=3, held=0, free=0)
    assert [(r.owner, r.claims, r.subscribers) for r in store.runs.ranges(run)] == [
        ("a", 1, 10),
        ("b", 1, 10),
        ("c", 1, 10),
    ]
    store.runs.finish(run)
    assert store.runs.join(DAY, now, store.readers.bounds(10)) == run + 1  # a finished run is not joined


def test_a_claim_whose_lease_ran_out_is_taken_over_and_its_holder_stops(store: Store, now: datetime) -> None:
    run = store.runs.join(DAY, now, _subscribe(store, now, 5))
    slow = store.runs.claim(run, "slow", 0.2)
    assert slow is not None and store.runs.claim(run, "other", 60) is None
    _until(lambda: store.runs.progress(run) == RunProgress(done=0, held=0, free=1))  # the lease runs out
    taker = store.runs.claim(run, "taker", 60)
    assert taker is not None and taker.taken_over and taker.start == slow.start
    assert not store.runs.renew(slow, 60)  # the slow one learns it lost the range at its next batch
    assert not store.runs.finish_range(slow, 5)
    assert store.runs.finish_range(taker, 5)
    assert [(r.owner, r.claims) for r in store.runs.ranges(run)] == [("taker", 2)]


def test_an_empty_store_has_one_empty_range(store: Store, now: datetime) -> None:
    run = store.runs.join(DAY, now, [])
    claim = store.runs.claim(run, "a", 60)
    assert claim is not None and (claim.start, claim.stop) == ("", None)


def test_on_sqlite_a_new_run_never_joins_an_old_one(tmp_path: object, now: datetime) -> None:
    """SQLite is used by one run at a time (the run lock): an open run is a dead run's, so the next run
    closes it and begins afresh, covering everyone (it sends what the dead run missed)."""
    with Store.open(f"{tmp_path}/d.sqlite3") as store:
        bounds = _subscribe(store, now)
        first = store.runs.join(DAY, now, bounds)
        assert store.runs.claim(first, "dead", 300) is not None
        second = store.runs.join(DAY, now, bounds)
        assert second != first
        assert store.runs.progress(second) == RunProgress(done=0, held=0, free=3)


# -- PostgreSQL: several hosts ----------------------------------------------------------------------


def test_hosts_join_a_run_while_one_of_them_is_in_it(postgres_database: str, now: datetime) -> None:
    with Store.open(postgres_database) as first, Store.open(postgres_database) as second:
        bounds = _subscribe(first, now)
        run = first.runs.join(DAY, now, bounds)
        assert second.runs.join(DAY, now, bounds) == run  # the first host is still in it
        held = first.runs.claim(run, "first", 300)
        assert held is not None
        pid = first.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        first.close()  # the first host dies (its session ends): its claim is free at once, lease or not
        # PostgreSQL ends the session's backend a moment after the client hangs up.
        alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = ?"
        _until(lambda: second.conn.execute(alive, (pid,)).fetchone()[0] == 0)
        taken = second.runs.claim(run, "second", 300)
        assert taken is not None and taken.taken_over and taken.start == held.start
        assert second.runs.join(date(2026, 11, 29), now, bounds) != run  # another day: another run
    with Store.open(postgres_database) as third:
        # Nobody works in the runs any more: they are closed, and a new run covers everyone again.
        fresh = third.runs.join(DAY, now, bounds)
        assert fresh > run and third.runs.progress(fresh) == RunProgress(done=0, held=0, free=3)
        assert third.conn.execute("SELECT count(*) FROM runs WHERE finished IS NULL").fetchone()[0] == 1


def test_hosts_started_together_read_the_sources_once(postgres_database: str, now: datetime) -> None:
    turns: list[bool] = []
    with Store.open(postgres_database) as first, Store.open(postgres_database) as second:
        entered = threading.Event()

        def other_host() -> None:
            entered.wait()
            with second.runs.ingest_turn(now) as mine:
                turns.append(mine)

        waiter = threading.Thread(target=other_host)
        waiter.start()
        with first.runs.ingest_turn(now) as mine:
            turns.append(mine)
            entered.set()
            _until(lambda: _waiting_for_a_lock(first) == 1)  # the other host waits for this one's turn
        waiter.join(10)
        assert turns == [True, False]  # it waited, found the sources just read, and did not read them
        with second.runs.ingest_turn(now) as mine:
            assert mine  # a run that starts afterwards reads them again
