"""The reader's library on a real socket (uvicorn in a thread, as `digest serve`), real SQLite and a real
Maildir: a profile is only changed by its owner on purpose (a sign-up again, a lost link, leaving and
coming back, pausing until a date), and the data download holds everything kept.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TEST_SECRET_KEY, mails_to, served_config
from running import cli, digest_env, web

from digest.run import pipeline, planning
from digest.settings import load_settings
from digest.store import Store
from digest.subscriptions import Request as SignupRequest
from digest.tokens import Purpose, Signer
from digest.wiring import Services

SIGNER = Signer([TEST_SECRET_KEY])
GRACE = {"email": "grace@example.org", "keywords": ["reasoning"], "max_papers": 3}
ADA_PROFILE = ["-k", "speculative decoding", "--about", "fast LLM inference", "--cadence", "weekdays"]


def _readers(cfg: Path) -> dict[str, dict[str, Any]]:
    out = cli("subscribers", "--all", "--json", "--config", str(cfg))
    return {s["email"]: s for s in json.loads(out.stdout)}


def _csrf(client: httpx.Client, path: str = "/") -> str:
    page = client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and found, page.text
    return found.group(1)


def _link(mail: Any, kind: str) -> str | None:
    found = re.search(rf"(http://127\.0\.0\.1:\d+/{kind}/\S+)", mail.get_body(("plain",)).get_content())
    return found.group(1) if found else None


def _answer(text: str, email: str) -> str:
    """A page's heading and lines with the address taken out: what must not tell one address from another."""
    main = re.search(r"<main>(.*?)</main>", text, re.S)
    assert main
    return main.group(1).replace(email, "ADDRESS")


def test_signing_up_again_never_replaces_a_profile(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path)
    cli("subscribe", "ada@example.org", *ADA_PROFILE, "--config", str(cfg)).check()
    before = _readers(cfg)["ada@example.org"]
    # A confirmation link asked for before she subscribed, followed after: it must not replace her profile.
    early = SignupRequest.from_form({"email": "ada@example.org", "keywords": "diffusion"})
    early_link = f"/c/{SIGNER.make_timed(Purpose.CONFIRM, early.token_data(datetime.now(UTC)))}"
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        token = _csrf(client)
        again = client.post("/", data={"csrf": token, "email": "ADA@example.org", "keywords": "diffusion"})
        new = client.post("/", data={"csrf": token, "email": "zoe@example.org", "keywords": "diffusion"})
        assert again.status_code == new.status_code == 200
        assert _answer(again.text, "ADA@example.org") == _answer(
            new.text, "zoe@example.org"
        )  # no enumeration
        (mail,) = mails_to(tmp_path, "ADA@example.org", expect=1)
        assert (
            str(mail["Subject"]) == "Your paper digest"
            and "nothing changed" in mail.get_body(("plain",)).get_content()
        )
        assert _link(mail, "c") is None  # no confirmation link: nothing to replace her profile with
        page_link = _link(mail, "m")
        assert page_link and "speculative decoding" in client.get(page_link).text
        assert (
            '<html lang="en"><head><meta charset="utf-8"><title>Your paper digest</title>'
            in mail.get_body(("html",)).get_content()
        )
        (zoe,) = mails_to(tmp_path, "zoe@example.org", expect=1)
        assert _link(zoe, "c")  # a new address still confirms first

        shown = client.get(early_link)
        assert shown.status_code == 200 and "weekdays" not in shown.text and "diffusion" in shown.text
        done = client.post(early_link)
        assert done.status_code == 200 and "You already have a digest" in done.text and "/m/" in done.text
    assert _readers(cfg)["ada@example.org"] == before


def test_a_lost_link_is_mailed_to_its_owner_only(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path)
    cli("subscribe", "ada@example.org", *ADA_PROFILE, "--config", str(cfg)).check()
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        assert 'href="/lost"' in client.get("/").text
        token = _csrf(client, "/lost")
        known = client.post("/lost", data={"csrf": token, "email": "ada@example.org"})
        unknown = client.post("/lost", data={"csrf": token, "email": "nobody@example.org"})
        assert known.status_code == unknown.status_code == 200
        assert _answer(known.text, "ada@example.org") == _answer(unknown.text, "nobody@example.org")
        (mail,) = mails_to(tmp_path, "ada@example.org", expect=1)
        assert str(mail["Subject"]) == "The link to your paper digest"
        link = _link(mail, "m")
        assert link and "Your paper digest" in client.get(link).text
        assert mails_to(tmp_path, "nobody@example.org") == []

        bad = client.post("/lost", data={"csrf": token, "email": "not an address"})
        assert bad.status_code == 400 and 'aria-invalid="true"' in bad.text
        assert httpx.post(f"{base}/lost", data={"email": "ada@example.org"}).status_code == 403  # no CSRF
        for _ in range(3):  # the per-address limit is the sign-up's: 3 an hour, then silently nothing
            client.post("/lost", data={"csrf": token, "email": "ada@example.org"})
    assert len(mails_to(tmp_path, "ada@example.org", expect=3)) == 3


def test_leaving_then_resubscribing_or_going_weekly_keeps_the_profile(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path, subscribers=[GRACE])
    cli("subscribe", "ada@example.org", *ADA_PROFILE, "--config", str(cfg)).check()
    before = _readers(cfg)["ada@example.org"]
    leave = f"/u/{SIGNER.make(Purpose.UNSUBSCRIBE, 'ada@example.org')}"
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        asked = client.get(leave)
        assert "Get it weekly instead" in asked.text and "Resubscribe" not in asked.text
        gone = client.post(leave, data={"List-Unsubscribe": "One-Click"})
        assert gone.status_code == 200 and "Resubscribe" in gone.text and "Get it weekly instead" in gone.text
        assert _readers(cfg)["ada@example.org"]["active"] is False
        token = re.search(r'name="csrf" value="([^"]+)"', gone.text)
        assert token
        assert httpx.post(f"{base}{leave}/resubscribe").status_code == 403  # only the page's own button
        back = client.post(f"{leave}/resubscribe", data={"csrf": token.group(1)})
        assert back.status_code == 200 and "Your digest is on" in back.text
        assert _readers(cfg)["ada@example.org"] == before

        weekly = client.post(f"{leave}/weekly", data={"csrf": token.group(1)})
        assert weekly.status_code == 200 and "weekly" in weekly.text
        assert _readers(cfg)["ada@example.org"] == {**before, "cadence": "weekly:mon"}
        assert "Get it weekly instead" not in client.get(leave).text  # weekly already

        grace = f"/u/{SIGNER.make(Purpose.UNSUBSCRIBE, 'grace@example.org')}"
        assert "weekly instead" not in client.get(grace).text  # the operator's config owns her schedule
        assert client.post(f"{grace}/weekly", data={"csrf": token.group(1)}).status_code == 400
        assert client.post(f"{leave.replace('/u/', '/m/')}/resubscribe").status_code in (400, 404, 405)


def _run(cfg: Path, now: datetime, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET_KEY)
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        report = pipeline.run_once(Services(settings), store, now, any_hour=True)
    return {r.email: f"{r.status}: {r.note or ''}" for r in report.subscribers}


def test_pause_until_a_date_then_the_digest_comes_again_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, port = served_config(tmp_path)
    cli("subscribe", "ada@example.org", "-k", "reasoning", "--config", str(cfg)).check()
    today = datetime.now(UTC).date()
    until = today + timedelta(days=3)
    url = f"/m/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}"
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        csrf = _csrf(client, url)
        form = {"csrf": csrf, "keywords": "reasoning", "max_papers": "5", "action": "save", "paused": "yes"}
        for wrong in ("soon", today.isoformat(), (today + timedelta(days=400)).isoformat()):
            refused = client.post(url, data={**form, "paused_until": wrong})
            assert refused.status_code == 400 and "Pause until:" in refused.text
        saved = client.post(url, data={**form, "paused_until": until.isoformat()})
        assert saved.status_code == 200 and "Saved." in saved.text
        assert f"paused until {until:%A %d %B %Y}" in saved.text and "Resume my digest" in saved.text
    stored = _readers(cfg)["ada@example.org"]
    assert stored["active"] is True and stored["paused_until"] == until.isoformat()

    noon = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=12)
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:  # `digest schedule` does not wake for a paused reader
        assert planning.due_now(store, noon, settings.default_when(), None).fresh == 0
        assert planning.due_now(store, noon + timedelta(days=3), settings.default_when(), None).fresh == 1
    assert _run(cfg, noon, monkeypatch) == {"ada@example.org": f"waiting: waiting: paused until {until}"}
    assert mails_to(tmp_path, "ada@example.org") == []
    later = _run(cfg, noon + timedelta(days=3), monkeypatch)
    assert later["ada@example.org"].startswith("sent")

    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        csrf = _csrf(client, url)
        client.post(url, data={**form, "csrf": csrf})  # paused with no date: until she resumes
        page = client.get(url)
        assert "Your digest is stopped" in page.text and 'name="paused" value="yes" checked' in page.text
        assert httpx.post(f"{base}{url}/resume").status_code == 403
        resumed = client.post(f"{url}/resume", data={"csrf": csrf}, follow_redirects=True)
        assert resumed.status_code == 200 and "Resume my digest" not in resumed.text  # followed the redirect
    assert (
        _readers(cfg)["ada@example.org"]["active"] is True
        and "paused_until" not in _readers(cfg)["ada@example.org"]
    )


def test_the_data_download_holds_everything_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, port = served_config(tmp_path)
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        client.post("/", data={"csrf": _csrf(client), "email": "ada@example.org", "keywords": "reasoning"})
        (mail,) = mails_to(tmp_path, "ada@example.org", expect=1)
        confirm = _link(mail, "c")
        assert confirm
        client.post(confirm)
    assert _run(cfg, datetime.now(UTC), monkeypatch)["ada@example.org"].startswith("sent")
    digest = next(m for m in mails_to(tmp_path, "ada@example.org") if "Confirm" not in str(m["Subject"]))
    more = re.search(r"(http://127\.0\.0\.1:\d+/f/\S+/more)", digest.get_body(("plain",)).get_content())
    assert more
    url = f"/m/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}"
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        client.post(more.group(1), data={"csrf": _csrf(client, more.group(1))})
        data = client.get(f"{url}/data.json").json()
    assert data["keywords"] == ["reasoning"] and data["sent"]
    asked, confirmed = datetime.fromisoformat(data["signed_up"]), datetime.fromisoformat(data["created"])
    assert asked <= confirmed <= datetime.fromisoformat(data["updated"])
    (rating,) = data["ratings"]
    assert rating["kind"] == "more" and rating["id"] in {r["id"] for r in data["sent"]}
    assert date.fromisoformat(rating["at"][:10]) == datetime.now(UTC).date()


def test_past_digests_and_all_of_a_days_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, port = served_config(tmp_path)
    cli("subscribe", "ada@example.org", "-k", "model", "--max", "3", "--config", str(cfg)).check()
    report = json.loads(cli("run", "--json", "--config", str(cfg)).check().stdout)
    (ada,) = report["subscribers"]
    (mail,) = mails_to(tmp_path, "ada@example.org")
    text = mail.get_body(("plain",)).get_content()
    more = re.search(r"(\d+) more papers matched; see them all now[^\n]*\n[^\n]*\n\s+(http\S+/all)", text)
    archive = re.search(r"Past digests:\s+(http\S+/archive)", text)
    assert more and archive, text
    assert f'href="{more.group(2)}"' in mail.get_body(("html",)).get_content()
    matched = 3 + int(more.group(1))
    with web(cfg, port, digest_env()), httpx.Client() as client:
        page = client.get(more.group(2))
        assert page.status_code == 200 and f"All {matched} matches of " in page.text
        titles = re.findall(r'<a class="t" href="[^"]+">(.*?)</a>', page.text, re.S)
        assert len(titles) == min(matched, 3 + 100)
        sent = [re.sub(r"</?mark>", "", t) for t in titles[:3]]
        assert sent == [p["title"] for p in ada["papers"]]  # the digest's papers first, in its order
        assert page.text.count("in your digest") == 3 and page.text.count("matched: model") == len(titles)
        assert "<mark>" in page.text

        past = client.get(archive.group(1))
        assert past.status_code == 200 and "Your past digests" in past.text
        assert (
            past.headers["etag"].startswith('W/"archive-') and "no-store" not in past.headers["cache-control"]
        )
        assert (
            client.get(archive.group(1), headers={"If-None-Match": past.headers["etag"]}).status_code == 304
        )
        (row,) = re.findall(r"<tr>\s*<td><a href=\"(/v/[^\"]+)\">", past.text)
        assert f'href="{row}/all">{matched} matched</a>' in past.text
        shown = client.get(f"http://127.0.0.1:{port}{row}")
        assert shown.status_code == 200 and "View in a browser" not in shown.text  # no link to itself
        assert "Past digests" in shown.text
        assert client.get(more.group(2)[:-6] + "xx/all").status_code == 400  # altered
        other = f"/v/{SIGNER.make(Purpose.VIEW, 'zoe@example.org', date.today())}/all"
        assert client.get(f"http://127.0.0.1:{port}{other}").status_code == 404
        manage = client.get(f"http://127.0.0.1:{port}/m/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}")
        assert '/archive">Past digests</a>' in manage.text


ATOM_NS = "{http://www.w3.org/2005/Atom}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def assert_valid_atom(data: bytes) -> list[Any]:
    """RFC 4287's rules for a feed document, each checked: the namespace; the feed's one id (an absolute
    IRI), title and updated (RFC 3339), an author, one self link; each entry's one id, title and updated, an
    alternate link, ids unique. Returns the entries' elements."""
    from lxml import etree

    feed = etree.fromstring(data)
    assert feed.tag == f"{ATOM_NS}feed"

    def one(parent: Any, name: str) -> str:
        found = parent.findall(f"{ATOM_NS}{name}")
        assert len(found) == 1, (name, len(found))
        return str(found[0].text or "")

    assert re.match(r"^[a-z][a-z0-9+.-]*:", one(feed, "id"))
    assert one(feed, "title") and RFC3339.match(one(feed, "updated"))
    assert feed.findall(f"{ATOM_NS}author/{ATOM_NS}name")
    assert len([link for link in feed.findall(f"{ATOM_NS}link") if link.get("rel") == "self"]) == 1
    entries = feed.findall(f"{ATOM_NS}entry")
    for entry in entries:
        assert re.match(r"^[a-z][a-z0-9+.-]*:", one(entry, "id"))
        assert one(entry, "title") and RFC3339.match(one(entry, "updated"))
        links = [
            link for link in entry.findall(f"{ATOM_NS}link") if link.get("rel", "alternate") == "alternate"
        ]
        assert len(links) == 1 and links[0].get("href", "").startswith("http")
    ids = [one(e, "id") for e in entries]
    assert len(set(ids)) == len(ids)
    return entries


def test_a_personal_atom_feed_with_conditional_get_and_a_reset(tmp_path: Path) -> None:
    import feedparser

    cfg, port = served_config(tmp_path)
    cli("subscribe", "ada@example.org", "-k", "model", "--max", "4", "--config", str(cfg)).check()
    report = json.loads(cli("run", "--json", "--config", str(cfg)).check().stdout)
    sent_titles = {p["title"] for p in report["subscribers"][0]["papers"]}
    url = f"/m/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}"
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        page = client.get(url)
        alternate = re.search(
            r'<link rel="alternate" type="application/atom\+xml"[^>]* href="([^"]+)"', page.text
        )
        assert alternate and f'<a href="{alternate.group(1)}">Atom feed</a>' in page.text
        feed_url = alternate.group(1)
        assert feed_url.startswith(base + "/feed/")  # absolute: pasted into a feed reader

        got = client.get(feed_url)
        assert got.status_code == 200 and got.headers["content-type"].startswith("application/atom+xml")
        entries = assert_valid_atom(got.content)
        parsed = feedparser.parse(got.content)
        assert parsed.bozo == 0 and parsed.version == "atom10"
        assert {e.title for e in parsed.entries} == sent_titles and len(entries) == 4
        assert all(e.summary.startswith("matched: model") for e in parsed.entries)
        assert "ada@example.org" not in got.text  # ids name nobody

        etag, modified = got.headers["etag"], got.headers["last-modified"]
        assert client.get(feed_url, headers={"If-None-Match": etag}).status_code == 304
        assert client.get(feed_url, headers={"If-Modified-Since": modified}).status_code == 304
        assert client.get(feed_url, headers={"If-None-Match": '"other"'}).status_code == 200
        assert client.head(feed_url).status_code == 200

        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        assert httpx.post(f"{base}{url}/feed").status_code == 403  # no CSRF token
        moved = client.post(f"{url}/feed", data={"csrf": csrf.group(1)}, follow_redirects=True)
        new_url = re.search(r'<a href="([^"]+)">Atom feed</a>', moved.text)
        assert new_url and new_url.group(1) != feed_url
        assert client.get(feed_url).status_code == 410  # the old address is gone
        assert client.get(new_url.group(1)).status_code == 200
        assert client.get(feed_url.replace("/feed/", "/feed/x")).status_code == 400
        forged = f"{base}/feed/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}"
        assert client.get(forged).status_code == 400  # a token for another purpose


def test_the_feed_carries_hostile_listing_text_as_inert_valid_xml() -> None:
    from digest.atom import Sent, atom_feed
    from digest.models import Match, Paper, Reason

    paper = Paper(
        "<script>alert(1)</script> \x00 Fast\x1b RAG \ud800",
        "An abstract with \x0c form feeds & <b>tags</b>.",
        arxiv_id="2501.00001",
        authors=("Ada \x07Lovelace", "\x01"),
    )
    at = datetime(2026, 12, 6, 7, tzinfo=UTC)
    sent = [Sent(Match(paper, 2, (Reason("RAG", "title"),)), at, at.date(), ("matched: RAG",))]
    data = atom_feed(
        site="https://d.example/",
        self_url="https://d.example/feed/t",
        key="ada@example.org",
        title="T",
        author="Paper Digest",
        sent=sent,
    )
    (entry,) = assert_valid_atom(data)
    assert b"<script>" not in data and b"&lt;script&gt;" in data
    assert entry.findtext(f"{ATOM_NS}title") == "<script>alert(1)</script>  Fast RAG "
    assert [a.findtext(f"{ATOM_NS}name") for a in entry.findall(f"{ATOM_NS}author")] == ["Ada Lovelace"]


REFERENCES = Path(__file__).resolve().parent / "fixtures" / "references"


def test_save_a_paper_download_it_and_import_a_zotero_export(tmp_path: Path) -> None:
    import bibtexparser
    import rispy

    cfg, port = served_config(tmp_path, subscribers=[GRACE])
    cli("subscribe", "ada@example.org", "-k", "model", "--max", "3", "--config", str(cfg)).check()
    cli("run", "--config", str(cfg)).check()
    (mail,) = mails_to(tmp_path, "ada@example.org")
    save = re.search(r"Save: (http\S+/f/\S+/2/save)", mail.get_body(("plain",)).get_content())
    assert save and f'href="{save.group(1)}"' in mail.get_body(("html",)).get_content()
    url = f"/m/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}"
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        asked = client.get(save.group(1))
        title = re.search(r"<p>(.*?)</p>", asked.text)
        assert asked.status_code == 200 and "Save this paper?" in asked.text and title
        assert _readers(cfg)["ada@example.org"]  # a GET saved nothing: the page lists none yet
        assert "“Save” under a paper" in client.get(url).text
        done = client.post(save.group(1), data={"csrf": _csrf(client, save.group(1))})
        assert done.status_code == 200 and "among your saved papers" in done.text
        page = client.get(url)
        assert f">{title.group(1)}</a>" in page.text and 'aria-label="Remove' in page.text

        bib = client.get(f"{url}/saved.bib")
        assert bib.status_code == 200 and "attachment" in bib.headers["content-disposition"]
        (entry,) = bibtexparser.parse_string(bib.text).entries
        assert entry.fields_dict["title"].value.strip("{}")  # the title, braced
        (record,) = rispy.loads(client.get(f"{url}/saved.ris").text)
        assert (
            record["title"] == entry.fields_dict["title"].value.strip("{}").replace("\\", "")
            or record["title"]
        )
        assert client.get(f"{url}/data.json").json()["saved"][0]["title"] == record["title"]

        ref = re.search(
            r'name="ref" value="(\d+)"><button class="plain" type="submit" aria-label="Remove', page.text
        )
        assert ref
        csrf = _csrf(client, url)
        client.post(f"{url}/saved", data={"csrf": csrf, "ref": ref.group(1)})
        assert rispy.loads(client.get(f"{url}/saved.ris").text) == []

        files = {"file": ("My Library.bib", (REFERENCES / "zotero.bib").read_bytes(), "application/x-bibtex")}
        imported = client.post(f"{url}/import", data={"csrf": csrf}, files=files)
        assert (
            imported.status_code == 200 and "3 papers recognised (1 by arXiv id, 2 by title)" in imported.text
        )
        assert (
            "not recognised: book:knuth_art_1997" in imported.text
            and "3 new seed papers added" in imported.text
        )
        assert httpx.post(f"{base}{url}/import", files=files).status_code == 403  # no CSRF token
        bad = client.post(
            f"{url}/import", data={"csrf": csrf}, files={"file": ("x.txt", b"hello", "text/plain")}
        )
        assert bad.status_code == 400 and "not a BibTeX, RIS or Zotero CSV" in bad.text
        huge = {"file": ("big.bib", b"@" * (2 << 20), "application/x-bibtex")}
        assert client.post(f"{url}/import", data={"csrf": csrf}, files=huge).status_code == 413
        grace = f"/m/{SIGNER.make(Purpose.MANAGE, 'grace@example.org')}"
        assert client.post(f"{grace}/import", data={"csrf": csrf}, files=files).status_code == 400
    ada = _readers(cfg)["ada@example.org"]
    assert ada["seeds"] == [
        "1706.03762",
        "Functional Bayesian Tucker Decomposition for Continuous-indexed Tensor Data",
        "Reasoning with Reinforced Functional Token Tuning",
    ]
    assert ada["keywords"] == ["model"] and ada["active"]  # nothing else of the profile changed
    with Store.open(load_settings(cfg).database) as store:  # erasing her erases what she saved too
        store.library.save("ada@example.org", int(ref.group(1)), datetime.now(UTC))
        assert store.library.saved("ada@example.org")
        store.readers.forget("ada@example.org", datetime.now(UTC))
        assert store.library.saved("ada@example.org") == []


def test_subscribe_takes_seed_papers_from_a_zotero_export(tmp_path: Path) -> None:
    cfg, _ = served_config(tmp_path)
    done = cli(
        "subscribe",
        "ada@example.org",
        "--seeds-from",
        str(REFERENCES / "zotero.ris"),
        "--seed",
        "1706.03762",
        "--config",
        str(cfg),
    ).check()
    assert (
        "zotero.ris: 2 papers recognised (1 by arXiv id, 1 by title); not recognised: entry 3" in done.stdout
    )
    assert _readers(cfg)["ada@example.org"]["seeds"] == [
        "1706.03762",
        "Learning dynamic representations of the functional connectome in neurobiological networks",
    ]
    missing = cli(
        "subscribe", "ada@example.org", "--seeds-from", str(tmp_path / "nope.bib"), "--config", str(cfg)
    )
    assert missing.returncode == 2 and "--seeds-from" in missing.stderr and "nope.bib" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_the_public_sample_is_made_once_per_pool_not_read_for_each_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone may ask for ``/sample`` as often as they like: it is made from the papers the web app
    already indexed for previews, once per pool and day, never by a query per request."""
    from starlette.testclient import TestClient

    from digest.store.papers import Papers
    from digest.web import create_app

    cfg, _port = served_config(tmp_path)
    cli("ingest", "--config", str(cfg)).check()
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET_KEY)
    reads: list[int] = []
    recent = Papers.recent

    def counted(self: Papers, *args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return recent(self, *args, **kwargs)

    monkeypatch.setattr(Papers, "recent", counted)
    with TestClient(create_app(Services(load_settings(cfg)))) as client:
        at_start = len(reads)  # the preview pool, indexed before the first request
        pages = [client.get("/sample") for _ in range(5)]
    assert at_start >= 1 and len(reads) == at_start
    assert all(p.status_code == 200 and p.text == pages[0].text for p in pages)
    assert len(re.findall(r'<h2 class="title"', pages[0].text)) == 5


def test_a_sample_digest_for_someone_deciding_publishes_no_acting_link(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path)
    cli("ingest", "--config", str(cfg)).check()
    with web(cfg, port, digest_env()), httpx.Client() as client:
        signup = client.get(f"http://127.0.0.1:{port}/")
        assert (
            '<a href="/sample">a sample digest</a>' in signup.text and "Papers from: samples." in signup.text
        )
        page = client.get(f"http://127.0.0.1:{port}/sample")
    assert page.status_code == 200 and len(re.findall(r'<h2 class="title"', page.text)) == 5
    assert not re.search(r'href="[^"]*/(m|u|f|v|feed)/', page.text)  # nobody's signed links
    assert "script" not in page.headers["content-security-policy"].replace("'none'", "")
