"""Signed unsubscribe links answered by the web app on a real socket at 127.0.0.1 (uvicorn, as `digest serve`).

A digest's List-Unsubscribe URL is followed as a mail scanner does (GET: nothing changes) and as a mailbox
provider does (RFC 8058 POST, no cookies: unsubscribed at once); forged, altered, other-key and
other-purpose tokens are refused and change nothing; old keys still verify after a rotation.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    TEST_SECRET_KEY,
    free_port,
    mails_to,
    read_maildir,
    samples_source,
    served_config,
    write_config,
)
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from running import cli, digest_env, process, serve_process, web

from digest.models import Profile, Subscriber
from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.tokens import Purpose, Signer
from digest.wiring import Services

ADA = {"email": "ada@example.org", "keywords": ["speculative decoding"], "max_papers": 3}
GRACE = {"email": "grace@example.org", "keywords": ["reasoning"], "max_papers": 3}
OTHER_KEY = "another-key-that-is-long-enough-0123456789"


def _setup(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    cfg = write_config(
        tmp_path,
        top={"base_url": f"http://127.0.0.1:{port}"},
        sources=[samples_source()],
        subscribers=[ADA, GRACE],
    )
    return cfg, port


def _unsubscribe_url(message: Any) -> str:
    header = str(message["List-Unsubscribe"])
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    found = re.search(r"<(http[^>]+)>", header)
    assert found
    return found.group(1)


def _active(cfg: Path) -> dict[str, bool]:
    out = cli("subscribers", "--all", "--json", "--config", str(cfg))
    return {s["email"]: s["active"] for s in json.loads(out.stdout)}


def test_one_click_unsubscribe_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, port = _setup(tmp_path)
    run = cli("run", "--config", str(cfg))
    assert run.returncode == 0, run.stderr
    messages = {str(m["To"]): m for m in read_maildir(tmp_path / "var" / "outbox")}
    url = _unsubscribe_url(messages["ada@example.org"])
    assert url.startswith(f"http://127.0.0.1:{port}/u/")
    html = messages["ada@example.org"].get_body(("html",)).get_content()
    assert f'href="{url}"' in html  # the footer links to the same page

    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        page = client.get(url)  # what a mail scanner or a preview does
        assert page.status_code == 200 and "<button" in page.text and "Unsubscribe" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'; style-src 'nonce-")
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "server" not in page.headers
        client.head(url)
        assert _active(cfg) == {"ada@example.org": True, "grace@example.org": True}  # GET never acts

        done = httpx.post(url, data={"List-Unsubscribe": "One-Click"})  # as Gmail sends it: no cookies
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        assert httpx.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200  # idempotent
    assert _active(cfg) == {"ada@example.org": False, "grace@example.org": True}

    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET_KEY)
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        later = pipeline.run_once(Services(settings), store, datetime.now(UTC) + timedelta(days=1))
    assert "ada@example.org" not in {s.email for s in later.subscribers}
    received = [str(m["To"]) for m in read_maildir(tmp_path / "var" / "outbox")]
    assert received.count("ada@example.org") == 1


def test_forged_altered_and_foreign_tokens_are_refused_and_change_nothing(tmp_path: Path) -> None:
    cfg, port = _setup(tmp_path)
    cli("subscribers", "--config", str(cfg)).check()
    good = Signer([TEST_SECRET_KEY]).make(Purpose.UNSUBSCRIBE, "ada@example.org")
    signature = good.partition(".")[2]
    forged = [
        good[:-1] + ("A" if good[-1] != "A" else "B"),  # altered signature
        Signer([TEST_SECRET_KEY]).make(Purpose.UNSUBSCRIBE, "grace@example.org").split(".")[0]
        + "."
        + signature,
        Signer([OTHER_KEY]).make(Purpose.UNSUBSCRIBE, "ada@example.org"),  # someone else's key
        "ImFkYUBleGFtcGxlLm9yZyI",  # the payload without a signature
        "x" * 5000,
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ]
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        for token in forged:
            for method in ("GET", "POST"):
                answer = client.request(method, f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
                assert answer.status_code in (400, 404), (token[:40], method, answer.status_code)
                assert "<script>" not in answer.text
        wrong_body = client.post(f"/u/{good}", data={"something": "else"})
        assert wrong_body.status_code == 400
    assert _active(cfg) == {"ada@example.org": True, "grace@example.org": True}


@pytest.mark.processes
def test_old_keys_still_verify_after_a_rotation_and_weak_keys_are_refused(tmp_path: Path) -> None:
    cfg, port = _setup(tmp_path)
    cli("subscribers", "--config", str(cfg)).check()
    old_token = Signer([TEST_SECRET_KEY]).make(Purpose.UNSUBSCRIBE, "ada@example.org")
    rotated = digest_env(DIGEST_SECRET_KEY=OTHER_KEY, DIGEST_OLD_SECRET_KEYS=TEST_SECRET_KEY)
    with web(cfg, port, rotated) as base:
        assert httpx.get(f"{base}/u/{old_token}").status_code == 200
        assert httpx.post(f"{base}/u/{old_token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert _active(cfg)["ada@example.org"] is False

    for env in (
        digest_env(DIGEST_SECRET_KEY=""),
        digest_env(DIGEST_SECRET_KEY="short"),
        digest_env(DIGEST_SECRET_KEY="a" * 40),
    ):
        refused = process("serve", "--port", str(free_port()), "--config", str(cfg), env=env, timeout=30)
        assert refused.returncode == 2 and "DIGEST_SECRET_KEY" in refused.stderr, refused.stderr
    unsigned = cli("run", "--config", str(cfg), env=digest_env(DIGEST_SECRET_KEY=""))
    assert (
        unsigned.returncode == 2 and "DIGEST_SECRET_KEY is not set" in unsigned.stderr
    )  # never unsigned links


# -- subscribing on the web: double opt-in, CSRF, rate limits, no enumeration -------------------------


def _csrf(client: httpx.Client) -> str:
    page = client.get("/")
    assert page.status_code == 200 and 'name="csrf"' in page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def test_subscribe_confirm_and_the_next_run_sends_those_keywords(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path)
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        token = _csrf(client)
        form = {"csrf": token, "email": "zoe@example.org", "keywords": "speculative decoding\nRAG"}
        sent = client.post("/", data={**form, "timezone": "America/New_York"})  # the browser's zone
        assert sent.status_code == 200 and "Check your inbox" in sent.text
        (mail,) = mails_to(tmp_path, "zoe@example.org", expect=1)
        assert str(mail["Subject"]) == "Confirm your paper digest subscription"
        link = re.search(r"(http://127\.0\.0\.1:\d+/c/\S+)", mail.get_body(("plain",)).get_content())
        assert link
        assert _active(cfg) == {}  # nothing is stored before the confirmation
        shown = client.get(link.group(1))
        assert (
            shown.status_code == 200 and "Confirm" in shown.text and "speculative decoding, RAG" in shown.text
        )
        assert _active(cfg) == {}  # a scanner's GET confirms nothing
        done = client.post(link.group(1))
        assert done.status_code == 200 and "You are subscribed" in done.text
    assert _active(cfg) == {"zoe@example.org": True}
    listed = cli("subscribers", "--json", "--config", str(cfg))
    assert json.loads(listed.stdout)[0]["timezone"] == "America/New_York"
    run = cli("run", "--json", "--config", str(cfg))
    report = json.loads(run.stdout)
    (zoe,) = report["subscribers"]
    assert zoe["status"] == "sent"
    assert {k for p in zoe["papers"] for k in p["matched"]} <= {"speculative decoding", "RAG"}
    digest_mail = [m for m in mails_to(tmp_path, "zoe@example.org") if "Confirm" not in str(m["Subject"])]
    assert len(digest_mail) == 1
    subject = str(digest_mail[0]["Subject"])
    assert "speculative decoding" in subject or "RAG" in subject


def test_csrf_profile_errors_escaping_rate_limits_and_no_enumeration(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path, subscribers=[ADA])
    cli("subscribers", "--config", str(cfg)).check()
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        no_token = httpx.post(f"{base}/", data={"email": "x@example.org", "keywords": "RAG"})
        assert no_token.status_code == 403
        token = _csrf(client)
        wrong = client.post("/", data={"csrf": token + "x", "email": "x@example.org", "keywords": "RAG"})
        assert wrong.status_code == 403 and mails_to(tmp_path, "x@example.org") == []

        bad = client.post("/", data={"csrf": token, "email": "x@example.org", "keywords": "RAG, ***"})
        assert bad.status_code == 400
        # In the form's words, naming the field it is about (the operator's log names the subscriber).
        assert "Topics you follow: “***”: the keyword has no letters or digits." in bad.text
        assert 'aria-describedby="form-error keywords-hint" aria-invalid="true"' in bad.text
        assert "RAG, ***" in bad.text  # the form keeps what was typed

        hostile = "<script>alert(1)</script>"
        posted = client.post(
            "/",
            data={
                "csrf": token,
                "email": "mallory@example.org",
                "keywords": f"RAG, {hostile}",
                "name": hostile,
            },
        )
        assert posted.status_code == 200 and "<script>" not in posted.text
        (mail,) = mails_to(tmp_path, "mallory@example.org", expect=1)
        html = mail.get_body(("html",)).get_content()
        assert "<script>" not in html and "&lt;script&gt;" in html
        link = re.search(r"(http://127\.0\.0\.1:\d+/c/\S+)", mail.get_body(("plain",)).get_content())
        assert link and "<script>" not in client.get(link.group(1)).text

        # Known and unknown addresses get the same answer; only the owner's inbox tells them apart.
        known = client.post("/", data={"csrf": token, "email": "ada@example.org", "keywords": "RAG"})
        unknown = client.post("/", data={"csrf": token, "email": "newbie@example.org", "keywords": "RAG"})
        assert known.status_code == unknown.status_code == 200

        def same(text: str, address: str) -> str:
            return re.sub(r'nonce="[^"]+"', 'nonce="N"', text.replace(address, "X"))

        assert same(known.text, "ada@example.org") == same(unknown.text, "newbie@example.org")

        # One address: 3 confirmation emails an hour at most, and the same answer after that.
        for _ in range(4):
            again = client.post("/", data={"csrf": token, "email": "target@example.org", "keywords": "RAG"})
            assert again.status_code == 200 and "Check your inbox" in again.text
        assert len(mails_to(tmp_path, "target@example.org", expect=3)) == 3

        # One client: 20 requests an hour (8 counted above; the two refused for CSRF are not), then 429.
        codes = [
            client.post(
                "/", data={"csrf": token, "email": f"n{i}@example.org", "keywords": "RAG"}
            ).status_code
            for i in range(14)
        ]
        assert codes.count(200) == 12 and set(codes[12:]) == {429}
    assert _active(cfg) == {"ada@example.org": True}  # nobody was subscribed without confirming


@pytest.mark.processes
def test_worker_processes_and_servers_on_one_database_share_the_rate_limits(tmp_path: Path) -> None:
    """`digest serve --workers 2` and a second server on the same database count the same sign-ups, and
    the count keeps no stranger's address in the clear."""
    cfg, port = served_config(tmp_path)
    other = free_port()
    with (
        serve_process(cfg, port, digest_env(), "--workers", "2") as (first, _),
        serve_process(cfg, other, digest_env()) as (second, _),
    ):
        answers = []
        for i in range(6):
            with httpx.Client(base_url=(first, second)[i % 2]) as client:  # a new connection each time
                token = _csrf(client)
                asked = {"csrf": token, "email": "target@example.org", "keywords": "RAG"}
                answers.append(client.post("/", data=asked).status_code)
        assert answers == [200] * 6  # the same answer every time: no enumeration, no hint of the limit
        assert len(mails_to(tmp_path, "target@example.org", expect=3)) == 3
        # The manage page works from every worker (each built its app from the same config).
        with Store.open(tmp_path / "var" / "digest.sqlite3") as store:
            store.readers.add(Subscriber("ada@example.org", "", Profile(("RAG",))), datetime.now(UTC))
        link = f"/m/{Signer([TEST_SECRET_KEY]).make(Purpose.MANAGE, 'ada@example.org')}"
        for _ in range(4):
            with httpx.Client(base_url=first) as client:
                assert client.get(link).status_code == 200
    for file in (tmp_path / "var").glob("digest.sqlite3*"):
        assert b"target@example.org" not in file.read_bytes()


def test_a_confirmation_link_expires() -> None:
    from digest.errors import TokenError
    from digest.subscriptions import Request, read_confirmation

    signer = Signer([TEST_SECRET_KEY])
    asked = Request.from_form({"email": "zoe@example.org", "keywords": "RAG"})
    token = signer.make_timed(Purpose.CONFIRM, asked.token_data())
    assert read_confirmation(signer, token).email == "zoe@example.org"

    class MadeTwoSecondsAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 2

    salt = f"digest.{Purpose.CONFIRM}"
    older = URLSafeTimedSerializer([TEST_SECRET_KEY], salt=salt, signer=MadeTwoSecondsAgo)
    with pytest.raises(TokenError, match="expired"):
        read_confirmation(signer, older.dumps(asked.token_data()), max_age=1)
    with pytest.raises(TokenError, match="not valid"):
        read_confirmation(signer, Signer([TEST_SECRET_KEY]).make(Purpose.UNSUBSCRIBE, "zoe@example.org"))


# -- managing a profile: the link in every digest, a preview, CSRF on saving -----------------------------


def test_manage_page_previews_and_saves_a_profile(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path, subscribers=[GRACE])
    subscribe = ["subscribe", "ada@example.org", "-k", "speculative decoding", "--max", "3"]
    assert cli(*subscribe, "--config", str(cfg)).returncode == 0
    run = cli("run", "--config", str(cfg))
    assert run.returncode == 0, run.stderr
    ada = next(m for m in read_maildir(tmp_path / "var" / "outbox") if str(m["To"]) == "ada@example.org")
    found = re.search(r'href="(http://127\.0\.0\.1:\d+/m/[^"]+)"', ada.get_body(("html",)).get_content())
    assert found, "every digest links to the reader's manage page"
    url = found.group(1)
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        page = client.get(url)
        assert page.status_code == 200 and "speculative decoding" in page.text
        assert "script-src 'nonce-" in page.headers["content-security-policy"]
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        # Ada already got today's speculative-decoding papers: the preview leaves them out.
        asked = {
            "csrf": token.group(1),
            "keywords": "diffusion\nvideo",
            "exclude": "survey",
            "max_papers": "4",
        }
        preview = client.post(f"{url}/preview", data=asked)
        assert preview.status_code == 200 and "<mark>" in preview.text and "matched: " in preview.text
        assert preview.text.count("<li>") == 4 and "diffusion" in preview.text.lower()
        bad = client.post(f"{url}/preview", data={**asked, "keywords": "<b>***</b>, ***"})
        assert "the keyword has no letters or digits" in bad.text and "<b>" not in bad.text
        assert _active(cfg)["ada@example.org"] is True
        listed = cli("subscribers", "--json", "--config", str(cfg))
        stored = {s["email"]: s for s in json.loads(listed.stdout)}
        assert stored["ada@example.org"]["keywords"] == ["speculative decoding"]  # a preview saves nothing

        forged = httpx.post(url, data={**asked, "action": "save"})  # no cookie: no CSRF token
        assert forged.status_code == 403
        bare = {k: v for k, v in asked.items() if k != "csrf"}
        assert httpx.post(url, data={**bare, "action": "save"}).status_code == 403  # neither cookie nor field
        assert httpx.post(f"{url}/delete", data={"confirm": "yes"}).status_code == 403
        assert 'list="zones"' in page.text and '<option value="Pacific/Kiritimati">' in page.text
        late = {**asked, "timezone": "Mars/Olympus", "send_at": "18:30", "cadence": "weekly:fri"}
        wrong = client.post(url, data={**late, "action": "save"})
        assert wrong.status_code == 400 and "unknown time zone" in wrong.text
        saved = client.post(url, data={**late, "timezone": "Asia/Tokyo", "action": "save", "paused": "yes"})
        assert saved.status_code == 200 and "Saved." in saved.text
        assert "Now: weekly on Friday at 18:30 (Asia/Tokyo)." in saved.text
        assert '<option value="weekly:fri" selected>' in saved.text
    listed = cli("subscribers", "--all", "--json", "--config", str(cfg))
    ada_now = next(s for s in json.loads(listed.stdout) if s["email"] == "ada@example.org")
    assert ada_now["keywords"] == ["diffusion", "video"] and ada_now["exclude"] == ["survey"]
    assert ada_now["max_papers"] == 4 and ada_now["active"] is False  # paused
    assert (ada_now["timezone"], ada_now["send_at"], ada_now["cadence"]) == (
        "Asia/Tokyo",
        "18:30",
        "weekly:fri",
    )

    grace = next(m for m in read_maildir(tmp_path / "var" / "outbox") if str(m["To"]) == "grace@example.org")
    grace_url = re.search(
        r'href="(http://127\.0\.0\.1:\d+/m/[^"]+)"', grace.get_body(("html",)).get_content()
    )
    assert grace_url
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        page = client.get(grace_url.group(1))
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token
        refused = client.post(
            grace_url.group(1), data={"csrf": token.group(1), "keywords": "RAG", "action": "save"}
        )
        assert refused.status_code == 400 and "operator&#39;s configuration" in refused.text


def test_download_my_data_and_delete_me(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, port = served_config(tmp_path)
    subscribe = ["subscribe", "ada@example.org", "-k", "speculative decoding", "--max", "3"]
    assert cli(*subscribe, "--config", str(cfg)).returncode == 0
    assert cli("run", "--config", str(cfg)).returncode == 0
    (sent,) = read_maildir(tmp_path / "var" / "outbox")
    url = f"http://127.0.0.1:{port}/m/{Signer([TEST_SECRET_KEY]).make(Purpose.MANAGE, 'ada@example.org')}"
    with web(cfg, port, digest_env()), httpx.Client() as client:
        mine = client.get(f"{url}/data.json")
        assert mine.status_code == 200 and "attachment" in mine.headers["content-disposition"]
        data = mine.json()
        assert data["keywords"] == ["speculative decoding"] and len(data["sent"]) == 3
        assert {r["message_id"] for r in data["sent"]} == {str(sent["Message-ID"])}

        page = client.get(url)
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token and f'action="{url.split(str(port))[1]}/delete"' in page.text
        assert httpx.post(f"{url}/delete", data={"csrf": token.group(1), "confirm": "yes"}).status_code == 403
        ask = client.post(f"{url}/delete", data={"csrf": token.group(1)})
        assert ask.status_code == 200 and "Delete everything?" in ask.text
        assert _active(cfg) == {"ada@example.org": True}  # one click erases nothing
        gone = client.post(f"{url}/delete", data={"csrf": token.group(1), "confirm": "yes"})
        assert gone.status_code == 200 and "Everything about ada@example.org is gone" in gone.text
        assert client.get(f"{url}/data.json").status_code == 404
    assert _active(cfg) == {}
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET_KEY)
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        later = pipeline.run_once(Services(settings), store, datetime.now(UTC) + timedelta(days=1))
    assert later.subscribers == ()
    assert len(read_maildir(tmp_path / "var" / "outbox")) == 1


def test_the_api_adds_updates_lists_and_removes_subscribers(tmp_path: Path) -> None:
    cfg, port = served_config(tmp_path)
    api_token = "api-token-for-tests-0123456789abcdef"
    auth = {"Authorization": f"Bearer {api_token}"}
    with web(cfg, port, digest_env()) as base:
        assert httpx.get(f"{base}/api/subscribers", headers=auth).status_code == 404  # off without a token
    with (
        web(cfg, port, digest_env(DIGEST_API_TOKEN=api_token)) as base,
        httpx.Client(base_url=base) as client,
    ):
        assert client.get("/api/subscribers").status_code == 401
        assert client.get("/api/subscribers", headers={"Authorization": "Bearer wrong"}).status_code == 401
        body = {
            "keywords": ["RAG", "speculative decoding"],
            "exclude": ["survey"],
            "max_papers": 7,
            "name": "Zoë",
        }
        made = client.put("/api/subscribers/Zoe@Example.org", json=body, headers=auth)
        assert made.status_code == 200 and made.json()["keywords"] == ["RAG", "speculative decoding"]
        bad = client.put("/api/subscribers/bob@example.org", json={"keywords": ["***"]}, headers=auth)
        assert bad.status_code == 400 and "the keyword has no letters or digits" in bad.json()["error"]
        assert client.put("/api/subscribers/not-an-address", json=body, headers=auth).status_code == 400
        for i in range(3):
            client.put(f"/api/subscribers/u{i}@example.org", json={"keywords": ["RAG"]}, headers=auth)
        first = client.get("/api/subscribers", params={"limit": 2}, headers=auth).json()["subscribers"]
        rest = client.get("/api/subscribers", params={"after": first[-1]["email"]}, headers=auth).json()
        assert [s["email"] for s in first + rest["subscribers"]] == [
            "u0@example.org",
            "u1@example.org",
            "u2@example.org",
            "Zoe@example.org",
        ]
        late = {**body, "max_papers": 3, "timezone": "Etc/GMT+12", "send_at": "6:05", "cadence": "Weekdays"}
        client.put("/api/subscribers/zoe@example.org", json=late, headers=auth)
        zoe = client.get("/api/subscribers/zoe@example.org", headers=auth).json()
        assert (zoe["max_papers"], zoe["timezone"], zoe["send_at"], zoe["cadence"]) == (
            3,
            "Etc/GMT+12",
            "06:05",
            "weekdays",
        )
        wrong = client.put(
            "/api/subscribers/zoe@example.org", json={**late, "cadence": "hourly"}, headers=auth
        )
        assert wrong.status_code == 400 and "unknown cadence 'hourly'" in wrong.json()["error"]
        followed = {
            **late,
            "sections": {"keywords": 2},
            "upvotes": 0.5,
            "updates": False,
            "language": "German",
        }
        client.put("/api/subscribers/zoe@example.org", json=followed, headers=auth)
        zoe = client.get("/api/subscribers/zoe@example.org", headers=auth).json()
        assert (zoe["sections"], zoe["upvotes"], zoe["updates"], zoe["language"]) == (
            {"keywords": 2},
            0.5,
            False,
            "German",
        )
        odd = client.put(
            "/api/subscribers/zoe@example.org", json={**late, "sections": {"news": 2}}, headers=auth
        )
        assert odd.status_code == 400 and "no section 'news'" in odd.json()["error"]
        gone = client.delete("/api/subscribers/u0@example.org", headers=auth)
        assert gone.json() == {"email": "u0@example.org", "unsubscribed": True}
        erased = client.delete("/api/subscribers/u1@example.org", params={"erase": "true"}, headers=auth)
        assert erased.json() == {"email": "u1@example.org", "erased": True}
        assert client.get("/api/subscribers/u1@example.org", headers=auth).status_code == 404
    assert _active(cfg) == {"Zoe@example.org": True, "u0@example.org": False, "u2@example.org": True}


def test_sign_up_never_builds_its_mailed_link_from_the_host_header(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, sources=[samples_source()])  # no base_url
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        token = _csrf(client)
        answer = client.post(
            "/",
            data={"csrf": token, "email": "zoe@example.org", "keywords": "RAG"},
            headers={"Host": "evil.example"},
        )
        assert answer.status_code == 503 and "base_url" in answer.text
    assert mails_to(tmp_path, "zoe@example.org") == []


def test_a_sent_digest_can_be_viewed_in_a_browser_by_its_reader_only(tmp_path: Path) -> None:
    cfg, port = _setup(tmp_path)
    assert cli("run", "--config", str(cfg)).returncode == 0
    ada = next(m for m in read_maildir(tmp_path / "var" / "outbox") if str(m["To"]) == "ada@example.org")
    text = ada.get_body(("plain",)).get_content()
    found = re.search(r"View in a browser:\s+(http://127\.0\.0\.1:\d+/v/\S+)", text)
    assert found
    html = ada.get_body(("html",)).get_content()
    titles = re.findall(r'<h2 class="title"[^>]*>(.*?)</h2>', html, flags=re.S)
    assert titles
    with web(cfg, port, digest_env()), httpx.Client() as client:
        page = client.get(found.group(1))
        assert page.status_code == 200
        assert re.findall(r'<h2 class="title"[^>]*>(.*?)</h2>', page.text, flags=re.S) == titles
        assert page.headers.get_list("content-security-policy") == [
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        ]
        signer = Signer([TEST_SECRET_KEY])
        no_digest = client.get(
            found.group(1).split("/v/")[0]
            + "/v/"
            + signer.make(Purpose.VIEW, "ada@example.org", date(2001, 1, 1))
        )
        assert no_digest.status_code == 404
        forged = client.get(found.group(1)[:-2] + "xx")
        assert forged.status_code == 400
        other = client.get(
            found.group(1).split("/v/")[0] + "/v/" + signer.make(Purpose.UNSUBSCRIBE, "ada@example.org")
        )
        assert other.status_code == 400  # a token for another purpose shows nothing


def test_the_preview_index_is_rebuilt_only_when_the_stored_papers_change() -> None:
    """The manage page's paper index: rebuilt in a worker thread when the store says the papers changed,
    kept when not, and kept (not lost) when a rebuild fails."""
    import asyncio

    from digest.selection.index import PaperIndex
    from digest.web.stores import PoolCache

    version, builds = [1], [0]

    def build() -> PaperIndex:
        builds[0] += 1
        if version[0] == 3:
            raise RuntimeError("the database went away")
        return PaperIndex([])

    async def settled(cache: PoolCache) -> PaperIndex:
        pool = await cache.get()
        assert cache.building is not None
        await cache.building
        return pool

    async def scenario() -> None:
        cache = PoolCache(lambda: version[0], build, ttl=0)
        first = await settled(cache)
        assert await settled(cache) is first and builds == [1]  # checked again, same papers: no rebuild
        version[0] = 2
        await settled(cache)
        second = await settled(cache)
        assert second is not first and builds == [2]
        version[0] = 3
        await settled(cache)
        assert await settled(cache) is second  # the failed rebuild left the previous index in place

    asyncio.run(scenario())
