"""``kill -9`` of a real ``digest run`` mid-delivery, and two runs started together.

A 200-subscriber run sends to a real aiosmtpd server that stores each message and then takes a moment to
answer, so a kill lands while a message is accepted at the server but not yet recorded by digest: the one
duplicate window. After the kills, a rerun must leave every subscriber with exactly the digest a clean run
would have sent (compared with one made in memory), under a single Message-ID; copies beyond one only for
messages in flight at a kill, at most one per kill.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import RecordingHandler, free_port, samples_source, sent_refs, write_config

from digest.email.transport import MemoryTransport
from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.wiring import Services

pytestmark = pytest.mark.processes  # real processes: see pyproject's markers

DIGEST = str(Path(sys.executable).parent / "digest")
VOCABULARY = [
    ["RAG"],
    ["reasoning"],
    ["diffusion", "video"],
    ["agents"],
    ["reinforcement learning"],
    ["LLM", "quantiz*"],
    ["multimodal"],
    ["benchmark"],
    [],  # trending
    ["speculative decoding"],
    ["no such topic anywhere"],  # matches nothing: gets no mail
]
N = 200


class SlowHandler(RecordingHandler):
    """Stores each message, then waits ``delay`` before the 250, so kills land in the duplicate window."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay)
        return reply


@pytest.fixture
def slow_server() -> Iterator[tuple[int, SlowHandler]]:
    handler = SlowHandler(delay=0.01)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler
    controller.stop()


def _config(tmp_path: Path, port: int) -> Path:
    subscribers = [
        {
            "email": f"s{i:03d}@example.org",
            "keywords": VOCABULARY[i % len(VOCABULARY)],
            "max_papers": 5 + i % 7,
        }
        for i in range(N)
    ]
    return write_config(
        tmp_path,
        sources=[samples_source()],
        subscribers=subscribers,
        tables={
            "delivery": {"method": "smtp"},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 10},
        },
    )


def _start(cfg: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    proc = subprocess.Popen(
        [DIGEST, "run", "--config", str(cfg), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _STARTED[proc.pid] = time.monotonic()
    return proc


def _wait_until(condition: Any, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before the kill point: {proc.communicate()}"
        assert time.monotonic() < deadline, "kill point not reached"
        time.sleep(0.002)


_STARTED: dict[int, float] = {}


def _started_since(proc: subprocess.Popen[str]) -> float:
    return time.monotonic() - _STARTED[proc.pid]


def _expected(cfg: Path) -> dict[str, str]:
    """What a clean run sends today, per subscriber: the text part, made in memory on a fresh store."""
    settings = load_settings(cfg)
    transport = MemoryTransport()
    with Store.open(":memory:") as store:
        pipeline.run_once(Services(settings, transport=transport), store, datetime.now(UTC))
    return {str(m["To"]).split("<")[-1].rstrip(">"): _text(m) for m in transport.sent}


def _text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")  # SMTP carries CRLF line ends


def _received(handler: RecordingHandler) -> dict[str, list[EmailMessage]]:
    out: dict[str, list[EmailMessage]] = defaultdict(list)
    for _, rcpts, msg in handler.messages:
        for rcpt in rcpts:
            out[rcpt].append(msg)
    return out


def test_kill_9_at_several_points_then_a_rerun_delivers_everything_exactly_once(
    tmp_path: Path, slow_server: tuple[int, SlowHandler]
) -> None:
    port, handler = slow_server
    cfg = _config(tmp_path, port)
    lock = tmp_path / "var" / "digest.sqlite3.lock"
    expected = _expected(cfg)
    assert 120 < len(expected) < N  # most subscribers get mail, the "no such topic" ones do not

    kills = 0
    points: list[tuple[str, Any]] = [
        (
            "holding the lock, before any send",
            lambda p: lock.exists() and f"pid {p.pid} " in lock.read_text(),
        ),
        ("after the first message", lambda p: len(handler.messages) >= 1),
        ("a third of the way", lambda p: len(handler.messages) >= len(expected) // 3),
        ("two thirds of the way", lambda p: len(handler.messages) >= 2 * len(expected) // 3),
        ("at a moment not tied to the server", lambda p: _started_since(p) > 1.2),
    ]
    for where, condition in points:
        proc = _start(cfg)
        _wait_until(lambda p=proc, c=condition: c(p), proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, where
        kills += 1

    assert len(handler.messages) < len(expected) + kills  # the kills left work for the rerun

    final = _start(cfg)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err

    received = _received(handler)
    assert set(received) == set(expected)  # nobody missing, nobody extra
    duplicates = 0
    for address, messages in received.items():
        ids = {str(m["Message-ID"]) for m in messages}
        assert len(ids) == 1, f"{address} got {len(ids)} different digests"
        for m in messages:
            assert _text(m) == expected[address], address
        duplicates += len(messages) - 1
    assert duplicates <= kills

    # The ledger agrees with the server: each message received is recorded as sent, with its papers, so a
    # later day cannot send them again; nothing is left in flight.
    with Store.open(tmp_path / "var" / "digest.sqlite3") as store:
        statuses = dict(store.conn.execute("SELECT message_id, status FROM messages").fetchall())
        assert "sending" not in statuses.values() and "retry" not in statuses.values()
        for address, messages in received.items():
            assert statuses[str(messages[0]["Message-ID"])] == "sent", address
            numbered = re.findall(r"^\d+\. ", expected[address], flags=re.MULTILINE)
            assert len(sent_refs(store, address)) == len(numbered) > 0, address

    again = _start(cfg)
    again.communicate(timeout=120)
    assert again.returncode == 0
    assert sum(len(v) for v in _received(handler).values()) == sum(len(v) for v in received.values())


def test_two_runs_started_together_never_both_send(
    tmp_path: Path, slow_server: tuple[int, SlowHandler]
) -> None:
    port, handler = slow_server
    cfg = _config(tmp_path, port)
    first, second = _start(cfg), _start(cfg)
    results = [p.communicate(timeout=120) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert sorted(codes) == [0, 2]
    loser_err = results[codes.index(2)][1]
    assert "another digest run holds the lock" in loser_err
    winner = (first, second)[codes.index(0)]
    assert f"pid {winner.pid} " in loser_err  # names the holder
    received = _received(handler)
    assert received and all(len(messages) == 1 for messages in received.values())


def test_ctrl_c_stops_cleanly_with_130_and_the_rerun_delivers_everything_once(
    tmp_path: Path, slow_server: tuple[int, SlowHandler]
) -> None:
    """SIGINT mid-run is an exit of its own (130), with a sentence instead of a traceback; what
    was begun is sent again by the next run, so nothing is lost."""
    port, handler = slow_server
    cfg = _config(tmp_path, port)
    expected = _expected(cfg)
    proc = _start(cfg)
    _wait_until(lambda: len(handler.messages) >= len(expected) // 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted; nothing is lost" in err and "Traceback" not in err
    assert len(handler.messages) < len(expected)

    final = _start(cfg)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    received = _received(handler)
    assert set(received) == set(expected)
    for address, messages in received.items():
        assert len({str(m["Message-ID"]) for m in messages}) == 1, address
    assert sum(len(m) for m in received.values()) - len(received) <= 1  # at most the message in flight
