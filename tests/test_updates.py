"""New versions of papers a reader was sent: told once per version in an "Updated since you saw it" part,
never as a new paper, and not at all for a reader who turned it off. Four days of arXiv-shaped listings."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, read_maildir, write_config

from digest.models import Paper
from digest.run import pipeline
from digest.run.recall import recalled
from digest.settings import load_settings
from digest.store import Store
from digest.wiring import Services

DAY1 = datetime(2024, 11, 15, 6, 0, tzinfo=UTC)
# Per day of the last ``days``: each reader's updates, as the run's JSON report lists them.
TOLD: dict[int, dict[str, list[str]]] = {}
LISTINGS = ["arxiv_updates_day1.rss", "arxiv_cs_CL.rss", "arxiv_updates_day3.rss", "arxiv_updates_day4.rss"]
READERS: list[dict[str, Any]] = [
    {"email": "ada@example.org", "keywords": ["speculative decoding"]},
    {"email": "bob@example.org", "keywords": ["speculative decoding"], "updates": False},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def days(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[dict[str, tuple[str, str]]]]:
    """Each day's listing run in turn, on SQLite and on PostgreSQL; per day, each reader's digest as
    (text part, HTML part)."""
    if request.param == "postgresql":
        monkeypatch.setenv("DIGEST_DATABASE", request.getfixturevalue("postgres_database"))
    listing = tmp_path / "cs.CL.rss"
    cfg = write_config(
        tmp_path, sources=[{"kind": "feed", "name": "arxiv", "path": str(listing)}], subscribers=READERS
    )
    settings = load_settings(cfg)
    out: list[dict[str, tuple[str, str]]] = []
    TOLD.clear()
    with Store.open(settings.database) as store:
        for n, name in enumerate(LISTINGS):
            shutil.copy(FIXTURES / name, listing)
            before = {m["Message-ID"] for m in read_maildir(tmp_path / "var" / "outbox")}
            report = pipeline.run_once(Services(settings), store, DAY1 + timedelta(days=n)).to_json()
            TOLD[n] = {s["email"]: s.get("updates", []) for s in report["subscribers"]}
            new = [m for m in read_maildir(tmp_path / "var" / "outbox") if m["Message-ID"] not in before]
            out.append(
                {
                    str(m["To"]): (
                        m.get_body(("plain",)).get_content(),
                        m.get_body(("html",)).get_content(),
                    )
                    for m in new
                }
            )
        yield out


def test_a_new_version_is_told_once_per_version_and_never_as_a_new_paper(days: list[dict]) -> None:
    first, second, third, fourth = (d["ada@example.org"] for d in days)
    assert "An Old Paper, Revised" in first[0] and "Updated since you saw it" not in first[0]
    # Day 2: version 3 of the paper Ada was sent, under its own heading and not numbered as a new paper.
    text, html = second
    news, _, told = text.partition("Updated since you saw it")
    assert "DySpec" in news and "An Old Paper" not in news
    assert "* An Old Paper, Revised (version 3)" in told and "https://arxiv.org/abs/2301.00001" in told
    assert "A revision of an older paper; not new." in told  # the new version's own finding
    assert "Updated since you saw it" in html and "version 3" in html
    # A revision of a paper never stored here (2302.00002, replace-cross) is nobody's paper, old or new.
    assert all("2302.00002" not in part for day in days for parts in day.values() for part in parts)
    # Day 3 lists version 3 again: told already. Day 4 brings version 4: told, once.
    assert "Updated since you saw it" not in third[0] and "Tree Drafts" in third[0]
    assert "(version 4)" in fourth[0] and "fall with temperature" in fourth[0]
    assert [TOLD[n]["ada@example.org"] for n in range(4)] == [[], ["2301.00001"], [], ["2301.00001"]]


def test_a_reader_who_turned_updates_off_is_not_told(days: list[dict]) -> None:
    texts = [d["bob@example.org"][0] for d in days]
    assert "An Old Paper" in texts[0] and "DySpec" in texts[1]
    assert not any("Updated since you saw it" in t for t in texts)


def test_updates_wait_for_a_digest_and_skip_readers_sent_the_paper_after_it_changed(tmp_path: Path) -> None:
    """A reader is told only of versions newer than what they were sent: sent after the revision, never."""
    with Store.open(tmp_path / "d.sqlite3") as store:
        t0 = datetime(2026, 12, 1, tzinfo=UTC)
        store.papers.ingest([Paper("P", "We test. It works.", arxiv_id="2612.00001", version=1)], t0)
        (paper,) = store.papers.recent(t0)
        assert paper.version == 1 and paper.ref is not None
        ref = paper.ref
        from digest.models import Subscriber
        from digest.store import NewMessage

        for who in ("early@example.org", "late@example.org"):
            store.readers.add(Subscriber(who), t0)
        early = store.outbox.begin([NewMessage("early@example.org", t0.date(), "<e@x>", (ref,))], t0)
        store.outbox.mark_sent_many([i for i in early if i], t0)
        revised = Paper(
            "P", "We test again. It works better.", arxiv_id="2612.00001", version=2, revision=True
        )
        store.papers.ingest([revised], t0 + timedelta(days=1))
        late_day = t0 + timedelta(days=2)
        late = store.outbox.begin(
            [NewMessage("late@example.org", late_day.date(), "<l@x>", (ref,))], late_day
        )
        store.outbox.mark_sent_many([i for i in late if i], late_day)
        due = store.outbox.updates_due(["early@example.org", "late@example.org"], t0)
        assert list(due) == ["early@example.org"]
        assert due["early@example.org"][0].version == 2
        assert due["early@example.org"][0].abstract == "We test again. It works better."
        # Told once: the digest that told it is recorded with the version it told.
        told = store.outbox.begin(
            [NewMessage("early@example.org", late_day.date(), "<t@x>", (), updates=((ref, 2),))],
            late_day,
        )
        store.outbox.mark_sent_many([i for i in told if i], late_day)
        assert store.outbox.updates_due(["early@example.org"], t0) == {}
        # The page of that digest (and a resend) tells the same version again, from the message's row.
        row = store.outbox.sent_message("early@example.org", late_day.date())
        assert row is not None
        shown = recalled(Subscriber("early@example.org"), row, store)
        assert [(p.ref, p.version) for p in shown.updates] == [(ref, 2)]
        # The same version listed again is no news.
        store.papers.ingest([revised], t0 + timedelta(days=3))
        assert store.outbox.updates_due(["early@example.org"], t0) == {}
        # A listing that shows a higher version without announcing it (the HF JSON's "2612.00001v3") is
        # a new version too; a paper first stored without a version (a snapshot's) only learns its own.
        store.papers.ingest([Paper("Q", "Unversioned.")], t0)
        q = next(p.ref for p in store.papers.recent(t0) if p.title == "Q")
        assert q is not None
        sent_q = store.outbox.begin([NewMessage("late@example.org", t0.date(), "<q@x>", (q,))], t0)
        store.outbox.mark_sent_many([i for i in sent_q if i], t0)
        day4 = t0 + timedelta(days=4)
        store.papers.ingest([Paper("P", "It works best.", arxiv_id="2612.00001", version=3)], day4)
        store.papers.ingest([Paper("Q", "Unversioned.", arxiv_id="2612.00009", version=2)], day4)
        due = store.outbox.updates_due(["early@example.org", "late@example.org"], t0)
        assert {who: [(p.ref, p.version) for p in papers] for who, papers in due.items()} == {
            "early@example.org": [(ref, 3)],
            "late@example.org": [(ref, 3)],
        }
