"""Headers, the terminal, operator mistakes, another application's database,
exit codes, internationalised addresses and honest reports; real `digest` processes, real files, a real
aiosmtpd server, and real permission denials.

As root, permission tests drop the capabilities that let root ignore file modes (``setpriv``), so a file
mode of 000 is refused by the kernel as it would be for any other user.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import (
    TEST_SECRET_KEY,
    RecordingHandler,
    SmtpServer,
    free_port,
    read_maildir,
    samples_source,
    write_config,
)
from running import DIGEST, cli

from digest.email.render import SUBJECT_MAX, Renderer
from digest.email.smtp import SmtpTransport
from digest.links import Links
from digest.models import Digest, Match, Paper, Profile, Reason, Status, Subscriber
from digest.run import pipeline
from digest.settings import load_settings
from digest.store import BOUNCE_LIMIT, Store
from digest.tokens import Signer
from digest.wiring import Services

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
ADA = {"email": "ada@example.org", "name": "Ada", "keywords": ["speculative decoding"], "max_papers": 3}
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


def run_digest(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> Any:
    """``digest ARGS`` in the test's environment without ``DIGEST_*`` plus ``env``: in this process, or a
    process of its own under ``prefix`` (another user's rights)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    if prefix is None:
        return cli(*args, cwd=cwd, env={**base, **(env or {})})
    return subprocess.run(
        [*prefix, DIGEST, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**base, **(env or {})},
    )


def one_error(result: Any) -> str:
    """The command failed with exit 2 and one message on stderr, no traceback; returns the message."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("digest: ")
    return str(result.stderr)


# -- 3. headers stay within RFC 5322 ---------------------------------------------------------------------


def test_long_keywords_and_names_keep_every_header_line_within_998_octets() -> None:
    keywords = tuple(f"{w} " * 24 + w for w in ("alpha", "gamma", "delta"))  # ~150 characters each
    sub = Subscriber("ada@example.org", "Ada " + "Lovelace-" * 2_000, Profile(keywords))
    matches = tuple(
        Match(Paper(f"Paper {i}", "abstract", arxiv_id=f"2411.0000{i}"), 2, (Reason(keywords[i], "title"),))
        for i in range(3)
    )
    renderer = Renderer(
        sender="Paper Digest <d@example.org>",
        links=Links(Signer([TEST_SECRET_KEY]), "https://digest.example.org/" + "p" * 800),
    )
    message = renderer.compose(Digest(sub, matches, date(2026, 11, 23)), NOW).outgoing
    head = message.data.split(b"\n\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\n"))
    parsed = message.message()
    assert len(str(parsed["Subject"])) <= SUBJECT_MAX and str(parsed["Subject"]).endswith("· Nov 23")
    assert "…" in str(parsed["Subject"])
    assert len(str(parsed["To"])) < 200 and "ada@example.org" in str(parsed["To"])
    assert "p" * 800 in str(parsed["List-Unsubscribe"]).replace("\n", "").replace(" ", "")


# -- 4. untrusted text is inert in the terminal ----------------------------------------------------------


def test_markup_and_escapes_from_feeds_and_names_print_literally(tmp_path: Path) -> None:
    capture = tmp_path / "capture.txt"
    abstract = "We study speculative decoding and show that it is fast on many benchmarks. " * 3
    capture.write_text(
        f"Daily Papers\n[/] Speculative decoding [blink]now[/blink] \x1b[31m red\n{abstract}\n",
        encoding="utf-8",
    )
    sub = {**ADA, "name": "[link=http://evil.example]Ada[/link] [/]"}
    cfg = write_config(
        tmp_path,
        sources=[{"kind": "snapshot", "name": "[bold red]evil[/]", "path": str(capture)}],
        subscribers=[sub],
    )
    result = run_digest("run", "--config", str(cfg), env={"FORCE_COLOR": "1", "COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    assert "[bold red]evil[/]" in result.stdout and "[blink]now[/blink]" in result.stdout
    assert "\x1b[31m red" not in result.stdout  # the feed's escape sequence never reaches the terminal
    listed = run_digest("subscribers", "--config", str(cfg), env={"FORCE_COLOR": "1", "COLUMNS": "300"})
    assert listed.returncode == 0 and "[link=http://evil.example]Ada[/link] [/]" in listed.stdout


# -- 5. operator mistakes: exit 2, one message naming the file or setting and the fix -----------------


def test_a_config_that_is_not_utf8(tmp_path: Path) -> None:
    cfg = tmp_path / "digest.toml"
    cfg.write_bytes(b'sender = "Caf\xe9 <d@example.org>"\n')
    assert "is not UTF-8 text" in one_error(run_digest("run", "--config", str(cfg)))


def test_a_dotenv_that_is_not_utf8(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, subscribers=[ADA])
    (tmp_path / ".env").write_bytes(b"DIGEST_SENDER=Caf\xe9\n")
    message = one_error(run_digest("subscribers", "--config", str(cfg), cwd=tmp_path))
    assert ".env is not UTF-8 text" in message


@pytest.mark.processes
def test_an_unreadable_config_and_dotenv(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, subscribers=[ADA])
    cfg.chmod(0o000)
    message = one_error(run_digest("run", "--config", str(cfg), prefix=UNPRIVILEGED))
    assert f"cannot read {cfg}: Permission denied" in message and "permissions" in message
    cfg.chmod(0o644)
    (tmp_path / ".env").write_text("DIGEST_SENDER=x\n")
    (tmp_path / ".env").chmod(0o000)
    message = one_error(run_digest("run", "--config", str(cfg), cwd=tmp_path, prefix=UNPRIVILEGED))
    assert ".env: Permission denied" in message


def test_a_missing_templates_dir_names_the_setting(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, top={"templates_dir": "my-templates"}, subscribers=[ADA])
    message = one_error(run_digest("run", "--config", str(cfg)))
    assert "templates_dir: the folder" in message and "does not exist" in message


@pytest.mark.processes
def test_a_database_folder_that_cannot_be_written(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    cfg = write_config(
        tmp_path, top={"database": "locked/digest.sqlite3"}, sources=[samples_source()], subscribers=[ADA]
    )
    message = one_error(run_digest("run", "--config", str(cfg), prefix=UNPRIVILEGED))
    assert "Permission denied" in message and "this user may write" in message
    assert list(folder.iterdir()) == []


@pytest.mark.processes
def test_a_database_file_that_cannot_be_written(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=[ADA])
    assert run_digest("ingest", "--config", str(cfg)).returncode == 0
    db = tmp_path / "var" / "digest.sqlite3"
    db.chmod(0o444)
    message = one_error(run_digest("run", "--config", str(cfg), prefix=UNPRIVILEGED))
    assert f"cannot write the database {db}" in message and "this user may write" in message


def test_a_damaged_database_says_so_and_how_to_recover_and_blames_no_source(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=[ADA])
    assert run_digest("ingest", "--config", str(cfg)).returncode == 0
    db = tmp_path / "var" / "digest.sqlite3"
    data = bytearray(db.read_bytes())
    assert len(data) > 12 * 4096
    data[4096 * 2 : 4096 * 12] = os.urandom(4096 * 10)  # pages of the papers table
    db.write_bytes(bytes(data))
    message = one_error(run_digest("run", "--config", str(cfg)))
    assert f"the database {db} is damaged" in message and ".recover" in message
    assert "samples" not in message


def test_config_before_the_command_and_unknown_environment_names(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, subscribers=[ADA])
    result = run_digest("--config", str(cfg), "subscribers", "--json", env={"DIGEST_SMTP_HOST": "x"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["email"] == "ada@example.org"
    assert "DIGEST_SMTP_HOST names no setting" in result.stderr
    assert "DIGEST_SMTP__HOST" not in result.stderr  # only the wrong name is named


# -- 6. another application's SQLite file is never touched ------------------------------------------


def test_another_applications_database_is_refused_and_left_byte_for_byte(tmp_path: Path) -> None:
    other = tmp_path / "notes.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.close()
    before = other.read_bytes()
    cfg = write_config(tmp_path, top={"database": str(other)}, sources=[samples_source()], subscribers=[ADA])
    for command in (["run"], ["ingest"], ["subscribers"], ["preview", "ada@example.org"]):
        message = one_error(run_digest(*command, "--config", str(cfg)))
        assert "is not a digest database" in message and "left untouched" in message
    assert other.read_bytes() == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(("-wal", "-shm", "-journal"))]


# -- 7. an internal error is exit 2, never 1 -------------------------------------------------------


def test_an_internal_error_is_exit_2_with_where_to_report_it(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    shipped = Path(__file__).resolve().parent.parent / "templates"
    (templates / "digest.txt").write_text((shipped / "digest.txt").read_text())
    (templates / "digest.html").write_text("<html><body>{{ count // (count - count) }}</body></html>")
    cfg = write_config(
        tmp_path, top={"templates_dir": "templates"}, sources=[samples_source()], subscribers=[ADA]
    )
    result = run_digest("run", "--json", "--config", str(cfg))
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["internal_errors"] == 1
    (ada,) = report["subscribers"]
    assert ada["status"] == "failed" and "internal error while rendering: ZeroDivisionError" in ada["error"]
    summary = run_digest("run", "--config", str(cfg))
    assert summary.returncode == 2 and "internal error(s): please report it" in summary.stdout


# -- 9. internationalised addresses -------------------------------------------------------------------


def _smtp_settings(tmp_path: Path, port: int, subscribers: list[dict[str, Any]]) -> Any:
    cfg = write_config(
        tmp_path,
        sources=[samples_source()],
        subscribers=subscribers,
        tables={
            "delivery": {"method": "smtp", "retries": 0},
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5},
        },
    )
    return load_settings(cfg)


@pytest.fixture
def ascii_smtp_server() -> Iterator[SmtpServer]:
    """A real aiosmtpd server that does not offer SMTPUTF8 (as many relays do not)."""
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    yield SmtpServer("127.0.0.1", port, handler)
    controller.stop()


def test_an_internationalised_domain_goes_as_punycode_without_smtputf8(
    tmp_path: Path, ascii_smtp_server: SmtpServer
) -> None:
    """An IDN domain is sent as punycode, so it needs no SMTPUTF8; a non-ASCII local part cannot be, and the
    refusal for want of SMTPUTF8 is ours: it never makes the subscriber bouncing."""
    smtp_server = ascii_smtp_server
    subs = [
        {"email": "ada@bücher.example", "keywords": ["speculative decoding"]},
        {"email": "zoë@example.org", "keywords": ["speculative decoding"]},
    ]
    settings = _smtp_settings(tmp_path, smtp_server.port, subs)
    for day in range(BOUNCE_LIMIT + 1):
        with Store.open(settings.database) as store:
            transport = SmtpTransport(settings.smtp, settings.sender_address)
            report = pipeline.run_once(
                Services(settings, transport=transport), store, NOW + timedelta(days=day)
            )
        status = {s.email: s for s in report.subscribers}
        assert status["zoë@example.org"].status == Status.FAILED, day
        assert "SMTPUTF8" in (status["zoë@example.org"].error or "")
    (message,) = smtp_server.handler.received_by("ada@xn--bcher-kva.example")
    assert "ada@xn--bcher-kva.example" in str(message["To"])
    with Store.open(settings.database) as store:
        assert not store.readers.get("zoë@example.org").bouncing


# -- 10. honest reports -------------------------------------------------------------------------------


def test_reports_name_message_ids_not_modified_sources_and_resume_keeps_the_profile(
    tmp_path: Path, http_server: Any
) -> None:
    from conftest import Route

    http_server.routes["/hf.json"] = Route(
        json.dumps(
            [{"paper": {"id": "2411.00009", "title": "Speculative decoding at scale", "summary": "Fast."}}]
        ).encode(),
        content_type="application/json",
        etag='"v1"',
    )
    source = {"kind": "hf-json", "name": "hf", "url": http_server.url("/hf.json")}
    cfg = write_config(tmp_path, sources=[source])
    assert (
        run_digest(
            "subscribe", "bob@example.org", "-k", "speculative decoding", "-x", "survey", "--config", str(cfg)
        ).returncode
        == 0
    )
    first = json.loads(run_digest("run", "--json", "--config", str(cfg)).stdout)
    (bob,) = first["subscribers"]
    assert bob["status"] == "sent" and bob["message_id"].startswith("<digest.")
    (message,) = read_maildir(tmp_path / "var" / "outbox")
    assert str(message["Message-ID"]) == bob["message_id"]
    second = json.loads(run_digest("run", "--json", "--config", str(cfg)).stdout)
    assert second["sources"][0]["status"] == "not-modified"
    summary = run_digest("run", "--config", str(cfg))
    assert "not modified" in summary.stdout

    assert run_digest("unsubscribe", "bob@example.org", "--config", str(cfg)).returncode == 0
    resumed = run_digest("resume", "bob@example.org", "--config", str(cfg))
    assert resumed.returncode == 0 and "was unsubscribed" in resumed.stdout
    (listed,) = json.loads(run_digest("subscribers", "--json", "--config", str(cfg)).stdout)
    assert (
        listed["keywords"] == ["speculative decoding"]
        and listed["exclude"] == ["survey"]
        and listed["active"]
    )
    unknown = one_error(run_digest("resume", "nobody@example.org", "--config", str(cfg)))
    assert "no subscriber nobody@example.org" in unknown
