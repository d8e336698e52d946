"""Following authors: the name forms that must match one person, and those that must not (two people)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import mails_to, write_config
from running import cli

from digest.authors import followable, name_of, same_person
from digest.errors import ProfileError
from digest.profiles import profile_from_form
from digest.web.forms import form_error

SAME = [  # (the name a reader follows, as a paper's author list writes it)
    ("Yann LeCun", "Yann LeCun"),
    ("Yann LeCun", "yann lecun"),
    ("Y. LeCun", "Yann LeCun"),
    ("Yann LeCun", "Y. LeCun"),
    ("Yann LeCun", "Yann A. LeCun"),
    ("Y. A. LeCun", "Yann LeCun"),
    ("LeCun, Yann", "Yann LeCun"),
    ("Yann LeCun", "LeCun, Y."),
    ("Ana Müller", "Ana Muller"),
    ("Muller, Ana", "ANA MÜLLER"),
    ("Jean-Pierre Dupont", "J.-P. Dupont"),
    ("Jean-Pierre Dupont", "Jean Pierre Dupont"),
    ("José Núñez", "Jose Nunez"),
    ("Ludwig van Beethoven", "L. van Beethoven"),
    ("Benjamin F. Spector", "Benjamin Spector"),
    ("Tanishq Kumar", "T. Kumar"),
]
DIFFERENT = [
    ("Yann LeCun", "Yannick LeCun"),  # two given names written out, not the same
    ("Y. LeCun", "X. LeCun"),
    ("Ana Müller", "Anna Müller"),
    ("J. A. Smith", "John B. Smith"),  # the middle initials differ
    ("Yann LeCun", "Yann Lecunn"),
    ("Yann LeCun", "LeCun"),  # a surname alone is many people
    ("Ludwig van Beethoven", "Ludwig Beethoven"),  # "van" is part of the surname
    ("Tanishq Kumar", "Kumar Tanishq"),
]


@pytest.mark.parametrize(("followed", "written"), SAME)
def test_the_forms_of_one_name_are_one_person(followed: str, written: str) -> None:
    a, b = name_of(followed), name_of(written)
    assert a is not None and b is not None and same_person(a, b)


@pytest.mark.parametrize(("followed", "written"), DIFFERENT)
def test_people_who_share_a_surname_stay_apart(followed: str, written: str) -> None:
    a, b = name_of(followed), name_of(written)
    assert a is None or b is None or not same_person(a, b)


def test_a_followed_name_needs_a_given_name_or_initial() -> None:
    assert followable("LeCun") and followable("") and followable("x" * 101)
    assert followable("Y. LeCun") is None and followable("LeCun, Y.") is None


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_a_followed_author_brings_their_papers_with_the_reason_by_name(tmp_path: Path) -> None:
    """The arXiv RSS and HF JSON captures carry author lists: a reader following "T. Kumar" gets Tanishq
    Kumar's paper with the reason "by Tanishq Kumar" in the report, the email and the manage preview; one
    following "Tanishq Kumarr" or a namesake gets nothing of his."""
    sources = [
        {"kind": "feed", "name": "arxiv", "path": str(FIXTURES / "arxiv_cs_CL.rss")},
        {"kind": "hf-json", "name": "hf", "path": str(FIXTURES / "hf_daily_papers.json")},
    ]
    readers = [
        {"email": "ada@example.org", "authors": ["T. Kumar"]},
        {"email": "bob@example.org", "authors": ["Tanishq Kumarr", "Zoe Kumar"]},
        {"email": "cy@example.org", "keywords": ["diffusion"], "authors": ["Kumar, Tanishq"]},
    ]
    cfg = write_config(tmp_path, sources=sources, subscribers=readers)
    report = json.loads(cli("run", "--json", "--config", str(cfg)).check().stdout)
    by = {s["email"]: s for s in report["subscribers"]}
    (paper,) = by["ada@example.org"]["papers"]
    assert paper["id"] == "2411.04330" and paper["reasons"] == ["by Tanishq Kumar"]
    assert by["bob@example.org"]["status"] == "nothing-new"
    cy = {p["id"]: p["reasons"] for p in by["cy@example.org"]["papers"]}
    assert cy["2411.04330"] == ["by Tanishq Kumar"] and len(cy) > 1  # besides the diffusion papers
    mail = next(m for m in mails_to(tmp_path, "ada@example.org"))
    assert "by Tanishq Kumar" in mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert re.search(
        r'<p class="meta"[^>]*><mark[^>]*>Tanishq Kumar</mark>, Zachary Ankner', html
    )  # his name marked
    other = next(m for m in mails_to(tmp_path, "cy@example.org")).get_body(("html",)).get_content()
    assert len(re.findall(r"<mark[^>]*>Tanishq Kumar</mark>", other)) == 1  # only on his paper


def test_every_way_in_takes_authors_and_refuses_a_surname_alone(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cli(
        "subscribe",
        "ada@example.org",
        "--author",
        "Yann LeCun",
        "--author",
        "LeCun, Y.",
        "--config",
        str(cfg),
    ).check()
    (ada,) = json.loads(cli("subscribers", "--json", "--config", str(cfg)).stdout)
    assert ada["authors"] == ["Yann LeCun", "LeCun, Y."]
    alone = cli("subscribe", "bob@example.org", "--author", "LeCun", "--config", str(cfg))
    assert alone.returncode == 2 and "first name or an initial" in alone.stderr
    with pytest.raises(ProfileError) as refused:
        profile_from_form({"authors": "Yann LeCun\nLeCun"}, "a@b.org")
    assert form_error(refused.value).text == (
        "Authors you follow: “LeCun”: give a first name or an initial with the surname (many people share one)."
    )


def test_the_manage_page_follows_authors_with_a_live_preview(tmp_path: Path) -> None:
    import re

    import httpx
    from conftest import TEST_SECRET_KEY, free_port
    from running import digest_env, web

    from digest.tokens import Purpose, Signer

    port = free_port()
    source = {"kind": "feed", "name": "arxiv", "path": str(FIXTURES / "arxiv_cs_CL.rss")}
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, sources=[source])
    cli("subscribe", "ada@example.org", "-k", "retrieval", "--config", str(cfg)).check()
    cli("ingest", "--config", str(cfg)).check()
    url = f"/m/{Signer([TEST_SECRET_KEY]).make(Purpose.MANAGE, 'ada@example.org')}"
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        page = client.get(url)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf and 'id="authors"' in page.text
        form = {"csrf": csrf.group(1), "keywords": "retrieval", "authors": "Kumar, T.", "max_papers": "5"}
        preview = client.post(f"{url}/preview", data=form)
        assert "by Tanishq Kumar" in preview.text
        saved = client.post(url, data={**form, "action": "save"})
        assert saved.status_code == 200 and ">Kumar, T.</textarea>" in saved.text
    (ada,) = json.loads(cli("subscribers", "--json", "--config", str(cfg)).stdout)
    assert ada["authors"] == ["Kumar, T."]


def test_arxiv_categories_narrow_and_exclude_with_cross_lists(tmp_path: Path) -> None:
    """A capture with cross-lists: categories kept (primary first), a reader narrowed to cs.CL gets the
    cs.CL papers (and those whose listing gives no category) with the reason "in cs.CL"; stat.* narrows to
    the cross-listed stat.ML paper; an excluded category always wins."""
    from digest.sources.feed import parse_feed

    listing = FIXTURES / "arxiv_cross_lists.rss"
    found, skipped = parse_feed(listing.read_bytes(), source="arxiv")
    papers = [p for p in found if not p.revision]
    assert [p.categories for p in papers] == [("cs.CL", "cs.LG"), ("cs.CV", "cs.LG"), ("stat.ML", "cs.LG")]
    assert skipped == 0 and [p.arxiv_id for p in found if p.revision] == [
        "2301.10004"
    ]  # the replace announcement
    sources = [
        {"kind": "feed", "name": "lg", "path": str(listing)},
        {"kind": "hf-json", "name": "hf", "path": str(FIXTURES / "hf_daily_papers.json")},
    ]
    readers = [
        {"email": "cl@example.org", "keywords": ["language model*"], "categories": ["cs.CL"]},
        {"email": "stat@example.org", "keywords": ["language model*"], "categories": ["stat.*"]},
        {"email": "nocv@example.org", "keywords": ["model*"], "exclude_categories": ["cs.CV"]},
        {"email": "lg@example.org", "categories": ["cs.LG"]},  # the trending papers of cs.LG
    ]
    cfg = write_config(tmp_path, sources=sources, subscribers=readers)
    report = json.loads(cli("run", "--json", "--config", str(cfg)).check().stdout)
    got = {s["email"]: {p["id"]: p["reasons"] for p in s["papers"]} for s in report["subscribers"]}
    assert got["cl@example.org"]["2411.10001"] == ["matched: language model*", "in cs.CL"]
    assert "2411.10003" not in got["cl@example.org"]  # stat.ML and cs.LG: not cs.CL
    assert got["stat@example.org"]["2411.10003"] == ["matched: language model*", "in stat.ML"]
    assert "2411.10001" not in got["stat@example.org"]
    assert "2411.10002" not in got["nocv@example.org"] and "2411.10001" in got["nocv@example.org"]
    lg = got["lg@example.org"]
    assert {"2411.10001", "2411.10002", "2411.10003"} <= set(lg)
    assert all(lg[k] == ["in cs.LG"] for k in ("2411.10001", "2411.10002", "2411.10003"))
    hf_only = {p.arxiv_id for p in papers} ^ set(lg)  # the HF papers: no categories known, so they stay in
    assert hf_only and all(lg[k] == [] for k in hf_only)
