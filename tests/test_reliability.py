"""SMTP faults against a real aiosmtpd server on 127.0.0.1 whose handler misbehaves on cue.

Every test counts what each recipient received at the server, not what the client believes it sent.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ScriptedHandler, free_port, samples_source, sent_refs, write_config
from rich.console import Console

from digest.cli import main, print_summary
from digest.email.mime import Outgoing
from digest.email.smtp import SmtpTransport
from digest.email.transport import HAS_SYNCFS, MaildirTransport, MemoryTransport
from digest.errors import TransientDeliveryError
from digest.models import Status
from digest.reports import RunReport
from digest.run import pipeline
from digest.run.courier import Courier, RetryBudget
from digest.settings import Settings, load_settings
from digest.store import BOUNCE_LIMIT, Store
from digest.wiring import Services

SUBSCRIBERS = [
    {"email": f"{name}@example.org", "keywords": keywords}
    for name, keywords in [
        ("ada", ["RAG"]),
        ("bob", []),
        ("cy", ["reasoning"]),
        ("dee", ["diffusion"]),
        ("eve", ["agents"]),
    ]
]


def _settings(tmp_path: Path, port: int, **smtp: Any) -> Settings:
    cfg = write_config(
        tmp_path,
        sources=[samples_source()],
        subscribers=SUBSCRIBERS,
        tables={
            "delivery": {"method": "smtp", "retries": 2, "retry_backoff": 0.01},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5, **smtp},
        },
    )
    return load_settings(cfg)


def _run(settings: Settings, now: datetime) -> RunReport:
    with Store.open(settings.database) as store:
        return pipeline.run_once(
            Services(settings, transport=SmtpTransport(settings.smtp, settings.sender_address)), store, now
        )


def _status(report: RunReport) -> dict[str, str]:
    return {s.email: s.status for s in report.subscribers}


def _ids(messages: list[EmailMessage]) -> list[str]:
    return [str(m["Message-ID"]) for m in messages]


def _assert_each_got_one(handler: ScriptedHandler, emails: list[str]) -> None:
    for address in emails:
        assert len(handler.received_by(address)) == 1, address


EMAILS = [str(s["email"]) for s in SUBSCRIBERS]


@pytest.mark.parametrize(
    ("stage", "code"), [("RCPT", "450 4.2.1 mailbox busy"), ("DATA", "451 4.3.0 try again")]
)
def test_a_4xx_is_retried_within_the_run_and_then_sent(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler], stage: str, code: str
) -> None:
    port, handler = server
    handler.script[stage, "ada@example.org"] = [code, code]  # two refusals, then it goes through
    report = _run(_settings(tmp_path, port), now)
    assert set(_status(report).values()) == {Status.SENT}
    assert handler.attempts[stage, "ada@example.org"] == 3
    _assert_each_got_one(handler, EMAILS)
    assert pipeline.exit_status(report) == 0


def test_a_persistent_4xx_is_left_for_the_next_run_and_resent_once_with_its_message_id(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    port, handler = server
    settings = _settings(tmp_path, port)
    handler.script["DATA", "ada@example.org"] = ["451 4.3.0 try again later"] * 10
    first = _run(settings, now)
    ada = next(s for s in first.subscribers if s.email == "ada@example.org")
    assert ada.status == Status.RETRY_LATER
    assert "451 4.3.0 try again later" in (ada.error or "")
    assert handler.attempts["DATA", "ada@example.org"] == 3  # 1 + retries, then left for the next run
    assert pipeline.exit_status(first) == 1
    console = Console(record=True, width=200)
    print_summary(first, console)
    summary = console.export_text()
    assert "sent 4 message(s) via SMTP 127.0.0.1" in summary
    assert "1 to retry next run; the next run retries what failed" in summary
    assert handler.received_by("ada@example.org") == []
    _assert_each_got_one(handler, EMAILS[1:])

    handler.script.clear()
    second = _run(settings, now + timedelta(hours=1))
    assert _status(second)["ada@example.org"] == Status.SENT
    assert {s.email for s in second.subscribers if s.status == Status.SENT} == {"ada@example.org"}
    assert _ids(handler.received_by("ada@example.org")) == [ada.message_id]
    assert len(handler.received_by("ada@example.org")[0].get_body(("plain",)).get_content()) > 0
    _assert_each_got_one(handler, EMAILS)
    assert pipeline.exit_status(second) == 0

    third = _run(settings, now + timedelta(hours=2))
    assert Status.SENT not in _status(third).values()
    _assert_each_got_one(handler, EMAILS)


def test_a_retry_still_pending_the_next_day_goes_into_that_days_digest(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    port, handler = server
    settings = _settings(tmp_path, port)
    handler.script["RCPT", "ada@example.org"] = ["450 4.2.1 mailbox busy"] * 10
    first = _run(settings, now)
    day_one = next(s for s in first.subscribers if s.email == "ada@example.org")
    assert day_one.status == Status.RETRY_LATER
    handler.script.clear()
    second = _run(settings, now + timedelta(days=1))
    got = handler.received_by("ada@example.org")
    assert len(got) == 1
    assert _ids(got) != [day_one.message_id]  # a new digest, for the new date
    text = got[0].get_body(("plain",)).get_content()
    assert all(" ".join(m.paper.title.split()) in " ".join(text.split()) for m in day_one.matches)
    assert _status(second)["ada@example.org"] == Status.SENT


def test_421_mid_batch_reconnects_and_sends_the_rest(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    port, handler = server
    handler.script["RCPT", "cy@example.org"] = ["421 4.3.2 service shutting down"]
    report = _run(_settings(tmp_path, port), now)
    assert set(_status(report).values()) == {Status.SENT}
    _assert_each_got_one(handler, EMAILS)
    assert handler.connections == 2  # the one the 421 closed, and one more for the rest


def test_a_connection_dropped_after_data_is_resent_with_the_same_message_id(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    """The one duplicate window: the server stored the message but the client never heard the 250."""
    port, handler = server
    handler.drop_after_data.add("cy@example.org")
    report = _run(_settings(tmp_path, port), now)
    assert set(_status(report).values()) == {Status.SENT}
    copies = _ids(handler.received_by("cy@example.org"))
    assert len(copies) == 2 and len(set(copies)) == 1  # a duplicate a mail client folds by Message-ID
    _assert_each_got_one(handler, [e for e in EMAILS if e != "cy@example.org"])


def test_a_550_fails_that_recipient_only_and_three_in_a_row_mark_it_bouncing(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    port, handler = server
    settings = _settings(tmp_path, port)
    handler.refuse["bob@example.org"] = "550 5.1.1 no such user"
    reports = [_run(settings, now + timedelta(days=day)) for day in range(BOUNCE_LIMIT)]
    first = reports[0]
    assert _status(first) == {e: (Status.FAILED if e == "bob@example.org" else Status.SENT) for e in EMAILS}
    bob = next(s for s in first.subscribers if s.email == "bob@example.org")
    assert "550 5.1.1 no such user" in (bob.error or "")
    assert pipeline.exit_status(first) == 1
    assert handler.attempts["RCPT", "bob@example.org"] == BOUNCE_LIMIT  # never retried within a run
    assert [_status(r)["bob@example.org"] for r in reports] == [Status.FAILED] * (BOUNCE_LIMIT - 1) + [
        Status.BOUNCED
    ]
    for address in EMAILS[:1] + EMAILS[2:]:  # the others: one message per day they had news, no more
        got = _ids(handler.received_by(address))
        assert len(got) == len(set(got)) == sum(_status(r)[address] == Status.SENT for r in reports) >= 1

    skipped = _run(settings, now + timedelta(days=BOUNCE_LIMIT))
    assert _status(skipped)["bob@example.org"] == Status.BOUNCED
    bob = next(s for s in skipped.subscribers if s.email == "bob@example.org")
    assert "digest resume bob@example.org" in (bob.note or "")
    assert handler.attempts["RCPT", "bob@example.org"] == BOUNCE_LIMIT  # not even tried
    assert pipeline.exit_status(skipped) == 0  # known and reported, nothing to retry

    del handler.refuse["bob@example.org"]
    cfg = str(tmp_path / "digest.toml")
    listed = CliRunner().invoke(main, ["subscribers", "--json", "--config", cfg])
    assert {s["email"]: s["bouncing"] for s in json.loads(listed.output)}["bob@example.org"] is True
    result = CliRunner().invoke(main, ["resume", "bob@example.org", "--config", cfg])
    assert result.exit_code == 0, result.output
    assert "resumed bob@example.org (was bouncing); their profile is unchanged" in result.output
    back = _run(settings, now + timedelta(days=BOUNCE_LIMIT + 1))
    assert _status(back)["bob@example.org"] == Status.SENT
    got_back = handler.received_by("bob@example.org")
    assert len(got_back) == 1
    assert len(next(s for s in back.subscribers if s.email == "bob@example.org").matches) > 0


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("DATA", "552 5.3.4 Message size exceeds fixed limit"),
        ("DATA", "554 5.6.0 Message header line too long"),
        ("DATA", "554 Transaction failed"),  # no enhanced code after DATA: not blamed on the address
        ("RCPT", "552 5.3.4 Message too big for this recipient"),
    ],
)
def test_a_refusal_of_our_own_message_never_counts_towards_bouncing(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler], stage: str, reply: str
) -> None:
    """A server that refuses the message itself (its size, a header) says nothing about the
    address; however often it happens, the subscriber is not marked bouncing."""
    port, handler = server
    settings = _settings(tmp_path, port)
    handler.script[stage, "bob@example.org"] = [reply] * (BOUNCE_LIMIT + 2)
    reports = [_run(settings, now + timedelta(days=day)) for day in range(BOUNCE_LIMIT + 1)]
    for report in reports:
        bob = next(s for s in report.subscribers if s.email == "bob@example.org")
        assert bob.status == Status.FAILED and "our message, not the address" in (bob.error or "")
    with Store.open(settings.database) as store:
        assert not store.readers.get("bob@example.org").bouncing


def test_a_subscriber_refused_earlier_today_is_reported_as_failed_not_nothing_new(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    """A second run the same day does not hammer the address again, and says why."""
    port, handler = server
    settings = _settings(tmp_path, port)
    handler.refuse["bob@example.org"] = "550 5.1.1 no such user"
    _run(settings, now)
    again = _run(settings, now + timedelta(hours=1))
    bob = next(s for s in again.subscribers if s.email == "bob@example.org")
    assert bob.status == Status.FAILED
    assert "refused earlier for the digest of 2026-11-23" in (
        bob.error or ""
    ) and "550 5.1.1 no such user" in (bob.error or "")
    assert handler.attempts["RCPT", "bob@example.org"] == 1
    del handler.refuse["bob@example.org"]
    tomorrow = _run(settings, now + timedelta(days=1))
    assert _status(tomorrow)["bob@example.org"] == Status.SENT


def test_a_server_that_never_answers_times_out_and_everything_waits_for_the_next_run(
    tmp_path: Path, now: datetime
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections (the kernel does) and never says a word
    port = silent.getsockname()[1]
    try:
        settings = _settings(tmp_path, port, timeout=0.3)
        started = time.monotonic()
        report = _run(settings, now)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert set(_status(report).values()) == {Status.RETRY_LATER}
    first = report.subscribers[0]
    assert "cannot connect to 127.0.0.1" in (first.error or "") and "timed out" in (first.error or "")
    assert all((s.error or "").startswith("not attempted") for s in report.subscribers[1:])
    assert pipeline.exit_status(report) == 1
    assert elapsed < 5  # 3 attempts of 0.3 s and short waits, not a timeout per subscriber

    with Store.open(settings.database) as store:
        assert all(sent_refs(store, e) == set() for e in EMAILS)


def test_after_the_server_comes_back_everyone_gets_their_digest_once(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    port, handler = server
    settings = _settings(tmp_path, free_port(), timeout=0.5)  # nothing listens there
    assert set(_status(_run(settings, now)).values()) == {Status.RETRY_LATER}
    back = _settings(tmp_path, port)
    report = _run(back, now + timedelta(minutes=30))
    assert set(_status(report).values()) == {Status.SENT}
    _assert_each_got_one(handler, EMAILS)


# -- the Courier on its own: retries, budget, pacing, with a fake clock ----------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _message(to: str) -> Outgoing:
    return Outgoing("digest@example.org", (to,), f"<{to}>", b"Subject: x\r\n\r\nx\r\n")


class FlakyTransport(MemoryTransport):
    """Fails the first ``failures`` sends with a transient error, each taking ``cost`` fake seconds."""

    def __init__(self, clock: FakeClock, failures: int, cost: float = 0.0) -> None:
        super().__init__()
        self.clock = clock
        self.failures = failures
        self.cost = cost
        self.calls = 0

    def send(self, message: Outgoing) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            self.clock.now += self.cost
            raise TransientDeliveryError("a@example.org", "451 later")
        super().send(message)


def test_courier_backs_off_exponentially_up_to_the_retry_count() -> None:
    clock = FakeClock()
    courier = Courier(
        FlakyTransport(clock, failures=3), retries=3, backoff=2.0, sleep=clock.sleep, clock=clock
    )
    courier.send(_message("a@example.org"))
    assert clock.sleeps == [2.0, 4.0, 8.0]
    with pytest.raises(TransientDeliveryError):
        Courier(FlakyTransport(clock, failures=4), retries=3, backoff=0.1, sleep=clock.sleep).send(
            _message("a@example.org")
        )


def test_courier_budget_counts_waits_and_failed_attempts_and_then_gives_up_at_once() -> None:
    clock = FakeClock()
    transport = FlakyTransport(clock, failures=100, cost=10.0)
    courier = Courier(
        transport, retries=5, backoff=1.0, budget=RetryBudget(25.0), sleep=clock.sleep, clock=clock
    )
    with pytest.raises(TransientDeliveryError):
        courier.send(_message("a@example.org"))
    # attempt 10 s, wait 1 s, attempt 10 s, wait 2 s, attempt 10 s: 33 s spent, over the 25 s budget.
    assert transport.calls == 3 and clock.sleeps == [1.0, 2.0]
    with pytest.raises(TransientDeliveryError):
        courier.send(_message("b@example.org"))
    assert transport.calls == 4 and clock.sleeps == [1.0, 2.0]  # budget spent: one attempt, no waiting


def test_courier_paces_sends_to_the_rate_limit() -> None:
    clock = FakeClock()
    transport = MemoryTransport()
    courier = Courier(transport, rate_limit=4.0, sleep=clock.sleep, clock=clock)
    for i in range(5):
        courier.send(_message(f"s{i}@example.org"))
    assert len(transport.sent) == 5
    assert clock.sleeps == [0.25] * 4


def test_rate_limit_spaces_real_smtp_sends(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    port, handler = server
    settings = _settings(tmp_path, port, rate_limit=20.0)
    times: list[float] = []
    lock = threading.Lock()
    original = handler.handle_DATA

    async def timed(server: Any, session: Any, envelope: Any) -> str:
        with lock:
            times.append(time.monotonic())
        return await original(server, session, envelope)

    handler.handle_DATA = timed  # type: ignore[method-assign]
    report = _run(settings, now)
    assert set(_status(report).values()) == {Status.SENT}
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == len(EMAILS) - 1
    # 20 per second: 50 ms apart. Taken where the server handles DATA, so a busy machine can delay one
    # arrival and bunch it with the next (by up to one gap); the whole span cannot shrink more than that.
    assert times[-1] - times[0] >= 0.05 * (len(gaps) - 1)
    assert sorted(gaps)[len(gaps) // 2] >= 0.04  # and most gaps are the full 50 ms


def test_a_second_run_the_same_day_sends_nothing_and_is_not_a_failure(
    tmp_path: Path, now: datetime, server: tuple[int, ScriptedHandler]
) -> None:
    port, _ = server
    settings = _settings(tmp_path, port)
    _run(settings, now)
    again = _run(settings, now + timedelta(hours=1))  # the same local date: already sent
    assert set(_status(again).values()) == {Status.NOTHING_NEW}
    assert pipeline.exit_status(again) == 0


@pytest.mark.parametrize("sync", ["filesystem", "files"])
def test_a_maildir_batch_is_made_durable_and_a_flush_that_fails_leaves_it_for_the_next_run(
    tmp_path: Path, sync: str
) -> None:
    box = tmp_path / "mail"

    def message(i: int) -> Outgoing:
        return Outgoing(
            "digest@example.org", ("ada@example.org",), f"<{i}@example.org>", b"Subject: x\n\nhi\n"
        )

    with MaildirTransport(box, sync) as maildir:
        assert maildir.whole_filesystem == (sync == "filesystem" and HAS_SYNCFS)
        for i in range(3):
            maildir.send(message(i))
        maildir.flush()
        assert len(list((box / "new").iterdir())) == 3
        maildir.send(message(0))  # the same Message-ID again (a resend after a crash): no second copy
        assert len(list((box / "new").iterdir())) == 3
        maildir.send(message(3))
        (box / "new").rename(box / "gone")  # the folder vanishes before the batch is durable
        with pytest.raises(TransientDeliveryError, match="cannot flush"):
            maildir.flush()


def test_an_unknown_maildir_sync_is_refused_when_the_config_loads(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], tables={"delivery": {"maildir_sync": "never"}})
    out = CliRunner().invoke(main, ["run", "--config", str(cfg)])
    assert out.exit_code == 2 and "maildir_sync" in out.output
