"""Returned mail. Digests go out over a real SMTP server with a signed VERP return path per subscriber;
then a Maildir of returned mail (a Postfix DSN, an Exim bounce, an ARF complaint, a soft bounce, a forged
bounce, an auto-reply) is read by `digest bounces`: the right subscribers are suspended, every message is
moved aside and never read twice, and the next run skips the suspended."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import TEST_SECRET_KEY, SmtpServer, samples_source, write_config
from running import cli

from digest.email.bounces import COMPLAINT, HARD, SOFT, verp_address
from digest.models import Profile, Status, Subscriber
from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.wiring import Services

NAMES = ("ada", "grace", "hopper", "katherine", "lin")
SUBSCRIBERS = [{"email": f"{n}@example.org", "keywords": [], "max_papers": 2} for n in NAMES]

POSTFIX_DSN = """\
Return-Path: <>
Delivered-To: {verp}
X-Original-To: {verp}
Received: by mail.example.org (Postfix) id 3F1A2C0123; Mon, 23 Nov 2026 06:01:02 +0000 (UTC)
Date: Mon, 23 Nov 2026 06:01:02 +0000 (UTC)
From: MAILER-DAEMON@mail.example.org (Mail Delivery System)
Subject: {subject}
To: {verp}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="3F1A2C0123.1795413662/mail.example.org"
Message-Id: <20261123060102.3F1A2C0123@mail.example.org>

This is a MIME-encapsulated message.

--3F1A2C0123.1795413662/mail.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<{rcpt}>: host mx.example.net[192.0.2.25] said: {code} {status} <{rcpt}>:
    {text} (in reply to RCPT TO command)

--3F1A2C0123.1795413662/mail.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.org
X-Postfix-Queue-ID: 3F1A2C0123
X-Postfix-Sender: rfc822; {verp}
Arrival-Date: Mon, 23 Nov 2026 06:00:58 +0000 (UTC)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; {code} {status} <{rcpt}>: {text}

--3F1A2C0123.1795413662/mail.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <{verp}>
From: Paper Digest <digest@example.org>
To: {rcpt}
Subject: Your paper digest

--3F1A2C0123.1795413662/mail.example.org--
"""

EXIM_BOUNCE = """\
Return-path: <>
Envelope-to: {verp}
Delivery-date: Mon, 23 Nov 2026 06:01:05 +0000
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {verp}
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1vAbCd-000123-Ab@mx.example.net>
X-Failed-Recipients: {rcpt}
Auto-Submitted: auto-replied
Date: Mon, 23 Nov 2026 06:01:05 +0000

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    SMTP error from remote mail server after RCPT TO:<{rcpt}>:
    550 5.1.1 No such user here

------ This is a copy of the message, including all the headers. ------

Return-path: <{verp}>
From: Paper Digest <digest@example.org>
To: {rcpt}
Subject: Your paper digest
"""

ARF_COMPLAINT = """\
From: Feedback Loop <fbl@mailbox.example.net>
To: abuse@example.org
Subject: FW: Your paper digest
Date: Mon, 23 Nov 2026 09:12:00 +0000
Message-ID: <fbl-123@mailbox.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf_boundary"

--arf_boundary
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.10 on
Mon, 23 Nov 2026 06:01:00 +0000.

--arf_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <{verp}>
Original-Rcpt-To: <{rcpt}>
Arrival-Date: Mon, 23 Nov 2026 06:01:00 +0000
Source-IP: 192.0.2.10
Reported-Domain: example.org

--arf_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: Paper Digest <digest@example.org>
To: {rcpt}
Subject: Your paper digest
Message-ID: {mid}

The digest.
--arf_boundary--
"""

AUTO_REPLY = """\
From: Lin <lin@example.org>
To: {verp}
Subject: Out of office: Your paper digest
Auto-Submitted: auto-replied

I am away until December.
"""


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: SmtpServer) -> Path:
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET_KEY)
    return write_config(
        tmp_path,
        sources=[samples_source()],
        subscribers=SUBSCRIBERS,
        tables={
            "delivery": {"method": "smtp"},
            "smtp": {"host": smtp_server.host, "port": smtp_server.port, "security": "none", "timeout": 5},
            "bounces": {"address": "bounces@example.org", "maildir": "var/bounces"},
        },
    )


def verp(name: str) -> str:
    return verp_address("bounces@example.org", f"{name}@example.org", TEST_SECRET_KEY)


def deliver(folder: Path, name: str, text: str) -> None:
    for sub in ("new", "cur", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "new" / f"1795413662.{name}.mail.example.org").write_bytes(text.encode())


def test_bounces_and_complaints_suspend_the_right_subscribers_once(
    configured: Path, now: datetime, smtp_server: SmtpServer
) -> None:
    settings = load_settings(configured)
    with Store.open(settings.database) as store:
        pipeline.run_once(Services(settings), store, now)
    # Each digest's envelope sender is the subscriber's own signed return path.
    senders = {rcpts[0]: sender for sender, rcpts, _ in smtp_server.handler.messages}
    assert senders == {f"{n}@example.org": verp(n) for n in NAMES}
    assert len(set(senders.values())) == 5 and all(len(s.split("@")[0]) <= 64 for s in senders.values())

    box = settings.bounces.maildir
    hard = {
        "action": "failed",
        "status": "5.1.1",
        "code": 550,
        "text": "Recipient address rejected: User unknown",
    }
    deliver(
        box,
        "ada",
        POSTFIX_DSN.format(verp=verp("ada"), rcpt="ada@example.org", subject="Undelivered Mail", **hard),
    )
    deliver(box, "grace", EXIM_BOUNCE.format(verp=verp("grace"), rcpt="grace@example.org"))
    mids = {rcpts[0]: str(m["Message-ID"]) for _, rcpts, m in smtp_server.handler.messages}
    # A feedback loop reports to its own address, without our VERP tag: the original's Message-ID is the proof.
    complaint = ARF_COMPLAINT.format(
        verp="digest@example.org", rcpt="hopper@example.org", mid=mids["hopper@example.org"]
    )
    deliver(box, "hopper", complaint)
    soft = {"action": "delayed", "status": "4.2.2", "code": 452, "text": "Mailbox full"}
    deliver(
        box,
        "lin",
        POSTFIX_DSN.format(verp=verp("lin"), rcpt="lin@example.org", subject="Delayed Mail", **soft),
    )
    local = verp("katherine").split("@")[0]
    forged = (
        local[:-3] + ("abc" if not local.endswith("abc") else "def") + "@example.org"
    )  # a wrong signature
    deliver(
        box,
        "forged",
        POSTFIX_DSN.format(verp=forged, rcpt="katherine@example.org", subject="Undelivered Mail", **hard),
    )
    deliver(box, "away", AUTO_REPLY.format(verp=verp("lin")))

    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    out = cli("bounces", "--json", "--config", str(configured), env=env)
    assert out.returncode == 0, out.stderr
    outcomes = {o["file"].split(".")[1]: o for o in json.loads(out.stdout)}
    assert {k: (o["kind"], o["subscribers"], o["suspended"]) for k, o in outcomes.items()} == {
        "ada": (HARD, ["ada@example.org"], ["ada@example.org"]),
        "grace": (HARD, ["grace@example.org"], ["grace@example.org"]),
        "hopper": (COMPLAINT, ["hopper@example.org"], ["hopper@example.org"]),
        "lin": (SOFT, ["lin@example.org"], []),
        "forged": (None, [], []),
        "away": (None, [], []),
    }
    assert not any((box / "new").iterdir())
    assert len(list((box / ".processed" / "cur").iterdir())) == 4
    assert len(list((box / ".unrecognised" / "cur").iterdir())) == 2

    again = cli("bounces", "--config", str(configured), env=env)
    assert again.returncode == 0 and "read 0 message(s)" in again.stdout  # nothing is read twice

    with Store.open(settings.database) as store:
        report = pipeline.run_once(Services(settings), store, now + timedelta(days=1))
    status = {s.email: s.status for s in report.subscribers}
    assert {e for e, s in status.items() if s == Status.BOUNCED} == {
        "ada@example.org",
        "grace@example.org",
        "hopper@example.org",
    }
    listed = cli("subscribers", "--json", "--config", str(configured), env=env)
    reasons = {s["email"]: s.get("bounce_reason", "") for s in json.loads(listed.stdout)}
    assert all(
        reasons[e].startswith(("hard: ", "complaint: ")) for e in status if status[e] == Status.BOUNCED
    )
    assert "bounce_reason" not in {k for s in json.loads(listed.stdout) if not s["bouncing"] for k in s}


def test_soft_bounces_suspend_at_three_within_a_week_of_each_other(tmp_path: Path, now: datetime) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        store.readers.add_many([Subscriber("lin@example.org", "", Profile(("RAG",)))], now)
        assert not store.readers.record_bounce("lin@example.org", SOFT, "mailbox full", now)
        assert not store.readers.record_bounce(
            "lin@example.org", SOFT, "mailbox full", now + timedelta(days=6)
        )
        # Eight days later: the count starts again.
        assert not store.readers.record_bounce(
            "lin@example.org", SOFT, "mailbox full", now + timedelta(days=14)
        )
        assert not store.readers.record_bounce(
            "lin@example.org", SOFT, "mailbox full", now + timedelta(days=15)
        )
        assert store.readers.record_bounce("lin@example.org", SOFT, "mailbox full", now + timedelta(days=16))
        assert store.readers.get("lin@example.org").bounce_reason == "soft: mailbox full"
        assert store.readers.resume("lin@example.org", now + timedelta(days=17))
        assert not store.readers.record_bounce(
            "lin@example.org", SOFT, "mailbox full", now + timedelta(days=17)
        )
        assert not store.readers.record_bounce("nobody@example.org", HARD, "user unknown", now)


def test_a_bounce_maildir_that_is_not_one_is_a_clear_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    out = cli("bounces", "--maildir", str(tmp_path / "nowhere"), "--config", str(cfg), env=env)
    assert out.returncode == 2 and "is not a Maildir" in out.stderr


def forged_complaint(rcpts: list[str], mid: str) -> str:
    """An ARF report anyone can write: no VERP tag, every reader named as a recipient, a made-up original."""
    named = "".join(f"Original-Rcpt-To: <{r}>\n" for r in rcpts)
    return ARF_COMPLAINT.format(verp="digest@example.org", rcpt=rcpts[0], mid=mid).replace(
        f"Original-Rcpt-To: <{rcpts[0]}>\n", named
    )


def test_complaints_and_bounces_act_only_on_mail_we_sent(
    configured: Path, now: datetime, smtp_server: SmtpServer
) -> None:
    """A forged ARF report naming five readers, a bounce naming a reader without our tag, a DSN quoting a
    Message-ID we never made: nobody is suspended. A DSN quoting the real Message-ID of Lin's digest, and
    naming Ada as the failed recipient, suspends Lin only: what a report says is never trusted."""
    settings = load_settings(configured)
    with Store.open(settings.database) as store:
        pipeline.run_once(Services(settings), store, now)
    mids = {rcpts[0]: str(m["Message-ID"]) for _, rcpts, m in smtp_server.handler.messages}
    box = settings.bounces.maildir
    everyone = [f"{n}@example.org" for n in NAMES]
    deliver(box, "arf", forged_complaint(everyone, "<digest.20261123.0123456789abcdef01234567@example.org>"))
    hard = {"action": "failed", "status": "5.1.1", "code": 550, "text": "User unknown"}
    untagged = POSTFIX_DSN.format(
        verp="bounces@example.org", rcpt="grace@example.org", subject="Undelivered", **hard
    )
    deliver(box, "untagged", untagged)
    quoting = POSTFIX_DSN.format(
        verp="bounces@example.org", rcpt="ada@example.org", subject="Undelivered", **hard
    )
    quoting = quoting.replace(
        "Subject: Your paper digest\n", f"Subject: Your paper digest\nMessage-ID: {mids['lin@example.org']}\n"
    )
    deliver(box, "quoting", quoting)
    with Store.open(settings.database) as store:
        outcomes = {
            o.file.split(".")[1]: o for o in pipeline.process_bounces(Services(settings), store, box, now)
        }
        bouncing = {s.email for s in store.readers.all(include_inactive=True) if s.bouncing}
    assert {k: (o.subscribers, o.suspended) for k, o in outcomes.items()} == {
        "arf": ((), ()),
        "untagged": ((), ()),
        "quoting": (("lin@example.org",), ("lin@example.org",)),
    }
    assert bouncing == {"lin@example.org"}
    assert len(list((box / ".unrecognised" / "cur").iterdir())) == 2


NESTED = 2000


def nested_parts(levels: int) -> bytes:
    """A message of ``levels`` multiparts each inside the one before: past what a recursive parser takes."""
    head = b"From: x@example.net\nTo: bounces@example.org\nSubject: nested\nMIME-Version: 1.0\n"
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(levels)
    )
    closing = b"".join(b"\n--b%d--\n" % i for i in reversed(range(levels)))
    return head + opening + b"Content-Type: text/plain\n\nx\n" + closing


def test_one_bad_returned_mail_never_stops_the_others(
    configured: Path, now: datetime, smtp_server: SmtpServer
) -> None:
    """A mail of 2,000 nested parts, a folder, an empty file and a mail over the size cap, around a real
    bounce: the bounce is acted on, every other entry is moved to .unrecognised, `digest bounces` exits 0,
    and a second run finds nothing left to read."""
    settings = load_settings(configured)
    with Store.open(settings.database) as store:
        pipeline.run_once(Services(settings), store, now)
    box = settings.bounces.maildir
    deliver(box, "0nested", "")
    (box / "new" / "1795413662.0nested.mail.example.org").write_bytes(nested_parts(NESTED))
    assert 100_000 < len(nested_parts(NESTED)) < 150_000
    (box / "new" / "1795413662.1folder.mail.example.org").mkdir()
    (box / "new" / "1795413662.2empty.mail.example.org").write_bytes(b"")
    with (box / "new" / "1795413662.3huge.mail.example.org").open("wb") as fh:
        fh.truncate(pipeline.BOUNCE_BYTES_MAX + 1)
    hard = {"action": "failed", "status": "5.1.1", "code": 550, "text": "User unknown"}
    deliver(
        box,
        "4ada",
        POSTFIX_DSN.format(verp=verp("ada"), rcpt="ada@example.org", subject="Undelivered", **hard),
    )
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_CONFIG"}
    out = cli("bounces", "--json", "--config", str(configured), env=env)
    assert out.returncode == 0, out.stderr
    outcomes = {o["file"].split(".")[1]: (o["kind"], o["suspended"]) for o in json.loads(out.stdout)}
    assert outcomes == {
        "0nested": (None, []),
        "1folder": (None, []),
        "2empty": (None, []),
        "3huge": (None, []),
        "4ada": (HARD, ["ada@example.org"]),
    }
    assert "Traceback" not in out.stderr
    assert not any((box / "new").iterdir())
    assert len(list((box / ".unrecognised" / "cur").iterdir())) == 4
    again = cli("bounces", "--config", str(configured), env=env)
    assert again.returncode == 0 and "read 0 message(s)" in again.stdout
