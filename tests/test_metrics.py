"""``/metrics`` from the web app on a real socket, after a real run, parsed with Prometheus' own parser."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from conftest import TEST_SECRET_KEY, free_port, samples_source, write_config
from prometheus_client.parser import text_string_to_metric_families
from running import digest_env, web

from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.wiring import Services

TOKEN = "metrics-token-for-tests-0123456789"
SUBSCRIBERS = [
    {"email": "ada@example.org", "keywords": ["speculative decoding"], "max_papers": 3},
    {"email": "grace@example.org", "keywords": ["reasoning"], "max_papers": 3},
    {"email": "gone@example.org", "keywords": [], "max_papers": 2},
]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_show_the_run_the_subscribers_and_each_sources_freshness(
    tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path,
        top={"base_url": f"http://127.0.0.1:{port}"},
        sources=[samples_source()],
        subscribers=SUBSCRIBERS,
    )
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET_KEY)
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        report = pipeline.run_once(Services(settings), store, now)
        assert len(report.subscribers) == 3
        store.readers.unsubscribe("gone@example.org", now)

    with web(cfg, port) as base:
        assert httpx.get(f"{base}/metrics").status_code == 404  # off without a token, like the API
    with web(cfg, port, digest_env(DIGEST_API_TOKEN=TOKEN)) as base:
        assert httpx.get(f"{base}/metrics").status_code == 401
        assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        answer = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    got = samples(answer.text)
    day = now.date().isoformat()
    assert got[("digest_subscribers", (("state", "active"),))] == 2
    assert got[("digest_subscribers", (("state", "unsubscribed"),))] == 1
    assert got[("digest_subscribers", (("state", "bouncing"),))] == 0
    assert got[("digest_day_messages", (("day", day), ("status", "sent")))] == 3
    assert got[("digest_day_messages", (("day", day), ("status", "retry")))] == 0
    assert got[("digest_outbox_unfinished", (("status", "retry"),))] == 0
    assert got[("digest_runs_total", ())] == 1
    assert abs(got[("digest_last_run_finished_timestamp_seconds", ())] - time.time()) < 300
    assert (
        got[("digest_source_last_new_paper_timestamp_seconds", (("source", "samples"),))] == now.timestamp()
    )


def test_healthz_answers_503_when_the_database_does_not_and_recovers(
    tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, subscribers=SUBSCRIBERS)
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET_KEY)
    database = tmp_path / "var" / "digest.sqlite3"
    with Store.open(database):
        pass
    good = database.read_bytes()
    with web(cfg, port) as base:
        assert httpx.get(f"{base}/healthz").text == "ok"
        database.write_bytes(b"not a database " * 512)  # a disk that returns garbage
        sick = httpx.get(f"{base}/healthz")
        assert sick.status_code == 503 and sick.text == "database unavailable"  # no path, no detail
        assert str(tmp_path) not in sick.text
        database.write_bytes(good)
        assert httpx.get(f"{base}/healthz").status_code == 200  # a fresh connection: it recovers
