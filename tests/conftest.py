"""Shared test parts, all real: SQLite files in tmp_path, an HTTP server and an SMTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from digest.models import Paper
from digest.sources.snapshot import parse_snapshot

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "config" / "samples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
# A fixed signing key for tests (a real one comes from DIGEST_SECRET_KEY): tokens, and so golden files, are
# the same on every run.
TEST_SECRET_KEY = "test-key-for-digest-tests-only-0123456789"


@pytest.fixture
def now() -> datetime:
    return NOW


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    folder: Path,
    *,
    sources: list[dict[str, Any]] | None = None,
    subscribers: list[dict[str, Any]] | None = None,
    top: dict[str, Any] | None = None,
    tables: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A config file in ``folder``; state goes to ``folder/var`` (relative paths, resolved by digest)."""
    lines = []
    # Readers' hour is midnight, so that a run at NOW (06:00) or any later hour of a day finds them due; the
    # tests of hours and cadences (test_cadence) set their own.
    defaults = {"database": "var/digest.sqlite3", "timezone": "UTC", "send_at": "00:00"}
    for key, value in {**defaults, **(top or {})}.items():
        lines.append(f"{key} = {toml_value(value)}")
    tables = dict(tables or {})
    # Tests retry transient failures quickly; a test that cares sets its own values.
    tables["delivery"] = {
        "method": "maildir",
        "maildir": "var/outbox",
        "retry_backoff": 0.01,
        **tables.get("delivery", {}),
    }
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
    for kind, items in (("sources", sources or []), ("subscribers", subscribers or [])):
        for item in items:
            lines.append(f"[[{kind}]]")
            lines.extend(f"{k} = {toml_value(v)}" for k, v in item.items())
    path = folder / "digest.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seed_papers(*, numbered: bool = False) -> list[Paper]:
    """The 375 distinct papers of the bundled captures, parsed as a run would (on 2025-11-22, each file its
    source); ``numbered``: each with a ref, as the store would give them."""
    found: dict[str, Paper] = {}
    for f in sorted(SAMPLES.glob("*.txt")):
        for p in parse_snapshot(f.read_text(encoding="utf-8"), source=f.name, today=date(2025, 11, 22)):
            found.setdefault(p.key, p)
    papers = list(found.values())
    return [replace(p, ref=i) for i, p in enumerate(papers)] if numbered else papers


def sent_refs(store: Any, email: str) -> set[int]:
    """The refs of the papers recorded as sent to ``email``."""
    return set(store.outbox.sent_refs([email]).get(email.casefold(), set()))


def count_papers(store: Any) -> int:
    """How many papers the store holds."""
    return len(store.papers.recent(datetime(1970, 1, 1, tzinfo=UTC)))


# What the run reports for the bundled samples (five captures, 511 entries, 375 distinct papers).
SAMPLES_REPORT = {
    "name": "samples",
    "kind": "snapshot",
    "status": "ok",
    "papers": 511,
    "new": 375,
    "revisions": 0,
    "skipped": 0,
    "clamped": 0,
    "error": None,
}


def samples_source(name: str = "samples") -> dict[str, Any]:
    return {"kind": "snapshot", "name": name, "path": str(SAMPLES / "*.txt")}


def read_maildir(path: Path) -> list[EmailMessage]:
    """Every message delivered into a Maildir, parsed back with the email package."""
    out = []
    for f in sorted((path / "new").glob("*")):
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def mails_to(folder: Path, address: str, expect: int | None = None, wait: float = 10.0) -> list[EmailMessage]:
    """The messages in ``folder/var/outbox`` addressed to ``address``; with ``expect``, waiting up to
    ``wait`` seconds for that many (the web app mails its confirmations from a thread of its own)."""
    outbox = folder / "var" / "outbox"
    deadline = time.monotonic() + wait
    while True:
        found = (
            [m for m in read_maildir(outbox) if address in str(m["To"])] if (outbox / "new").is_dir() else []
        )
        if expect is None or len(found) >= expect or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# -- a real HTTP server ------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on 127.0.0.1 from a thread for the duration; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/xml"
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0


@dataclass
class HttpServer:
    base: str
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    """Serves ``routes`` on 127.0.0.1, honouring If-None-Match / If-Modified-Since with 304."""
    routes: dict[str, Route] = {}
    state = HttpServer("", routes)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers)))
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.delay:
                time.sleep(route.delay)
            fresh = (route.etag and self.headers.get("If-None-Match") == route.etag) or (
                route.last_modified and self.headers.get("If-Modified-Since") == route.last_modified
            )
            if fresh:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.last_modified:
                self.send_header("Last-Modified", route.last_modified)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        state.base = base
        yield state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_config(tmp_path: Path, subscribers: list[dict[str, Any]] | None = None) -> tuple[Path, int]:
    """A config for a web app on a free port of 127.0.0.1 (its ``base_url``), over the bundled captures,
    with ``subscribers`` declared: (the config's path, the port)."""
    port = free_port()
    cfg = write_config(
        tmp_path,
        top={"base_url": f"http://127.0.0.1:{port}"},
        sources=[samples_source()],
        subscribers=subscribers or [],
    )
    return cfg, port


# -- a real SMTP server ------------------------------------------------------------------------------


class RecordingHandler:
    """An aiosmtpd handler that keeps what it accepted, and refuses the recipients it is told to."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.refuse: dict[str, str] = {}  # recipient -> reply, e.g. "550 5.1.1 no such user"
        self.sessions: set[int] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.sessions.add(id(session))
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 Message accepted"

    def received_by(self, address: str) -> list[EmailMessage]:
        return [m for _, rcpts, m in self.messages if address in rcpts]


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer("127.0.0.1", port, handler)
    controller.stop()


class ScriptedHandler(RecordingHandler):
    """Replies from a script, then behaves: ``script[(stage, rcpt)]`` is a list of replies, one per attempt.

    ``stage`` is "RCPT" or "DATA". A reply starting with "421" also closes the connection, as a server
    shutting down does. ``drop_after_data`` holds recipients whose next message is accepted and stored,
    and then the connection is cut before the 250 reaches the client.
    """

    def __init__(self, pipelining: bool = False) -> None:
        super().__init__()
        self.pipelining = (
            pipelining  # offer PIPELINING (RFC 2920): the client then sends MAIL, RCPT, DATA at once
        )
        self.script: dict[tuple[str, str], list[str]] = {}
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.drop_after_data: set[str] = set()
        self.connections = 0

    def _scripted(self, server: Any, stage: str, rcpt: str) -> str | None:
        self.attempts[stage, rcpt] += 1
        replies = self.script.get((stage, rcpt))
        if not replies:
            return None
        reply = replies.pop(0)
        if reply.startswith("421"):
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any
    ) -> Any:
        self.connections += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        reply = self._scripted(server, "RCPT", address)
        if reply:
            return reply
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0]
        reply = self._scripted(server, "DATA", rcpt)
        if reply:
            return reply
        accepted = await super().handle_DATA(server, session, envelope)
        if rcpt in self.drop_after_data:
            self.drop_after_data.discard(rcpt)
            server.transport.abort()  # stored, but the client never hears the 250
        return accepted


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[int, ScriptedHandler]]:
    """Every scenario twice: with a server that offers PIPELINING and one that does not."""
    handler = ScriptedHandler(pipelining=request.param)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler
    controller.stop()


# -- a hostile HTTP server ---------------------------------------------------------------------------


@dataclass
class HostileServer:
    """Serves misbehaving answers on 127.0.0.1: ``/trickle`` (a byte every 0.1 s), ``/endless`` (64 KB
    chunks without end), ``/loop`` (redirects to itself), ``/bomb`` (gzip that inflates to ``bomb_size``),
    ``/auth`` (``body`` only with ``Authorization: token``, else 401). Every loop stops after 60 s, or as
    soon as the client goes away."""

    base: str
    body: bytes = b""
    token: str = ""
    bomb_size: int = 200_000_000
    bombs: dict[int, bytes] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base + path

    def bomb(self) -> bytes:
        """The gzip body of ``/bomb``, made once (call it before measuring memory)."""
        import gzip

        if self.bomb_size not in self.bombs:
            self.bombs[self.bomb_size] = gzip.compress(b"\0" * self.bomb_size, compresslevel=9)
        return self.bombs[self.bomb_size]


@pytest.fixture
def hostile_server() -> Iterator[HostileServer]:
    state = HostileServer("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _trickle(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)

        def _endless(self) -> None:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                self.wfile.write(chunk)

        def _bomb(self) -> None:
            body = state.bomb()
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if self.path == "/trickle":
                    self._trickle()
                elif self.path == "/endless":
                    self._endless()
                elif self.path == "/bomb":
                    self._bomb()
                elif self.path == "/loop":
                    self.send_response(302)
                    self.send_header("Location", "/loop")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path.startswith("/auth") and self.headers.get("Authorization") == state.token:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(state.body)))
                    self.end_headers()
                    self.wfile.write(state.body)
                else:
                    self.send_error(401 if self.path.startswith("/auth") else 404)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        state.base = base
        yield state


# -- PostgreSQL: a throwaway cluster for the session ---------------------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _pg_tool(name: str) -> str | None:
    """A PostgreSQL server program: Debian's (postgresql-15), else one on PATH."""
    import shutil

    return str(PG_BIN / name) if (PG_BIN / name).is_file() else shutil.which(name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL cluster on 127.0.0.1 and a free port, made for this test session and stopped at its
    end (as root, initdb and pg_ctl run as the ``postgres`` user, which refuses to run as root). Skipped
    when PostgreSQL is not installed, except under CI, which installs it (.ci/run)."""
    import os
    import shutil
    import subprocess

    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("PostgreSQL is not installed; .ci/run installs Debian's postgresql package")
        pytest.skip("PostgreSQL (Debian's postgresql package) is not installed")
    import tempfile

    # Not under pytest's tmp_path: its folders are root's alone, and the server runs as postgres.
    folder = Path(tempfile.mkdtemp(prefix="digest-postgres-"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [
            *as_user,
            initdb,
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale",
            "C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_url: str) -> str:
    """The URL of a fresh, empty database in the session's cluster."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives, once per backend: a SQLite file, and a PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_database"))
    return str(tmp_path / "state" / "digest.sqlite3")
