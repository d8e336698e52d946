"""Snapshot, feed and hf-json sources, files and URLs (a real local HTTP server)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from conftest import FIXTURES, SAMPLES, HttpServer, Route

from digest import sources
from digest.config_tables import SourceConfig
from digest.errors import FetchError, ParseError
from digest.models import Paper, Validators
from digest.sources.feed import parse_feed
from digest.sources.fetch import fetch_url
from digest.sources.hfjson import parse_hf_json
from digest.sources.snapshot import CHROME, parse_date_line, parse_snapshot

TODAY = date(2025, 11, 22)
# SHA-256 of the five listing captures as shared/seeds holds them (checked equal when they were bundled):
# the bundled copies must never be edited, and this test needs nothing outside the repository.
SEED_SHA256 = {
    "000_139fa2c065c6114c.txt": "6b63ad0d7432181f45aeede424a136809c2f7a3e21365a8fce6ac0410c7f4c63",
    "001_14e05f190fcf1287.txt": "cd60be7cc259e1357f63f610ad75ad732ea314e937455f5ff6f57c452e5e923e",
    "002_79799d0b6ad587f2.txt": "6cf7af76c4dbe57fada064de30caece422a5029a97c52674b51ea50d327c8ded",
    "003_cdd852f9cb2dcced.txt": "9148bcc55a3ae600711d8149db52d43bb87f81e6c2af9f9f9e0032bbbbe7b92a",
    "004_48bc3fd47b6a2484.txt": "5b19683f90ec0072260be98210ae39cda4cd8d3ff5375f660514c1861d5addf2",
}


def all_seed_papers() -> list[Paper]:
    out: list[Paper] = []
    for f in sorted(SAMPLES.glob("*.txt")):
        out.extend(parse_snapshot(f.read_text(encoding="utf-8"), source="s", today=TODAY))
    return out


def test_the_five_seeds_hold_511_entries_and_375_distinct_papers() -> None:
    papers = all_seed_papers()
    assert len(papers) == 511
    assert len({p.key for p in papers}) == 375


def test_per_file_entry_counts() -> None:
    counts = [
        len(parse_snapshot(f.read_text(encoding="utf-8"), source="s", today=TODAY))
        for f in sorted(SAMPLES.glob("*.txt"))
    ]
    assert counts == [204, 77, 73, 94, 63]


def test_bundled_samples_are_the_shared_seeds_unchanged() -> None:
    import hashlib

    found = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(SAMPLES.glob("*.txt"))}
    assert found == SEED_SHA256


def test_page_chrome_never_becomes_a_paper() -> None:
    for p in all_seed_papers():
        assert p.title not in CHROME
        assert not p.title.startswith("Subscribe")
        assert parse_date_line(p.title, TODAY) is None, p.title
        assert len(p.abstract) > len(p.title) or len(p.abstract) > 100


def test_glued_subscribe_is_split_from_the_first_title() -> None:
    first = parse_snapshot((SAMPLES / "000_139fa2c065c6114c.txt").read_text(), source="s", today=TODAY)[0]
    assert first.title == "Functional Bayesian Tucker Decomposition for Continuous-indexed Tensor Data"
    assert first.abstract.startswith("Tucker decomposition is a powerful tensor model")


def test_org_author_count_date_and_upvotes() -> None:
    papers = parse_snapshot((SAMPLES / "001_14e05f190fcf1287.txt").read_text(), source="s", today=TODAY)
    by_title = {p.title.split(" -- ")[0].split(":")[0]: p for p in papers}
    rxt = by_title["Reactive Transformer (RxT)"]
    assert (rxt.org, rxt.author_count, rxt.published, rxt.upvotes) == (
        "ReactiveAI Reactive AI",
        None,
        date(2025, 10, 3),
        2,
    )
    stream = by_title["StreamAdapter"]
    assert (stream.org, stream.author_count, stream.published, stream.upvotes) == (
        None,
        14,
        date(2024, 11, 14),
        None,
    )
    assert stream.byline == "14 authors"
    video = papers[-1]
    assert video.title == "Video-T1: Test-Time Scaling for Video Generation"
    assert (video.author_count, video.published, video.upvotes) == (6, date(2025, 3, 24), 1)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Oct 3 2", (date(2025, 10, 3), 2)),
        ("Nov 14, 2024", (date(2024, 11, 14), None)),
        ("Aug 2, 2024 4", (date(2024, 8, 2), 4)),
        ("Jul 22 10", (date(2025, 7, 22), 10)),
        ("Dec 30", (date(2024, 12, 30), None)),  # later than today in this year: last year
        ("Feb 30", None),
        ("Octo 3", None),
        ("Scaling Laws for Precision", None),
    ],
)
def test_date_lines(line: str, expected: tuple[date, int | None] | None) -> None:
    assert parse_date_line(line, TODAY) == expected


def test_bom_and_crlf_line_ends_parse_the_same() -> None:
    raw = (SAMPLES / "001_14e05f190fcf1287.txt").read_text(encoding="utf-8")
    mangled = ("\ufeff" + raw.replace("\n", "\r\n")).encode("utf-8")
    plain, _ = sources.parse("snapshot", raw.encode(), source="s", today=TODAY)
    crlf, _ = sources.parse("snapshot", mangled, source="s", today=TODAY)
    assert crlf == plain
    assert len(crlf) == 77


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML page"),
        (b"Daily Papers\nSubscribe\n", "no paper entries"),
        (b"\xff\xfe\x00broken", "not UTF-8"),
    ],
)
def test_snapshot_that_is_no_listing_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason) as info:
        sources.parse("snapshot", body, source="hf-daily", today=TODAY)
    assert info.value.source == "hf-daily"
    assert "hf-daily" in str(info.value)


# -- feeds -------------------------------------------------------------------------------------------


def test_arxiv_rss_new_and_cross_are_papers_replacements_are_revisions() -> None:
    found, skipped = parse_feed((FIXTURES / "arxiv_cs_CL.rss").read_bytes(), source="arxiv")
    assert skipped == 0
    papers = [p for p in found if not p.revision]
    assert [p.arxiv_id for p in papers] == ["2411.04330", "2410.11744", "2411.09999"]
    assert [p.version for p in papers] == [1, 2, 1]
    revised = [(p.arxiv_id, p.version) for p in found if p.revision]
    assert revised == [("2301.00001", 3), ("2302.00002", 2)]  # replace and replace-cross, with their versions
    first = papers[0]
    assert first.title == "Scaling Laws for Precision"
    assert first.abstract.startswith("Low precision training and inference")
    assert "Announce Type" not in first.abstract and "arXiv:" not in first.abstract
    assert first.authors[:2] == ("Tanishq Kumar", "Zachary Ankner")
    assert len(first.authors) == 5
    assert first.published == date(2024, 11, 18)
    assert first.page_url == "https://arxiv.org/abs/2411.04330"
    assert papers[2].authors == ("Mallory Example", "Eve Example")


def test_feed_markup_becomes_plain_text() -> None:
    found, _ = parse_feed((FIXTURES / "arxiv_cs_CL.rss").read_bytes(), source="arxiv")
    hostile = [p for p in found if not p.revision][2]
    assert hostile.title == "Markup <script>alert(1)</script> in a Title"  # kept as text, escaped at render
    assert hostile.abstract == "An abstract with bold markup & an ampersand."


def test_atom_feed_authors_and_version_stripped_id() -> None:
    papers, skipped = parse_feed((FIXTURES / "arxiv_api.atom").read_bytes(), source="api")
    assert skipped == 0
    (p,) = papers
    assert p.arxiv_id == "2402.01528"
    assert p.authors == ("Minghao Yan", "Saurabh Agarwal", "Shivaram Venkataraman")
    assert p.published == date(2024, 2, 2)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"<html><head><title>Error</title></head><body>Service unavailable</body></html>", "HTML page"),
        (b"<?xml version='1.0'?><rss version='2.0'><channel><item><title>x</ti", "malformed feed XML"),
        (b"just some text", "not an RSS or Atom feed"),
    ],
)
def test_broken_feeds_are_parse_errors(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_feed(body, source="arxiv")


# -- hf json -----------------------------------------------------------------------------------------


def test_hf_daily_papers_json() -> None:
    papers, skipped = parse_hf_json((FIXTURES / "hf_daily_papers.json").read_bytes(), source="hf")
    assert skipped == 1  # the entry without a title
    assert [(p.arxiv_id, p.upvotes) for p in papers] == [("2411.04330", 31), ("2502.09992", 105)]
    assert [p.version for p in papers] == [None, 2]  # "2502.09992v2": the version the listing shows
    assert papers[0].authors == ("Tanishq Kumar", "Zachary Ankner")
    assert papers[0].published == date(2024, 11, 7)
    assert papers[1].hf_url == "https://huggingface.co/papers/2502.09992"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html></html>", "HTML page"),
        (b'{"error": "x"}', "JSON list"),
        (b"[1,", "not valid JSON"),
    ],
)
def test_broken_hf_json_is_a_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse_hf_json(body, source="hf")


# -- fetching over real HTTP -------------------------------------------------------------------------


def test_conditional_get_uses_etag_and_last_modified(http_server: HttpServer) -> None:
    body = (FIXTURES / "arxiv_cs_CL.rss").read_bytes()
    http_server.routes["/rss"] = Route(body, etag='"v1"', last_modified="Mon, 18 Nov 2024 05:00:00 GMT")
    first = fetch_url(http_server.url("/rss"), source="arxiv", timeout=5)
    assert first.body == body and not first.not_modified
    assert first.validators == Validators('"v1"', "Mon, 18 Nov 2024 05:00:00 GMT")
    second = fetch_url(http_server.url("/rss"), source="arxiv", timeout=5, validators=first.validators)
    assert second.not_modified and second.body == b""
    sent_headers = http_server.requests[-1][1]
    assert sent_headers["If-None-Match"] == '"v1"'
    assert sent_headers["If-Modified-Since"] == "Mon, 18 Nov 2024 05:00:00 GMT"
    assert sent_headers["User-Agent"].startswith("digest/")


def test_http_error_status_is_a_fetch_error(http_server: HttpServer) -> None:
    http_server.routes["/down"] = Route(b"oops", status=503)
    with pytest.raises(FetchError, match=r"HTTP 503"):
        fetch_url(http_server.url("/down"), source="arxiv", timeout=5)
    with pytest.raises(FetchError, match=r"HTTP 404"):
        fetch_url(http_server.url("/missing"), source="arxiv", timeout=5)


def test_timeout_is_a_fetch_error(http_server: HttpServer) -> None:
    http_server.routes["/slow"] = Route(b"late", delay=2.0)
    with pytest.raises(FetchError, match=r"no complete answer .* within 0.3 s"):
        fetch_url(http_server.url("/slow"), source="arxiv", timeout=0.3)


def test_unreachable_host_is_a_fetch_error() -> None:
    from conftest import free_port

    with pytest.raises(FetchError, match="could not fetch"):
        fetch_url(f"http://127.0.0.1:{free_port()}/rss", source="arxiv", timeout=2)


def test_load_url_source_end_to_end(http_server: HttpServer) -> None:
    http_server.routes["/hf.json"] = Route((FIXTURES / "hf_daily_papers.json").read_bytes(), etag='"e"')
    cfg = SourceConfig(kind="hf-json", name="hf", url=http_server.url("/hf.json"))
    loaded = sources.load(cfg, None, TODAY)
    assert len(loaded.papers) == 2 and loaded.validators == Validators('"e"', None)
    again = sources.load(cfg, loaded.validators, TODAY)
    assert again.not_modified and again.papers == []


def test_path_glob_with_no_match_is_a_fetch_error(tmp_path: Path) -> None:
    cfg = SourceConfig(kind="snapshot", name="local", path=str(tmp_path / "*.txt"))
    with pytest.raises(FetchError, match="no file matches"):
        sources.load(cfg, None, TODAY)
