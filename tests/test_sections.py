"""A digest in sections: papers grouped by why they came, each section within the reader's cap, in the
email's HTML and text parts and in the manage page's preview; and how much upvotes count."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path

import httpx
from conftest import FIXTURES, read_maildir, samples_source, served_config, write_config
from running import cli, digest_env, web

from digest.models import Paper, Profile, Subscriber
from digest.profiles import from_form
from digest.selection.index import PaperIndex
from digest.selection.sections import TITLES, arranged, section_of
from digest.web.forms import profile_form

READER = {
    "email": "ada@example.org",
    "keywords": ["LLM*", "language model*"],
    "authors": ["T. Kumar"],
    "about": "efficient LLM inference: KV-cache compression and quantization of large language models",
    "max_papers": 8,
    "sections": {"keywords": 2, "trending": 2},
}


def _headings(text: str) -> list[str]:
    """The section headings of a text part: a line underlined with dashes."""
    lines = text.splitlines()
    return [a for a, b in itertools.pairwise(lines) if b and set(b) == {"-"} and len(b) == len(a)]


def _under(text: str, heading: str) -> list[str]:
    """The numbered titles' first lines under one heading of a text part."""
    part = text.split(f"{heading}\n{'-' * len(heading)}", 1)[1]
    part = re.split(r"\n(?=\S[^\n]*\n-+\n)", part, maxsplit=1)[0]
    return re.findall(r"^\d+\. (.+)$", part, flags=re.MULTILINE)


def test_the_email_groups_papers_by_why_they_came_within_each_cap(tmp_path: Path) -> None:
    sources = [samples_source(), {"kind": "feed", "name": "arxiv", "path": str(FIXTURES / "arxiv_cs_CL.rss")}]
    cfg = write_config(tmp_path, sources=sources, subscribers=[READER])
    report = json.loads(cli("run", "--json", "--config", str(cfg)).check().stdout)
    (sent,) = report["subscribers"]
    (mail,) = read_maildir(tmp_path / "var" / "outbox")
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    order = [TITLES[s] for s in ("authors", "keywords", "similar", "trending")]
    assert _headings(text) == order
    assert re.findall(r'<h2 class="section-title"[^>]*>([^<]+)</h2>', html) == order
    assert _under(text, "Authors you follow") == ["Scaling Laws for Precision"]
    assert len(_under(text, "Your keywords")) == 2  # the cap, on a day with more keyword matches
    trending = _under(text, "Trending in your area")
    assert 1 <= len(trending) <= 2 and text.count("trending in your area") == len(trending)
    assert len(sent["papers"]) == 8 and sent["status"] == "sent"
    # Numbered in the order shown: More / Less like this and Save name the paper the reader sees.
    assert [int(n) for n in re.findall(r"^(\d+)\. ", text, flags=re.MULTILINE)] == list(range(1, 9))
    assert re.search(r"\d+ more papers? matched", text)  # what the caps left out is counted


def test_the_preview_shows_the_same_sections(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path)
    cli("subscribe", "ada@example.org", "-k", "diffusion", "--config", str(cfg)).check()
    cli("run", "--config", str(cfg)).check()
    (mail,) = read_maildir(tmp_path / "var" / "outbox")
    found = re.search(r'href="http://127\.0\.0\.1:\d+(/m/[^"]+)"', mail.get_body(("html",)).get_content())
    assert found
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        page = client.get(found.group(1))
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token and 'name="cap_keywords"' in page.text and 'name="upvotes"' in page.text
        asked = {
            "csrf": token.group(1),
            "keywords": "LLM*\nlanguage model*",
            "about": READER["about"],
            "max_papers": "6",
            "cap_keywords": "2",
            "cap_trending": "1",
        }
        preview = client.post(f"{found.group(1)}/preview", data=asked).text
    titles = re.findall(r'<h3 class="section-title">([^<]+)</h3>', preview)
    assert titles == [TITLES["keywords"], TITLES["similar"], TITLES["trending"]]
    keyword_part = preview.split(TITLES["similar"])[0]
    assert keyword_part.count("<li>") == 2


def test_a_cap_gives_its_room_to_the_other_sections_and_trending_adds_popular_papers() -> None:
    papers = [Paper(f"RAG paper {i}", "About RAG.", arxiv_id=f"2411.0000{i}", upvotes=i) for i in range(5)]
    papers += [
        Paper(f"Popular {i}", "Nothing of yours.", arxiv_id=f"2411.1000{i}", upvotes=100 + i)
        for i in range(3)
    ]
    pool = PaperIndex([replace(p, ref=n) for n, p in enumerate(papers, 1)])
    plain = arranged(pool, Profile(keywords=("RAG",), max_papers=4))
    assert [section_of(m) for m in plain.matches] == ["keywords"] * 4 and plain.more == 1
    capped = arranged(
        pool, Profile(keywords=("RAG",), max_papers=4, sections=(("keywords", 2), ("trending", 2)))
    )
    assert [section_of(m) for m in capped.matches] == ["keywords", "keywords", "trending", "trending"]
    assert [m.paper.title for m in capped.matches[2:]] == ["Popular 2", "Popular 1"]
    assert (
        capped.more == 3 and len(capped.rest) == 3
    )  # the capped keyword papers lead the page of all matches
    # A trending cap never makes a digest of trending papers alone.
    assert arranged(pool, Profile(keywords=("nothing here",), sections=(("trending", 3),))).matches == ()


def test_how_much_upvotes_count_is_the_readers_choice() -> None:
    quiet = Paper("RAG in the title", "Retrieval.", arxiv_id="2411.00001", upvotes=0, ref=1)
    loud = Paper("A paper", "We study RAG.", arxiv_id="2411.00002", upvotes=900, ref=2)
    pool = PaperIndex([quiet, loud])
    first = [arranged(pool, Profile(keywords=("RAG",), upvotes=w)).matches[0].paper for w in (0.0, 1.0)]
    assert first == [quiet, loud]


def test_sections_upvotes_and_updates_round_trip_through_the_cli_and_the_form(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()])
    asked = ["--section", "keywords=5", "--section", "trending=2", "--upvotes", "0.5", "--no-updates"]
    cli("subscribe", "ada@example.org", "-k", "RAG", *asked, "--config", str(cfg)).check()
    (stored,) = json.loads(cli("subscribers", "--json", "--config", str(cfg)).check().stdout)
    assert (stored["sections"], stored["upvotes"], stored["updates"]) == (
        {"keywords": 5, "trending": 2},
        0.5,
        False,
    )
    bad = cli("subscribe", "ada@example.org", "-k", "RAG", "--section", "news=5", "--config", str(cfg))
    assert bad.returncode == 2 and "no section 'news'" in bad.stderr
    profile = Profile(keywords=("RAG",), sections=(("keywords", 5),), upvotes=0.25, updates=False)
    form = {**profile_form(Subscriber("a@b.org", profile=profile)), "has_updates": "yes"}
    again = from_form(form)
    assert (again["sections"], again["upvotes"], again["updates"]) == ({"keywords": 5}, 0.25, False)
