"""The operator gets one email when a source keeps failing or goes stale on weekdays, one when it
recovers, and none while nothing changes; through the real pipeline into a real Maildir (and over SMTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import read_maildir, write_config
from test_cadence import listing

from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.wiring import Services

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _setup(tmp_path: Path, **tables: dict[str, Any]) -> Path:
    (tmp_path / "feed").mkdir()
    return write_config(
        tmp_path,
        sources=[
            {"kind": "snapshot", "name": "feed", "path": "feed/*.txt"},
            {"kind": "snapshot", "name": "steady", "path": "steady/*.txt"},
        ],
        subscribers=[{"email": "ada@example.org"}],
        tables={"alerts": {"to": "ops@example.org", "after": 2}, **tables},
    )


def _alerts(tmp_path: Path) -> list[tuple[str, str]]:
    mails = [m for m in read_maildir(tmp_path / "var" / "outbox") if str(m["To"]) == "ops@example.org"]
    return [(str(m["Subject"]), m.get_body(("plain",)).get_content()) for m in mails]


def _run(cfg: Path, now: datetime) -> None:
    """A run into the config's Maildir: digests and the operator's alerts alike (``_alerts`` reads the
    latter)."""
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        pipeline.run_once(Services(settings), store, now)


def test_a_failing_source_is_alerted_once_and_its_recovery_once(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    (tmp_path / "steady").mkdir()
    listing(tmp_path / "steady", MONDAY)
    (tmp_path / "feed" / "broken.txt").write_text("not a listing at all\n", encoding="utf-8")
    _run(cfg, MONDAY)
    assert _alerts(tmp_path) == []  # one failure is not yet a pattern
    _run(cfg, MONDAY + timedelta(hours=1))
    ((subject, body),) = _alerts(tmp_path)
    assert subject == "digest: 1 source needs attention"
    assert (
        "feed: failed the last 2 reads (no paper yet). Last error: source 'feed': no paper entries found"
        in body
    )
    assert "steady" not in body
    for hours in (2, 3):
        _run(cfg, MONDAY + timedelta(hours=hours))
    assert len(_alerts(tmp_path)) == 1  # still failing: not alerted again
    (tmp_path / "feed" / "broken.txt").unlink()
    listing(tmp_path / "feed", MONDAY + timedelta(hours=4))
    _run(cfg, MONDAY + timedelta(hours=4))
    subjects = [s for s, _ in _alerts(tmp_path)]
    assert subjects == ["digest: 1 source needs attention", "digest: 1 source recovered"]


def test_a_stale_source_is_alerted_on_weekdays_only(tmp_path: Path) -> None:
    cfg = _setup(tmp_path)
    (tmp_path / "steady").mkdir()
    friday = MONDAY - timedelta(days=3)
    listing(tmp_path / "feed", friday)
    listing(tmp_path / "steady", friday)
    _run(cfg, friday)
    for day in range(1, 4):  # Saturday, Sunday, Monday: one weekday without news is not stale (after = 2)
        listing(tmp_path / "steady", friday + timedelta(days=day))
        _run(cfg, friday + timedelta(days=day))
    assert _alerts(tmp_path) == []
    listing(tmp_path / "steady", friday + timedelta(days=4))
    _run(cfg, friday + timedelta(days=4))  # Tuesday: the second weekday without a new paper
    ((subject, body),) = _alerts(tmp_path)
    assert subject == "digest: 1 source needs attention"
    assert body.startswith("feed: no new paper for 2 weekdays or more (last new paper 2026-11-20 09:00).")


def test_an_alert_that_cannot_be_sent_is_tried_again_by_the_next_run(tmp_path: Path) -> None:
    cfg = _setup(
        tmp_path, delivery={"method": "smtp"}, smtp={"host": "127.0.0.1", "port": 9, "security": "none"}
    )
    (tmp_path / "steady").mkdir()
    listing(tmp_path / "steady", MONDAY)
    (tmp_path / "feed" / "broken.txt").write_text("not a listing\n", encoding="utf-8")
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        for hours in (0, 1):
            pipeline.run_once(Services(settings), store, MONDAY + timedelta(hours=hours))  # nobody answers
        (health,) = [h for h in store.health.sources(["feed"])]
        assert health.failures == 2 and health.alerted is None  # nobody could be told: not marked
    maildir = write_config(
        tmp_path,
        sources=[{"kind": "snapshot", "name": "feed", "path": "feed/*.txt"}],
        subscribers=[{"email": "ada@example.org"}],
        tables={"alerts": {"to": "ops@example.org", "after": 2}},
    )
    _run(maildir, MONDAY + timedelta(hours=2))
    assert [s for s, _ in _alerts(tmp_path)] == ["digest: 1 source needs attention"]
