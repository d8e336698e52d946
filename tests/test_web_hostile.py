"""The web app as a stranger and a careless operator meet it, on real `digest serve` processes: no method
but POST acts, a forwarded header counts only from a proxy the operator named and sign-up mail has an
hourly cap, the API leaves the config's readers alone and refuses wrong types, bodies are bounded before
they are read, a relay that never answers slows no reader, and `digest serve` exits like every command."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TEST_SECRET_KEY, free_port, mails_to, read_maildir, samples_source, write_config
from running import DIGEST, Ran, cli, digest_env, serve_process, web
from test_web import ADA

from digest.store import Store
from digest.subscriptions import Request as SignupRequest
from digest.tokens import Purpose, Signer

API_TOKEN = "api-token-for-tests-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
SIGNER = Signer([TEST_SECRET_KEY])
HEADERS = (
    "content-security-policy",
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "cache-control",
)


def _setup(tmp_path: Path, tables: dict[str, dict[str, Any]] | None = None, **top: Any) -> tuple[Path, int]:
    """A config with Ada (declared in it, and synced into the database) and the samples, served at a port."""
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = write_config(
        tmp_path,
        top={"base_url": f"http://127.0.0.1:{port}", **top},
        sources=[samples_source()],
        subscribers=[ADA],
        tables=tables,
    )
    _cli(cfg, "subscribers")
    return cfg, port


def _cli(cfg: Path, *args: str) -> Ran:
    done = cli(*args, "--config", str(cfg))
    assert done.returncode in (0, 1), done.stderr
    return done


def _readers(cfg: Path) -> dict[str, dict[str, Any]]:
    listed = _cli(cfg, "subscribers", "--all", "--json")
    return {s["email"]: s for s in json.loads(listed.stdout)}


def _csrf(client: httpx.Client, path: str = "/") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


# -- 3: only POST acts ----------------------------------------------------------------------------------


def test_head_options_and_get_never_act_on_any_acting_route(tmp_path: Path) -> None:
    cfg, port = _setup(tmp_path)
    _cli(cfg, "subscribe", "zoe@example.org", "-k", "reasoning", "--max", "2")
    _cli(cfg, "unsubscribe", "zoe@example.org")  # a reader who left: a confirmation must not bring her back
    _cli(cfg, "resume", "zoe@example.org")
    _cli(cfg, "run")
    (zoe_mail,) = [m for m in read_maildir(tmp_path / "var" / "outbox") if str(m["To"]) == "zoe@example.org"]
    html = zoe_mail.get_body(("html",)).get_content()
    feedback = re.search(r'href="http://127\.0\.0\.1:\d+(/f/[^"/]+)/1/more"', html)
    assert feedback
    _cli(cfg, "unsubscribe", "zoe@example.org")
    asked = SignupRequest.from_form({"email": "zoe@example.org", "keywords": "cats"})
    zoe = {
        "confirm": f"/c/{SIGNER.make_timed(Purpose.CONFIRM, asked.token_data())}",
        "unsubscribe": f"/u/{SIGNER.make(Purpose.UNSUBSCRIBE, 'ada@example.org')}",
        "manage": f"/m/{SIGNER.make(Purpose.MANAGE, 'zoe@example.org')}",
        "delete": f"/m/{SIGNER.make(Purpose.MANAGE, 'zoe@example.org')}/delete",
        "undo": f"/m/{SIGNER.make(Purpose.MANAGE, 'zoe@example.org')}/feedback",
        "feedback": f"{feedback.group(1)}/1/more",
        "sign-up": "/",
    }
    before = _readers(cfg)
    with web(cfg, port) as base, httpx.Client(base_url=base) as client:
        csrf = _csrf(client)  # a real browser's cookie: still no method but POST may act
        for name, path in zoe.items():
            for method in ("HEAD", "OPTIONS", "GET", "PUT", "PATCH", "DELETE"):
                answer = client.request(
                    method,
                    path,
                    data={"csrf": csrf, "List-Unsubscribe": "One-Click", "confirm": "yes", "ref": "1"}
                    if method in ("PUT", "PATCH", "DELETE")
                    else None,
                )
                allowed = method in ("HEAD", "GET") and name not in ("delete", "undo")
                assert answer.status_code == (200 if allowed else 405), (name, method, answer.status_code)
                if method == "HEAD":
                    assert answer.content == b""
                for header in HEADERS:
                    assert header in answer.headers, (name, method, header)
    assert _readers(cfg) == before  # nobody confirmed, unsubscribed, edited, erased or rated anything
    assert [
        str(m["Subject"]) for m in read_maildir(tmp_path / "var" / "outbox") if "Confirm" in str(m["Subject"])
    ] == []
    with Store.open(tmp_path / "var" / "digest.sqlite3") as store:
        assert store.feedback.of(["zoe@example.org"]) == {}


# -- 4: forwarded headers and the hourly cap ------------------------------------------------------------


def _sign_up(client: httpx.Client, csrf: str, email: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.post(
        "/", data={"csrf": csrf, "email": email, "keywords": "RAG"}, headers=headers
    ).status_code


def test_forwarded_headers_count_only_from_named_proxies(tmp_path: Path) -> None:
    """Without a proxy named, 30 sign-ups with 30 made-up X-Forwarded-For headers are one client: 20 an
    hour, then 429. Behind a named proxy each forwarded client has its own count."""
    cfg, port = _setup(tmp_path)
    with web(cfg, port) as base, httpx.Client(base_url=base) as client:
        csrf = _csrf(client)
        codes = [_sign_up(client, csrf, f"n{i}@example.org", f"198.51.100.{i}") for i in range(30)]
    assert codes == [200] * 20 + [429] * 10
    assert len(mails_to(tmp_path, "@example.org", expect=20)) == 20

    cfg, port = _setup(tmp_path / "behind", {"web": {"trusted_proxies": ["127.0.0.1"]}})
    with web(cfg, port) as base, httpx.Client(base_url=base) as client:
        csrf = _csrf(client)
        codes = [_sign_up(client, csrf, f"m{i}@example.org", f"198.51.100.{i}") for i in range(25)]
        assert codes == [200] * 25
        same = [_sign_up(client, csrf, f"o{i}@example.org", "203.0.113.9") for i in range(21)]
        assert same[-1] == 429  # one forwarded client still has its own limit


@pytest.mark.processes
def test_the_hourly_cap_on_confirmation_mail_holds_whatever_the_clients(tmp_path: Path) -> None:
    cfg, port = _setup(tmp_path, {"web": {"trusted_proxies": ["127.0.0.0/8"], "confirmations_per_hour": 5}})
    with serve_process(cfg, port, digest_env()) as (base, proc), httpx.Client(base_url=base) as client:
        csrf = _csrf(client)
        codes = [_sign_up(client, csrf, f"n{i}@example.org", f"198.51.100.{i}") for i in range(12)]
        assert codes == [200] * 5 + [503] * 7
        assert len(mails_to(tmp_path, "@example.org", expect=5)) == 5
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert "[web] confirmations_per_hour (5) reached" in err


# -- 5: the API and the config's readers -----------------------------------------------------------------


def test_the_api_leaves_config_readers_alone_and_refuses_wrong_types(tmp_path: Path) -> None:
    cfg, port = _setup(tmp_path)
    _cli(cfg, "run")
    sent_before = len(read_maildir(tmp_path / "var" / "outbox"))
    with (
        web(cfg, port, digest_env(DIGEST_API_TOKEN=API_TOKEN)) as base,
        httpx.Client(base_url=base) as client,
    ):
        url = "/api/subscribers/Ada@Example.org"
        for answer in (
            client.put(url, json={"keywords": ["cats"]}, headers=AUTH),
            client.delete(url, headers=AUTH),
            client.delete(url, params={"erase": "true"}, headers=AUTH),
        ):
            assert answer.status_code == 409, answer.text
            assert "declared in the operator's config file" in answer.json()["error"]
        assert client.get(url, headers=AUTH).json()["keywords"] == ADA["keywords"]
        for body, why in (
            ({"keywords": ["RAG"], "active": "false"}, "active must be true or false"),
            ({"keywords": ["RAG"], "active": 0}, "active must be true or false"),
            ({"keywords": ["RAG"], "name": {"first": "Zoe"}}, "name must be a string"),
            ({"keywords": "RAG"}, "keywords, exclude and seeds must be lists of strings"),
            ({"keywords": ["RAG"], "max_papers": 5.5}, "max_papers must be a number"),
            ({"keywords": ["RAG"], "colour": "blue"}, "unknown field 'colour'"),
            ([1, 2], "the body must be a JSON object"),
        ):
            answer = client.put("/api/subscribers/zoe@example.org", json=body, headers=AUTH)
            assert answer.status_code == 400 and why in answer.json()["error"], (body, answer.text)
        assert client.get("/api/subscribers/zoe@example.org", headers=AUTH).status_code == 404
        made = client.put("/api/subscribers/zoe@example.org", json={"keywords": ["reasoning"]}, headers=AUTH)
        assert made.status_code == 200 and made.json()["active"] is True
    _cli(cfg, "run")
    got = [m for m in read_maildir(tmp_path / "var" / "outbox") if str(m["To"]) == "zoe@example.org"]
    assert len(got) == 1
    with (
        web(cfg, port, digest_env(DIGEST_API_TOKEN=API_TOKEN)) as base,
        httpx.Client(base_url=base) as client,
    ):
        erased = client.delete("/api/subscribers/zoe@example.org", params={"erase": "true"}, headers=AUTH)
        assert erased.json() == {"email": "zoe@example.org", "erased": True}
        again = client.put("/api/subscribers/zoe@example.org", json={"keywords": ["reasoning"]}, headers=AUTH)
        assert again.status_code == 200
    report = json.loads(_cli(cfg, "run", "--now", "--json").stdout)
    statuses = {s["email"]: s["status"] for s in report["subscribers"]}
    assert statuses["zoe@example.org"] == "nothing-new"  # never a paper twice, even after an erasure
    assert statuses["ada@example.org"] == "nothing-new"
    assert len(read_maildir(tmp_path / "var" / "outbox")) == sent_before + 1


# -- 8: bounded bodies, 400 not 500, headers on every answer --------------------------------------------


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert found
    return int(found.group(1))


@pytest.mark.processes
def test_bodies_are_bounded_before_they_are_read(tmp_path: Path) -> None:
    cfg, port = _setup(tmp_path)
    with (
        serve_process(cfg, port, digest_env(DIGEST_API_TOKEN=API_TOKEN)) as (base, proc),
        httpx.Client(base_url=base) as client,
    ):
        big = {"email": "x@example.org", "keywords": "x" * 5_000_000}
        refused = httpx.post(f"{base}/", data=big)  # no CSRF cookie: the size is refused first
        assert refused.status_code == 413
        rss = _rss_kib(proc.pid)

        def endless() -> Iterator[bytes]:
            for _ in range(100):  # 100 MB, without a Content-Length
                yield b"a=" + b"x" * 1_048_574

        try:
            chunked = httpx.post(
                f"{base}/", content=endless(), headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
            assert chunked.status_code == 413
        except httpx.RemoteProtocolError:
            pass  # the server may close the connection while the client is still sending: also refused
        assert _rss_kib(proc.pid) - rss < 20_000  # it never held the body
        for header in HEADERS:
            assert header in refused.headers

        deep = "[" * 100_000 + "]" * 100_000
        nested = client.put(
            "/api/subscribers/zoe@example.org",
            content=deep,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert nested.status_code == 400 and "nested too deeply" in nested.json()["error"]
        manage = f"/m/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}"
        csrf = _csrf(client, manage)
        for ref in ("1" + "0" * 23, "²", "-1", "1e3", ""):
            undo = client.post(f"{manage}/feedback", data={"csrf": csrf, "ref": ref})
            assert undo.status_code == 400, (ref, undo.status_code)
        odd = client.post(manage, data={"csrf": csrf, "keywords": "RAG", "action": "save", "max_papers": "²"})
        assert odd.status_code == 400
        with httpx.Client(base_url=base) as odd_client:  # a cookie in UTF-8, as no browser sends it
            cookie = odd_client.post(
                manage, data={"csrf": "é", "keywords": "RAG"}, headers={b"Cookie": "digest_csrf=é".encode()}
            )
        assert cookie.status_code == 403  # a non-ASCII token is a wrong token, not a crash

        # A failure the app did not expect: the database file replaced by garbage under the running server.
        database = tmp_path / "var" / "digest.sqlite3"
        saved = database.read_bytes()
        try:
            for extra in ("-wal", "-shm"):
                (tmp_path / "var" / f"digest.sqlite3{extra}").unlink(missing_ok=True)
            database.write_bytes(b"not a database " * 4096)
            broken = httpx.get(f"{base}{manage}/data.json")
            assert broken.status_code == 500 and "Traceback" not in broken.text
            for header in HEADERS:
                assert header in broken.headers
        finally:
            database.write_bytes(saved)


# -- 7: a relay that never answers -----------------------------------------------------------------------


@contextmanager
def silent_relay() -> Iterator[int]:
    """A TCP listener that accepts connections and never says a word (an SMTP relay that hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(200)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.processes
def test_a_stalled_relay_never_slows_a_reader(tmp_path: Path) -> None:
    """45 sign-ups while the relay accepts and never answers: each is answered at once, and a one-click
    unsubscribe and the manage page stay fast (they used to wait behind the sign-ups' SMTP sends)."""
    with silent_relay() as relay:
        cfg, port = _setup(
            tmp_path,
            {
                "delivery": {"method": "smtp"},
                "smtp": {"host": "127.0.0.1", "port": relay, "security": "none", "timeout": 30},
                "web": {"trusted_proxies": ["127.0.0.1"]},
            },
        )
        _cli(cfg, "subscribers")
        with (
            serve_process(cfg, port, digest_env()) as (base, _),
            httpx.Client(base_url=base, timeout=60) as client,
        ):
            csrf = _csrf(client)

            def sign_up(i: int) -> tuple[int, float]:
                started = time.monotonic()
                with httpx.Client(base_url=base, timeout=60, cookies={"digest_csrf": csrf}) as one:
                    code = _sign_up(one, csrf, f"n{i}@example.org", f"198.51.100.{i}")
                return code, time.monotonic() - started

            with ThreadPoolExecutor(45) as pool:
                answers = list(pool.map(sign_up, range(45)))
            assert {code for code, _ in answers} == {200}
            assert max(took for _, took in answers) < 5
            started = time.monotonic()
            page = client.get(f"/m/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}")
            done = client.post(
                f"/u/{SIGNER.make(Purpose.UNSUBSCRIBE, 'ada@example.org')}",
                data={"List-Unsubscribe": "One-Click"},
            )
            took = time.monotonic() - started
            assert page.status_code == 200 and done.status_code == 200 and "You are unsubscribed" in done.text
            assert took < 2, f"a reader waited {took:.1f} s behind the stalled relay"
    assert _readers(cfg)["ada@example.org"]["active"] is False


# -- 13: digest serve exits like every command ----------------------------------------------------------


def _serve(cfg: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIGEST, "serve", "--config", str(cfg), *args],
        env=env or digest_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.processes
def test_serve_that_cannot_start_says_why_in_one_line_and_exits_2(tmp_path: Path) -> None:
    cfg, port = _setup(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = _serve(cfg, "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2
    assert re.fullmatch(
        r"digest: error: --port: cannot listen on 127\.0\.0\.1:\d+: Address already in use \(.*\)\n",
        busy.stderr,
    ), busy.stderr
    elsewhere = _serve(cfg, "--host", "203.0.113.7", "--port", str(port))  # TEST-NET-3: not this machine
    assert elsewhere.returncode == 2 and "--host: cannot listen on 203.0.113.7" in elsewhere.stderr
    unknown = _serve(cfg, "--host", "no-such-host.invalid", "--port", str(port))
    assert unknown.returncode == 2 and "--host: cannot listen on no-such-host.invalid" in unknown.stderr
    (tmp_path / "pg").mkdir()
    nowhere = write_config(tmp_path / "pg", top={"database": "postgresql://postgres@127.0.0.1:9/digest"})
    database = _serve(nowhere, "--port", str(port))
    assert (
        database.returncode == 2
        and "the database postgresql://postgres@127.0.0.1:9/digest" in database.stderr
    )
    for failed in (busy, elsewhere, unknown, database):
        assert "digest serve: http" not in failed.stderr  # no "serving" line for what never served
        assert "Traceback" not in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
        assert failed.stdout == ""


@pytest.mark.processes
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_says_it_serves_once_it_does_and_exits_130_on_ctrl_c_0_on_sigterm(
    tmp_path: Path, workers: str
) -> None:
    cfg, port = _setup(tmp_path)
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        with serve_process(cfg, port, digest_env(), "--workers", workers) as (base, proc):
            assert httpx.get(f"{base}/healthz").text == "ok"
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == status, err
        assert err.count("digest serve: http://127.0.0.1") == 1
        assert "Traceback" not in err
