"""Several hosts share one day's run on PostgreSQL, and one of them is killed (``kill -9``) mid-run.

Three `digest run` processes (each its own connection, as three hosts would have) on 5,000 subscribers,
sending over SMTP to a real aiosmtpd server, with a source read over real HTTP. One process is killed at one
of three points:

- **ingest**: while it reads the sources (it holds the ingest turn; the others wait for it);
- **before DATA**: while its server is answering a recipient (the message never arrived);
- **after DATA**: after the server stored a message, before the reply reached the process (the one message
  in flight: the only one that may arrive twice, with one Message-ID).

The two others finish the run: every subscriber gets exactly one digest (bar that in-flight message), the
dead process's range is taken over at once (its session is gone: the claim's lease of 300 s plays no part),
and the database ends with every message sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import FIXTURES, RecordingHandler, free_port, samples_source, serving, write_config

from digest.models import Profile, Subscriber
from digest.store import Store

pytestmark = pytest.mark.processes  # real processes: see pyproject's markers

SUBSCRIBERS = 5_000
STALL_AT = 1_200  # the message (counted over all processes) at which the victim's server stalls
WAIT = 240.0


def client_pid(port: int) -> int:
    """The process that owns the TCP client socket bound to local ``port`` on this machine (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise LookupError(f"no process owns a socket on port {port}")


class Stall:
    """Where the victim is caught: set once a client is held there, with the client's port."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.caught = threading.Event()
        self.release = threading.Event()
        self.port = 0

    def catch(self, port: int) -> None:
        self.port = port
        self.caught.set()

    async def hold(self) -> None:
        while not self.release.is_set():
            await asyncio.sleep(0.02)


class StallingHandler(RecordingHandler):
    """Records every message; holds the ``STALL_AT``-th one at RCPT or after storing its DATA."""

    def __init__(self, stall: Stall) -> None:
        super().__init__()
        self.stall = stall
        self.seen = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.seen += 1
        if self.stall.point == "before-data" and self.seen == STALL_AT:
            self.stall.catch(session.peer[1])
            await self.stall.hold()
            return "421 closing"
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)  # stored: it has arrived
        if self.stall.point == "after-data" and len(self.messages) == STALL_AT:
            self.stall.catch(session.peer[1])
            await self.stall.hold()
        return reply


@pytest.fixture
def feed(request: pytest.FixtureRequest) -> Iterator[tuple[str, Stall]]:
    """An RSS feed over HTTP; at the "ingest" point its first request is held (the victim's)."""
    stall: Stall = request.param
    body = (FIXTURES / "arxiv_cs_CL.rss").read_bytes()
    first = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if stall.point == "ingest" and first.acquire(blocking=False):
                stall.catch(self.client_address[1])
                stall.release.wait(WAIT)
                return  # its client is dead by now
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as base:
        yield f"{base}/rss", stall


@pytest.mark.parametrize(
    "feed", [Stall("ingest"), Stall("before-data"), Stall("after-data")], indirect=True, ids=lambda s: s.point
)
def test_three_hosts_share_a_day_and_one_is_killed(
    feed: tuple[str, Stall], postgres_database: str, tmp_path: Path
) -> None:
    url, stall = feed
    handler = StallingHandler(stall)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        _run_three_hosts(url, stall, handler, port, postgres_database, tmp_path)
    finally:
        stall.release.set()
        controller.stop()


def _run_three_hosts(
    url: str, stall: Stall, handler: StallingHandler, port: int, database: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    with Store.open(database) as store:
        store.readers.add_many(
            [
                Subscriber(f"reader{i:05d}@example.org", "", Profile(("language model",), (), 5))
                for i in range(SUBSCRIBERS)
            ],
            datetime.now(UTC),
        )
    cfg = write_config(
        tmp_path,
        top={"database": database},
        sources=[samples_source(), {"kind": "feed", "name": "arxiv", "url": url}],
        tables={
            "delivery": {"method": "smtp", "workers": 1},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
        },
    )
    digest = [str(Path(sys.executable).parent / "digest"), "--config", str(cfg), "run", "--json"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    hosts = [
        subprocess.Popen(digest, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        assert stall.caught.wait(WAIT), "no process reached the point where it is to be killed"
        victim = client_pid(stall.port)
        assert victim in {h.pid for h in hosts}
        os.kill(victim, signal.SIGKILL)
        stall.release.set()
        outputs = {h.pid: h.communicate(timeout=WAIT) for h in hosts}
    finally:
        for h in hosts:
            if h.poll() is None:
                h.kill()
    codes = {h.pid: h.returncode for h in hosts}
    assert codes.pop(victim) == -signal.SIGKILL
    for pid, code in codes.items():
        assert code == 0, outputs[pid][1]
    reports = [json.loads(outputs[pid][0]) for pid in codes]

    # Every subscriber got one digest: one Message-ID each; a second copy only of the message in flight.
    ids: dict[str, set[str]] = {}
    copies: Counter[str] = Counter()
    for _, rcpts, msg in handler.messages:
        ids.setdefault(rcpts[0], set()).add(str(msg["Message-ID"]))
        copies[rcpts[0]] += 1
    assert len(ids) == SUBSCRIBERS
    assert all(len(v) == 1 for v in ids.values())
    twice = [r for r, n in copies.items() if n > 1]
    assert len(twice) == (1 if stall.point == "after-data" else 0), twice

    with Store.open(database) as store:
        states = dict(store.conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall())
        assert states == {"sent": SUBSCRIBERS}
        run = store.runs.latest()
        assert run is not None
        ranges = store.runs.ranges(run)
        assert len(ranges) == SUBSCRIBERS // 1000 and store.runs.progress(run).done == len(ranges)
        taken_over = [r for r in ranges if r.claims > 1]
        owners = {int(r.owner.rsplit(":", 1)[1]) for r in ranges if r.owner}
        if stall.point == "ingest":  # killed before it joined the run: nothing to take over
            assert not taken_over and owners <= set(codes)
            ingests = store.conn.execute("SELECT count(*) FROM ingests").fetchone()[0]
            assert ingests == 1  # read once, by the host that took the dead one's turn
            statuses = sorted(s["status"] for r in reports for s in r["sources"] if s["name"] == "arxiv")
            assert statuses == ["ok", "read-by-another-run"]
        else:  # its range went to a survivor at once, which sent what the victim had begun (same IDs)
            assert len(taken_over) == 1
            assert int(str(taken_over[0].owner).rsplit(":", 1)[1]) in codes
            assert victim not in owners
