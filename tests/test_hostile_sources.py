"""Hostile servers and listings, against a real HTTP server on 127.0.0.1.

A URL source is bounded in time and memory whatever the server does; one bad paper never costs the others;
credentials in a source URL never print; a file that is not a listing is refused as such.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import REPO, HostileServer, count_papers, read_maildir, samples_source, write_config
from running import Ran, cli

from digest.email.render import HTML_BUDGET, Renderer
from digest.errors import FetchError, RenderError
from digest.models import Digest, Match, Paper, Profile, Status, Subscriber
from digest.run import pipeline
from digest.settings import load_settings
from digest.sources.fetch import fetch_url
from digest.store import Store
from digest.wiring import Services

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
ADA = {"email": "ada@example.org", "keywords": ["speculative decoding"], "max_papers": 3}


def run_digest(*args: str, env: dict[str, str] | None = None) -> Ran:
    """``digest ARGS`` in this process, in ``env`` (else this process's environment)."""
    return cli(*args, env=env if env is not None else dict(os.environ))


# -- 1. a URL source is bounded in time and memory ------------------------------------------------------


def test_a_trickling_server_fails_at_the_deadline_of_the_whole_fetch(hostile_server: HostileServer) -> None:
    """A byte every 0.1 s never trips a per-read timeout; the whole-fetch deadline stops it."""
    started = time.monotonic()
    with pytest.raises(
        FetchError, match=r"no complete answer from .* within 1 s .*raise the source's timeout"
    ):
        fetch_url(hostile_server.url("/trickle"), source="slow", timeout=1)
    assert time.monotonic() - started < 1.5


def test_an_endless_body_fails_at_max_bytes(hostile_server: HostileServer) -> None:
    with pytest.raises(FetchError, match=r"larger than 1,000,000 bytes .*raise the source's max_bytes"):
        fetch_url(hostile_server.url("/endless"), source="big", timeout=20, max_bytes=1_000_000)


def test_a_redirect_loop_fails_with_a_count(hostile_server: HostileServer) -> None:
    with pytest.raises(FetchError, match="more than 10 redirects"):
        fetch_url(hostile_server.url("/loop"), source="loop", timeout=10)


def test_a_gzip_bomb_stops_at_max_bytes_after_decompression_without_inflating_it(
    hostile_server: HostileServer,
) -> None:
    """200 MB of zeros sent as ~200 KB of gzip: refused at 5 MB, and never more than that in memory."""
    hostile_server.bomb()  # made before measuring
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match=r"larger than 5,000,000 bytes \(after decompression\)"):
            fetch_url(hostile_server.url("/bomb"), source="bomb", timeout=20, max_bytes=5_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 15_000_000, f"peak {peak:,} bytes"


def test_a_hung_source_costs_only_itself_and_the_run_ends_within_its_deadline(
    tmp_path: Path, hostile_server: HostileServer
) -> None:
    cfg = write_config(
        tmp_path,
        sources=[
            {"kind": "feed", "name": "slow", "url": hostile_server.url("/trickle"), "timeout": 2},
            samples_source(),
        ],
        subscribers=[ADA],
    )
    started = time.monotonic()
    result = run_digest("run", "--json", "--config", str(cfg))
    assert time.monotonic() - started < 15
    assert result.returncode == 1, result.stderr  # a source failed: the next run tries it again
    report = json.loads(result.stdout)
    slow, samples = report["sources"]
    assert slow["status"] == "failed" and "within 2 s" in slow["error"] and "timeout" in slow["error"]
    assert samples["status"] == "ok" and samples["new"] == 375
    assert report["subscribers"][0]["status"] == "sent"
    assert len(read_maildir(tmp_path / "var" / "outbox")) == 1


# -- 2. one bad paper never costs the others ---------------------------------------------------------------

HOSTILE_JSON = [
    {
        "paper": {
            "id": "2411.00001",
            "title": "Faster speculative decoding",
            "summary": "We draft.",
            "upvotes": 10**23,
        }
    },
    {"paper": {"id": "2411.00002", "title": "Speculative decoding " + "very " * 30_000, "summary": "Long."}},
    {"paper": {"id": "2411.00003", "title": "Odd types", "authors": 5, "upvotes": "many", "publishedAt": 7}},
    {"paper": "not an object"},
    7,
    {"paper": {"title": {"nested": True}, "summary": "a title that is not text"}},
]


def test_absurd_entries_are_cut_clamped_or_skipped_one_by_one(tmp_path: Path) -> None:
    listing = tmp_path / "hostile.json"
    listing.write_text(json.dumps(HOSTILE_JSON), encoding="utf-8")
    cfg = write_config(
        tmp_path,
        sources=[{"kind": "hf-json", "name": "hostile", "path": str(listing)}],
        subscribers=[{"email": "ada@example.org", "keywords": ["speculative decoding"]}],
    )
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        report = pipeline.run_once(Services(settings), store, NOW)
        stored = {p.arxiv_id: p for p in store.papers.recent(datetime(2000, 1, 1, tzinfo=UTC))}
    (source,) = report.sources
    assert (source.papers, source.skipped, source.clamped, source.error) == (3, 3, 2, None)
    assert stored["2411.00001"].upvotes == 10**9  # clamped: SQLite holds it, the email shows it
    assert len(stored["2411.00002"].title) == 1_000  # cut (and the email cuts it to 300)
    assert stored["2411.00003"].upvotes is None and stored["2411.00003"].authors == ()
    (ada,) = report.subscribers
    assert ada.status == Status.SENT and len(ada.matches) == 2
    (message,) = read_maildir(tmp_path / "var" / "outbox")
    html = message.get_body(preferencelist=("html",))
    assert html is not None and len(html.get_content().encode()) < HTML_BUDGET


def test_a_huge_upvote_count_in_a_capture_is_clamped(tmp_path: Path) -> None:
    capture = tmp_path / "capture.txt"
    abstract = "We study speculative decoding for large models and show that it is fast. " * 3
    capture.write_text(f"Daily Papers\nA paper\n{abstract}\n·\nOct 3 {10**23}\n", encoding="utf-8")
    cfg = write_config(tmp_path, sources=[{"kind": "snapshot", "name": "cap", "path": str(capture)}])
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        (source,) = pipeline.ingest(Services(settings), store, NOW)
        (paper,) = store.papers.recent(datetime(2000, 1, 1, tzinfo=UTC))
    assert source.error is None and source.clamped == 1 and paper.upvotes == 10**9


def _digest(*papers: Paper) -> Digest:
    sub = Subscriber("ada@example.org", "Ada", Profile(("decoding",)))
    return Digest(sub, tuple(Match(p, 1) for p in papers), date(2026, 11, 23))


def test_the_first_paper_always_fits_and_an_empty_digest_is_never_made() -> None:
    renderer = Renderer(sender="Digest <d@example.org>", html_budget=1_000)  # smaller than any email
    papers = [
        Paper(f"Decoding {i}", "An abstract about decoding. " * 20, arxiv_id=f"2411.0000{i}")
        for i in range(3)
    ]
    composed = renderer.compose(_digest(*papers), NOW)
    assert [m.paper.title for m in composed.digest.matches] == ["Decoding 0"] and composed.digest.more == 2
    with pytest.raises(RenderError, match="no paper"):
        renderer.compose(_digest(), NOW)


def test_a_title_only_paper_with_a_huge_title_makes_a_short_search_link() -> None:
    paper = Paper("word " * 30_000, "abstract")
    assert len(paper.page_url) < 1_000


# -- 8. secrets never print ------------------------------------------------------------------------------


def test_credentials_in_a_source_url_never_print(tmp_path: Path, hostile_server: HostileServer) -> None:
    host = hostile_server.base.removeprefix("http://")
    url = f"http://ada:s3cret@{host}/missing?api_key=TOPSECRET&cat=cs.CL"
    cfg = write_config(tmp_path, sources=[{"kind": "feed", "name": "arxiv", "url": url}], subscribers=[ADA])
    for args in (["-vv", "run", "--json"], ["-v", "run"], ["ingest", "--json"]):
        result = run_digest(*args, "--config", str(cfg))
        shown = result.stdout + result.stderr
        assert result.returncode == 1, shown
        assert "404" in shown and "api_key=***" in shown and "ada:***@" in shown
        assert "s3cret" not in shown and "TOPSECRET" not in shown


def test_a_source_takes_its_token_from_the_environment(tmp_path: Path, hostile_server: HostileServer) -> None:
    hostile_server.token = "Bearer abc123"
    hostile_server.body = json.dumps(HOSTILE_JSON[:1]).encode()
    source = {"kind": "hf-json", "name": "hf", "url": hostile_server.url("/auth")}
    cfg = write_config(tmp_path, sources=[source], subscribers=[ADA])
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write('[sources.headers_from_env]\nAuthorization = "HF_AUTH"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "HF_AUTH"))}
    missing = run_digest("ingest", "--json", "--config", str(cfg), env=env)
    assert missing.returncode == 1 and "HF_AUTH" in missing.stdout and "is not set" in missing.stdout
    fine = run_digest("ingest", "--json", "--config", str(cfg), env={**env, "HF_AUTH": "Bearer abc123"})
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert json.loads(fine.stdout)[0]["papers"] == 1 and "abc123" not in fine.stdout + fine.stderr


# -- 11. a file that is not a listing ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["README.md", "CHANGELOG.md"])
def test_a_file_that_is_not_a_listing_is_refused_not_mailed(tmp_path: Path, name: str) -> None:
    cfg = write_config(
        tmp_path,
        sources=[{"kind": "snapshot", "name": "notes", "path": str(REPO / name)}],
        subscribers=[{"email": "bob@example.org"}],  # trending: would get any "paper"
    )
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        report = pipeline.run_once(Services(settings), store, NOW)
        assert count_papers(store) == 0
    (source,) = report.sources
    assert source.error is not None and "not a Daily Papers listing" in source.error and name in source.error
    assert [s.status for s in report.subscribers] == [Status.NOTHING_NEW]
