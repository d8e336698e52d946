"""The run end to end on real files, a real HTTP server and a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import (
    FIXTURES,
    SAMPLES_REPORT,
    HttpServer,
    Route,
    SmtpServer,
    count_papers,
    read_maildir,
    samples_source,
    sent_refs,
    write_config,
)

from digest.email.smtp import SmtpTransport
from digest.email.transport import MaildirTransport, MemoryTransport
from digest.errors import PermanentDeliveryError
from digest.models import Paper, Profile, Status, Subscriber
from digest.run import pipeline
from digest.run.channel import EmailChannel
from digest.run.courier import Courier
from digest.run.delivery import Delivery
from digest.run.planning import Send, Skip, plan, plan_batches
from digest.selection.index import PaperIndex
from digest.settings import Settings, load_settings
from digest.store import Store, is_server
from digest.wiring import Services

ADA = {"email": "ada@example.org", "name": "Ada", "keywords": ["speculative decoding"], "max_papers": 3}
GRACE = {"email": "grace@example.org", "keywords": [], "max_papers": 5}


_opened: list[Store] = []


@pytest.fixture(autouse=True, params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every test here runs on both backends: on PostgreSQL, DIGEST_DATABASE (the environment beats
    the config file) points the run at a fresh database of the test session's cluster."""
    if request.param == "postgresql":
        monkeypatch.setenv("DIGEST_DATABASE", request.getfixturevalue("postgres_database"))
    yield str(request.param)
    while _opened:
        _opened.pop().close()


def setup(tmp_path: Path, **kw: object) -> tuple[Settings, Store]:
    cfg = write_config(tmp_path, **kw)  # type: ignore[arg-type]
    settings = load_settings(cfg)
    store = Store.open(settings.database)
    _opened.append(store)
    return settings, store


def test_demo_shape_run_into_maildir(tmp_path: Path, now: datetime) -> None:
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA, GRACE])
    report = pipeline.run_once(Services(settings), store, now)
    assert [s.to_json() for s in report.sources] == [{**SAMPLES_REPORT, "last_new": now.isoformat()}]
    assert [(s.email, s.status, len(s.matches)) for s in report.subscribers] == [
        ("ada@example.org", Status.SENT, 3),
        ("grace@example.org", Status.SENT, 5),
    ]
    assert pipeline.exit_status(report) == 0
    messages = read_maildir(tmp_path / "var" / "outbox")
    assert len(messages) == 2
    for msg in messages:
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    # The trending digest is the top papers by upvotes.
    grace = next(s for s in report.subscribers if s.email == "grace@example.org")
    ups = [m.paper.upvotes or 0 for m in grace.matches]
    assert ups == sorted(ups, reverse=True) and ups[0] == 10
    store.close()


def test_second_run_with_nothing_new_sends_nothing(tmp_path: Path, now: datetime) -> None:
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA])
    transport = MemoryTransport()
    pipeline.run_once(Services(settings, transport=transport), store, now)
    second = pipeline.run_once(Services(settings, transport=transport), store, now + timedelta(hours=2))
    assert len(transport.sent) == 1
    assert [s.status for s in second.subscribers] == [Status.NOTHING_NEW]
    assert second.sources[0].new == 0


def test_cut_by_the_cap_stays_a_candidate_and_nothing_is_sent_twice(tmp_path: Path, now: datetime) -> None:
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA])
    transport = MemoryTransport()
    pipeline.ingest(Services(settings), store, now)
    store.readers.sync_config(settings.config_subscribers(), now)
    _, total = PaperIndex(store.papers.recent(now - timedelta(days=7))).select(store.readers.all()[0].profile)
    assert total == 9  # "speculative decoding" in the seeds
    seen: list[str] = []
    day = now
    for _ in range(5):
        report = pipeline.run_once(Services(settings, transport=transport), store, day)
        seen.extend(m.paper.key for s in report.subscribers for m in s.matches if s.status == Status.SENT)
        day += timedelta(days=1)
    assert len(seen) == total == len(set(seen))  # every match exactly once, 3 a day
    assert len(transport.sent) == 3


def test_lookback_window(tmp_path: Path, now: datetime) -> None:
    settings, store = setup(tmp_path, subscribers=[{"email": "a@example.org", "keywords": ["precision"]}])
    store.papers.ingest([Paper("Scaling Laws for Precision", "old news")], now - timedelta(days=8))
    store.papers.ingest([Paper("Precision Matters", "fresh")], now - timedelta(days=6))
    store.readers.sync_config(settings.config_subscribers(), now)
    (planned,) = plan(store, now, settings.default_when(), Services(settings).pool(store, now))
    assert isinstance(planned, Send)
    assert [m.paper.title for m in planned.digest.matches] == ["Precision Matters"]


def test_keywords_exclude_and_whole_words(tmp_path: Path, now: datetime) -> None:
    subs = [
        {"email": "rag@example.org", "keywords": ["RAG"]},
        {"email": "gan@example.org", "keywords": ["GAN"]},
        {"email": "ex@example.org", "keywords": ["speculative decoding"], "exclude": ["multi-sample"]},
    ]
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=subs)
    pipeline.ingest(Services(settings), store, now)
    store.readers.sync_config(settings.config_subscribers(), now)
    plans = {
        p.subscriber.email: p
        for p in plan(store, now, settings.default_when(), Services(settings).pool(store, now))
    }
    rag = plans["rag@example.org"]
    assert isinstance(rag, Send)
    for m in rag.digest.matches:
        assert " RAG" in f" {m.paper.title} {m.paper.abstract}".replace("(", " ").replace("-", " ")
    assert isinstance(plans["gan@example.org"], Skip)  # "GAN" is inside "organ", never a word here
    ex = plans["ex@example.org"].digest
    assert all("multi-sample" not in (m.paper.title + m.paper.abstract).lower() for m in ex.matches)
    assert len(ex.matches) == 8


def test_failing_source_is_reported_and_the_others_still_run(
    tmp_path: Path, now: datetime, http_server: HttpServer
) -> None:
    http_server.routes["/rss"] = Route((FIXTURES / "arxiv_cs_CL.rss").read_bytes(), etag='"a"')
    http_server.routes["/broken"] = Route(
        b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"
    )
    srcs = [
        {"kind": "feed", "name": "broken", "url": http_server.url("/broken")},
        {"kind": "feed", "name": "arxiv", "url": http_server.url("/rss")},
        samples_source(),
    ]
    settings, store = setup(tmp_path, sources=srcs, subscribers=[ADA])
    report = pipeline.run_once(Services(settings, transport=MemoryTransport()), store, now)
    by_name = {s.name: s for s in report.sources}
    assert by_name["broken"].error is not None and "broken" in by_name["broken"].error
    assert "HTML page" in by_name["broken"].error
    assert (by_name["arxiv"].papers, by_name["arxiv"].new, by_name["arxiv"].error) == (3, 3, None)
    # "Scaling Laws for Precision" and "DySpec" are in the seeds too: arxiv brought them first.
    assert by_name["samples"].new == 373
    assert report.subscribers[0].status == Status.SENT
    assert pipeline.exit_status(report) == 1  # a source failed: it will be retried
    stored = count_papers(store)
    # The next run: arxiv is unchanged (304), the broken one still broken; nothing stored is lost.
    again = pipeline.run_once(Services(settings, transport=MemoryTransport()), store, now + timedelta(days=1))
    assert {s.name: s.not_modified for s in again.sources}["arxiv"] is True
    assert count_papers(store) == stored
    # Each source says when it last brought something new: arxiv and the samples yesterday, broken never.
    last = {s.name: s.last_new for s in again.sources}
    assert last == {"broken": None, "arxiv": now.isoformat(), "samples": now.isoformat()}


def test_refused_recipient_is_retried_next_run_exactly_once(
    tmp_path: Path, now: datetime, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.refuse["ada@example.org"] = "450 4.2.1 mailbox busy"
    tables = {
        "delivery": {"method": "smtp"},
        "smtp": {"host": smtp_server.host, "port": smtp_server.port, "security": "none", "timeout": 5},
    }
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA, GRACE], tables=tables)
    first = pipeline.run_once(Services(settings), store, now)
    status = {s.email: (s.status, s.error) for s in first.subscribers}
    assert status["grace@example.org"] == (Status.SENT, None)
    assert status["ada@example.org"][0] == Status.RETRY_LATER
    assert "450" in (status["ada@example.org"][1] or "")
    assert pipeline.exit_status(first) == 1
    assert sent_refs(store, "ada@example.org") == set()  # nothing marked sent without acceptance
    assert len(smtp_server.handler.received_by("grace@example.org")) == 1
    assert len(smtp_server.handler.sessions) == 1

    del smtp_server.handler.refuse["ada@example.org"]
    second = pipeline.run_once(Services(settings), store, now + timedelta(hours=1))
    assert {s.email: s.status for s in second.subscribers} == {
        "ada@example.org": Status.SENT,
        "grace@example.org": Status.NOTHING_NEW,
    }
    (ada_msg,) = smtp_server.handler.received_by("ada@example.org")
    assert len(smtp_server.handler.received_by("grace@example.org")) == 1
    assert "speculative decoding" in ada_msg["Subject"]


def test_one_smtp_connection_per_run(tmp_path: Path, now: datetime, smtp_server: SmtpServer) -> None:
    subs = [{"email": f"user{i}@example.org", "keywords": [], "max_papers": 2} for i in range(6)]
    tables = {
        "smtp": {"host": smtp_server.host, "port": smtp_server.port, "security": "none", "timeout": 5},
        "delivery": {"method": "smtp"},
    }
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=subs, tables=tables)
    transport = Services(settings).transport()
    assert isinstance(transport, SmtpTransport)
    report = pipeline.run_once(Services(settings, transport=transport), store, now)
    assert [s.status for s in report.subscribers] == [Status.SENT] * 6
    assert len(smtp_server.handler.messages) == 6
    assert len(smtp_server.handler.sessions) == 1
    for mail_from, rcpts, msg in smtp_server.handler.messages:
        assert mail_from == "digest@example.org"
        assert rcpts == [msg["To"].addresses[0].addr_spec]


def test_a_run_collects_cyclic_garbage_less_often_while_it_delivers_and_as_before_after(
    tmp_path: Path, now: datetime
) -> None:
    """The collector's young collections come every ``YOUNG_COLLECTION`` allocations while a run plans and
    sends (its full passes over the pool and caches were a large share of a run), and the process's own
    setting is back once the run is over."""
    import gc

    from digest.email.mime import Outgoing
    from digest.run.delivery import YOUNG_COLLECTION

    seen: list[int] = []

    class Watching(MemoryTransport):
        def send(self, message: Outgoing) -> None:
            seen.append(gc.get_threshold()[0])
            super().send(message)

    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA, GRACE])
    before = gc.get_threshold()
    report = pipeline.run_once(Services(settings, transport=Watching()), store, now)
    assert [s.status for s in report.subscribers] == [Status.SENT] * 2
    assert seen == [YOUNG_COLLECTION] * 2 and gc.get_threshold() == before


def test_permanent_refusal_fails_only_that_subscriber(tmp_path: Path, now: datetime) -> None:
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA, GRACE])
    transport = MemoryTransport(
        refuse={"ada@example.org": PermanentDeliveryError("ada@example.org", "550 no")}
    )
    report = pipeline.run_once(Services(settings, transport=transport), store, now)
    assert {s.email: s.status for s in report.subscribers} == {
        "ada@example.org": Status.FAILED,
        "grace@example.org": Status.SENT,
    }


def test_dry_run_changes_nothing(tmp_path: Path, now: datetime) -> None:
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA])
    report = pipeline.run_once(
        Services(settings, transport=MaildirTransport(tmp_path / "var" / "outbox")), store, now, dry_run=True
    )
    assert [s.status for s in report.subscribers] == [Status.DRY_RUN]
    assert report.subscribers[0].matches
    assert count_papers(store) == 0
    assert store.readers.all() == []
    assert read_maildir(tmp_path / "var" / "outbox") == []


def test_invalid_profile_fails_that_subscriber_only(tmp_path: Path, now: datetime) -> None:
    """A profile stored before a rule existed (the config's and every new one are checked when they come
    in, see test_config_checks) fails its own reader at the run, and nobody else."""
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA])
    store.readers.add(Subscriber("bad@example.org", "", Profile(("***",))), now)
    report = pipeline.run_once(Services(settings, transport=MemoryTransport()), store, now)
    status = {s.email: s for s in report.subscribers}
    assert status["bad@example.org"].status == Status.FAILED
    assert "subscriber bad@example.org, keyword '***': the keyword has no letters or digits" in (
        status["bad@example.org"].error or ""
    )
    assert status["ada@example.org"].status == Status.SENT


def test_preview_has_no_side_effects(tmp_path: Path, now: datetime) -> None:
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA])
    pipeline.ingest(Services(settings), store, now)
    before = _every_row(settings, store)
    result = pipeline.preview(Services(settings), store, "ada@example.org", now)
    assert result.message is not None and isinstance(result.planned, Send)
    assert len(result.planned.digest.matches) == 3
    assert sent_refs(store, "ada@example.org") == set()
    assert _every_row(settings, store) == before


def _every_row(settings: Settings, store: Store) -> object:
    """All the store holds: a SQLite file's bytes, or every row of every PostgreSQL table."""
    if not is_server(store.path):
        return Path(settings.database).read_bytes()
    tables = [r[0] for r in store.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return {t: sorted(map(repr, store.conn.execute(f"SELECT * FROM {t}").fetchall())) for t in sorted(tables)}


def test_preview_reads_no_source(tmp_path: Path, now: datetime) -> None:
    """Preview shows what is stored: with nothing ingested yet there is nothing new, whatever the sources."""
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA])
    result = pipeline.preview(Services(settings), store, "ada@example.org", now)
    assert isinstance(result.planned, Skip) and result.message is None
    assert count_papers(store) == 0


@pytest.mark.parametrize("email", ["nobody@example.org"])
def test_preview_unknown_subscriber(tmp_path: Path, now: datetime, email: str) -> None:
    from digest.errors import SubscriberError

    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA])
    with pytest.raises(SubscriberError, match="no subscriber"):
        pipeline.preview(Services(settings), store, email, now)


def test_a_digest_begun_elsewhere_meanwhile_is_not_sent_again(tmp_path: Path, now: datetime) -> None:
    """Between planning and beginning, another writer (a library user ignoring the run lock) begins Ada's
    digest for the day: the batch's insert is refused by the database, and nothing is sent to her."""
    settings, store = setup(tmp_path, sources=[samples_source()], subscribers=[ADA])
    store.readers.sync_config(settings.config_subscribers(), now)
    pipeline.ingest(Services(settings), store, now)
    (batch,) = plan_batches(store, now, settings.default_when(), Services(settings).pool(store, now))
    assert isinstance(batch[0], Send)
    from digest.store import NewMessage

    store.outbox.begin([NewMessage("ada@example.org", batch[0].digest.day, "<other@x>", ())], now)
    transport = MemoryTransport()
    delivery = Delivery(store, EmailChannel(Services(settings).renderer, Courier(transport)), now)
    (report,) = delivery.deliver_batch(batch)
    assert report.status == Status.NOTHING_NEW and "already has a digest" in (report.note or "")
    assert transport.sent == []
    store.close()
