"""The store, on real files (and a real PostgreSQL database): one paper per identity,
sent records, schema versions."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import count_papers, sent_refs

from digest.alerts import SourceHealth
from digest.errors import StoreError
from digest.models import Paper, Profile, Subscriber, Validators
from digest.store import SCHEMA_VERSION, NewMessage, Store


@pytest.fixture
def store(store_location: str) -> Iterator[Store]:
    """The store on each backend: the tests that take it run on SQLite and on PostgreSQL."""
    s = Store.open(store_location)
    yield s
    s.close()


def test_opens_creates_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "digest.sqlite3"
    with Store.open(path) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: the ledger survives power loss
    assert path.is_file()


def test_a_newer_schema_is_refused_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "digest.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this digest understands"):
        Store.open(path)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "digest.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="is damaged: file is not a database"):
        Store.open(path)


def test_same_paper_twice_in_one_listing_is_one_row(store: Store, now: datetime) -> None:
    p = Paper("Scaling Laws for Precision", "Abstract.", upvotes=3)
    assert store.papers.ingest([p, p, Paper("scaling laws for precision!", "Abstract.", upvotes=9)], now) == 1
    (row,) = store.papers.recent(now - timedelta(days=1))
    assert row.upvotes == 9  # upvotes only grow


def test_same_paper_from_two_sources_is_one_row(store: Store, now: datetime) -> None:
    from_snapshot = Paper("Scaling Laws for Precision", "Low precision training ...", upvotes=2, source="hf")
    from_feed = Paper(
        "Scaling  laws for precision",
        "Low precision training ...",
        arxiv_id="2411.04330",
        authors=("Tanishq Kumar",),
        published=date(2024, 11, 7),
        source="arxiv",
    )
    assert store.papers.ingest([from_snapshot], now) == 1
    assert store.papers.ingest([from_feed], now + timedelta(hours=1)) == 0
    (row,) = store.papers.recent(now - timedelta(days=1))
    assert row.arxiv_id == "2411.04330"  # the id-less row learned its arXiv id
    assert row.authors == ("Tanishq Kumar",)
    assert row.upvotes == 2
    assert row.key == "2411.04330"
    # And the other way round: id first, then the title-only listing.
    assert (
        store.papers.ingest([Paper("Large Language Diffusion Models", "A.", arxiv_id="2502.09992")], now) == 1
    )
    assert store.papers.ingest([Paper("Large Language Diffusion Models", "A.")], now) == 0


def test_arxiv_versions_fold(store: Store, now: datetime) -> None:
    from digest.models import arxiv_id_from

    ids = [
        arxiv_id_from(x)
        for x in ("2411.04330v1", "http://arxiv.org/abs/2411.04330v3", "oai:arXiv.org:2411.04330")
    ]
    assert store.papers.ingest([Paper("T", "A", arxiv_id=i) for i in ids], now) == 1


def test_first_seen_never_moves(store: Store, now: datetime) -> None:
    store.papers.ingest([Paper("A paper", "x")], now - timedelta(days=10))
    store.papers.ingest([Paper("A paper", "x")], now)
    assert store.papers.recent(now - timedelta(days=7)) == []
    assert len(store.papers.recent(now - timedelta(days=11))) == 1


def test_validators_saved_with_papers_in_one_transaction(store: Store, now: datetime) -> None:
    store.papers.ingest(
        [Paper("A", "x")], now, source="arxiv", url="http://x/rss", validators=Validators('"1"', None)
    )
    assert store.papers.validators("arxiv", "http://x/rss") == Validators('"1"', None)

    class Boom(Paper):
        @property
        def title_key(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.papers.ingest(
            [Paper("B", "y"), Boom("C", "z")],
            now,
            source="arxiv",
            url="http://x/rss",
            validators=Validators('"2"', None),
        )
    assert store.papers.validators("arxiv", "http://x/rss") == Validators('"1"', None)  # rolled back
    assert count_papers(store) == 1


def test_sent_records_per_subscriber(store: Store, now: datetime) -> None:
    store.papers.ingest([Paper("A", "x"), Paper("B", "y")], now)
    a, _b = store.papers.recent(now - timedelta(days=1))
    assert a.ref is not None
    (row,) = store.outbox.begin(
        [NewMessage("ada@example.org", now.date(), "<m1@example.org>", (a.ref,))], now
    )
    assert row is not None
    store.outbox.mark_sent(row, now)
    assert sent_refs(store, "ada@example.org") == {a.ref}
    assert sent_refs(store, "grace@example.org") == set()
    later = now.date() + timedelta(days=1)
    state = store.outbox.state(["ada@example.org"], {now.date(), later})
    assert state.sent_on == {("ada@example.org", now.date())}
    assert store.outbox.state(["ada@example.org"], {later}).sent_on == set()
    assert store.outbox.ever_sent(["ADA@example.org", "grace@example.org"]) == set()  # not a subscriber row
    store.readers.add(Subscriber("ada@example.org"), now)
    store.readers.add(Subscriber("grace@example.org"), now)
    assert store.outbox.ever_sent(["ADA@example.org", "grace@example.org"]) == {"ada@example.org"}


def test_config_subscribers_sync_and_cli_subscribers(store: Store, now: datetime) -> None:
    ada = Subscriber("ada@example.org", "Ada", Profile(("RAG",)))
    store.readers.sync_config([ada], now)
    assert store.readers.add(Subscriber("bob@example.org", "", Profile((), (), 5)), now) is True
    assert [s.email for s in store.readers.all()] == ["ada@example.org", "bob@example.org"]
    # Unsubscribed stays unsubscribed even though the config still declares Ada.
    assert store.readers.unsubscribe("ada@example.org", now)
    store.readers.sync_config([ada], now)
    assert [s.email for s in store.readers.all()] == ["bob@example.org"]
    # Removed from the config: no more mail.
    store.readers.add(ada, now)  # re-subscribe
    store.readers.sync_config([], now)
    assert [s.email for s in store.readers.all()] == ["bob@example.org"]
    assert not store.readers.unsubscribe("nobody@example.org", now)


def test_snapshot_is_a_detached_copy(store: Store, now: datetime) -> None:
    store.papers.ingest([Paper("A", "x")], now)
    copy = store.snapshot()
    copy.papers.ingest([Paper("B", "y")], now)
    assert count_papers(copy) == 2
    assert count_papers(store) == 1
    copy.close()


def test_batched_outbox_rows_and_state_in_few_queries(store: Store, now: datetime) -> None:
    store.papers.ingest([Paper("A", "x"), Paper("B", "y"), Paper("C", "z")], now)
    a, b, c = store.papers.recent(now - timedelta(days=1))
    assert a.ref is not None and b.ref is not None and c.ref is not None
    day = now.date()
    ids = store.outbox.begin(
        [
            NewMessage("ada@example.org", day, "<m1@x>", (a.ref, b.ref)),
            NewMessage("grace@example.org", day, "<m2@x>", (c.ref,), more=4),
            NewMessage("ADA@example.org", day, "<m3@x>", (c.ref,)),  # a second live digest for the day
        ],
        now,
    )
    assert ids[0] and ids[1] and ids[2] is None  # refused, not raised: that one must not be sent
    store.outbox.mark_sent_many([ids[0]], now)
    batch = ["ada@example.org", "Grace@example.org", "nobody@example.org"]
    state = store.outbox.state(batch, {day})
    assert state.sent_on == {("ada@example.org", day)}
    assert store.outbox.sent_refs(batch) == {"ada@example.org": {a.ref, b.ref}}
    (row,) = state.unfinished["grace@example.org"]
    assert (row.message_id, row.refs, row.more, row.status) == ("<m2@x>", (c.ref,), 4, "sending")
    assert store.outbox.sent_refs(["ada@example.org"], min_ref=b.ref + 1) == {}  # outside the pool
    assert store.outbox.begin([NewMessage("ada@example.org", day, "<m4@x>", (c.ref,))], now) == [None]


def test_subscriber_batches_and_bounds_cover_everyone_once(store: Store, now: datetime) -> None:
    store.readers.add_many(
        [Subscriber(f"u{i:03d}@example.org", "", Profile(("RAG",))) for i in range(25)], now
    )
    store.readers.unsubscribe("u007@example.org", now)
    batches = list(store.readers.batches(10))
    assert [len(b) for b in batches] == [9, 10, 5]  # u007 is inactive: skipped in its batch
    bounds = store.readers.bounds(10)
    assert bounds == ["u000@example.org", "u010@example.org", "u020@example.org"]
    ranges = zip(bounds, [*bounds[1:], None], strict=True)
    seen = [
        s.email for start, stop in ranges for b in store.readers.batches(4, start=start, stop=stop) for s in b
    ]
    assert seen == [f"u{i:03d}@example.org" for i in range(25) if i != 7]
    assert store.readers.count() == 24


def test_rate_limits_count_per_key_within_their_window(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as one, Store.open(tmp_path / "s.sqlite3") as two:
        assert [one.limits.allow("address:a", 2, 60, t) for t in (0.0, 1.0)] == [True, True]
        assert two.limits.allow("address:a", 2, 60, 2.0) is False  # a second connection sees the same count
        assert two.limits.allow("address:b", 2, 60, 2.0) is True  # another key has its own
        assert one.limits.allow("address:a", 2, 60, 60.5) is True  # the first event left the window
        assert one.limits.allow("address:a", 2, 60, 60.6) is False


def test_figures_count_what_an_operator_watches(store: Store, now: datetime) -> None:
    """The counts behind /metrics, on both backends."""
    store.papers.ingest([Paper("Scaling Laws for Precision", "A.", source="hf")], now)
    store.papers.ingest(
        [Paper("Large Language Diffusion Models", "A.", source="arxiv")], now + timedelta(hours=1)
    )
    store.readers.add_many([Subscriber(f"u{i}@example.org", "", Profile(("RAG",))) for i in range(3)], now)
    store.readers.unsubscribe("u2@example.org", now)
    run = store.runs.join(now.date(), now, store.readers.bounds(1000))
    ref = store.papers.recent(now - timedelta(days=1))[0].ref
    assert ref is not None
    day = now.date()
    sent, retry = store.outbox.begin(
        [NewMessage(f"u{i}@example.org", day, f"<m{i}@example.org>", (ref,)) for i in range(2)], now
    )
    assert sent is not None and retry is not None
    store.outbox.mark_sent(sent, now)
    store.outbox.mark_retry(retry, "451 try later", now)
    store.runs.finish(run)

    f = store.health.figures()
    assert f.subscribers == {"active": 2, "unsubscribed": 1}
    assert f.unfinished == {"retry": 1}
    assert (f.day, f.day_messages) == (day.isoformat(), {"sent": 1, "retry": 1})
    assert f.runs == 1 and f.last_run_finished is not None
    assert f.last_new_paper == {"hf": now.timestamp(), "arxiv": (now + timedelta(hours=1)).timestamp()}


def _open_and_report(path: str, answers: Any) -> None:
    try:
        with Store.open(path) as s:
            answers.put(s.conn.execute("PRAGMA user_version").fetchone()[0])
    except Exception as exc:  # the failure is the answer the test shows
        answers.put(repr(exc))


@pytest.mark.processes
def test_processes_opening_a_new_database_at_once_migrate_it_once(tmp_path: Path) -> None:
    """`digest serve --workers N` starts N processes on a fresh database: each migration step is taken by
    one of them (the others see the version moved on inside their transaction), none fails."""
    context = multiprocessing.get_context("spawn")
    for attempt in range(3):
        path = str(tmp_path / f"fresh{attempt}.sqlite3")
        answers = context.Queue()
        procs = [context.Process(target=_open_and_report, args=(path, answers)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [answers.get(timeout=5) for _ in procs] == [SCHEMA_VERSION] * 4


def test_source_health_counts_failed_reads_and_keeps_the_alerted_state(store: Store, now: datetime) -> None:
    """The alerts' memory, on both backends."""
    store.papers.ingest([Paper("A", "x", source="feed")], now)
    assert store.health.sources(["feed", "other"]) == [
        SourceHealth("feed", 0, None, now.isoformat(), None),
        SourceHealth("other"),
    ]
    store.health.record_read("feed", "source 'feed': timed out")
    store.health.record_read("feed", "source 'feed': HTTP 503")
    (feed,) = store.health.sources(["feed"])
    assert (feed.failures, feed.last_error) == (2, "source 'feed': HTTP 503")
    store.health.set_alerted("feed", "failing")
    store.health.record_read("feed", None)  # a good read ends the run of failures; the alert stays until told
    (feed,) = store.health.sources(["feed"])
    assert (feed.failures, feed.alerted) == (0, "failing")
    store.health.set_alerted("feed", None)
    assert store.health.sources(["feed"])[0].alerted is None


def test_the_dialect_numbers_only_real_placeholders_and_every_failure_is_a_store_error(store: Store) -> None:
    """A ``?`` inside a string literal or a comment is text, not a parameter, in either dialect (the old
    PostgreSQL translation made ``'why?'`` into ``'why$1'``); a statement without parameters is translated
    too; and whatever the driver raises reaches the caller as a StoreError naming the database."""
    row = store.conn.execute("SELECT 'why?' AS q, ? AS v -- and a comment?", (5,)).fetchone()
    assert (row["q"], int(row["v"])) == ("why?", 5)
    assert store.conn.execute("SELECT 'a?b' AS q").fetchone()[0] == "a?b"
    with pytest.raises(StoreError, match=f"the database {re.escape(store.path)} failed"):
        store.conn.execute("SELECT * FROM no_such_table WHERE x = ?", (1,))
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.execute("INSERT INTO no_such_table VALUES (1)")
    assert not store.conn.in_transaction  # the failed transaction was rolled back
