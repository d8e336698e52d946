"""The `digest` command, its exit codes, its config handling, its report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import REPO, SAMPLES_REPORT, HttpServer, Route, read_maildir, samples_source, write_config
from running import DIGEST, Ran, cli, digest_env, process

from digest.cli import main
from digest.run.runlock import run_lock

ADA = {"email": "ada@example.org", "name": "Ada", "keywords": ["speculative decoding"], "max_papers": 3}
COMMANDS = sorted(main.commands)


def digest(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Ran:
    """``digest ARGS`` in this process, in the test's environment without ``DIGEST_*`` plus ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return cli(*args, cwd=cwd, env={**full_env, **(env or {})})


def test_the_commands_are_the_ones_the_issue_names() -> None:
    assert COMMANDS == [
        "bounces",
        "feedback",
        "ingest",
        "migrate-store",
        "preview",
        "resume",
        "run",
        "schedule",
        "serve",
        "subscribe",
        "subscribers",
        "unsubscribe",
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "--config" in result.output
    assert len(result.output.splitlines()) > 4


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented(command: str) -> None:
    operations = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    assert re.search(rf"^### `digest {command}\b", operations, re.MULTILINE), (
        f"docs/operations.md lacks a '### `digest {command}' section"
    )


def _setting_names() -> list[str]:
    """Every setting as docs/configuration.md names it: ``database``, ``[smtp] host``, ``[[sources]] url``."""
    from pydantic import BaseModel

    from digest.settings import Settings

    names = []
    for name, info in Settings.model_fields.items():
        if name == "config_path":
            continue
        kind: Any = info.annotation
        inner = getattr(kind, "__args__", (None,))[0] if name in ("sources", "subscribers") else kind
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            table = f"[[{name}]]" if name in ("sources", "subscribers") else f"[{name}]"
            names += [f"{table} {field}" for field in inner.model_fields]
        else:
            names.append(name)
    return names


@pytest.mark.parametrize("setting", _setting_names())
def test_every_setting_is_documented(setting: str) -> None:
    reference = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = {f"| `{setting}` |"}
    if setting in ("[[sources]] path", "[[sources]] url"):
        rows = {"| `[[sources]] path` / `url` |"}
    assert any(row in reference for row in rows), f"docs/configuration.md lacks a row for `{setting}`"


def test_run_json_report_and_exit_0(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=[ADA])
    result = digest("run", "--config", str(cfg), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (source,) = report["sources"]
    assert datetime.fromisoformat(source.pop("last_new")) > datetime.now(UTC) - timedelta(minutes=10)
    assert source == SAMPLES_REPORT
    (sub,) = report["subscribers"]
    assert sub["email"] == "ada@example.org" and sub["status"] == "sent"
    assert len(sub["papers"]) == 3
    assert set(sub["papers"][0]) == {"id", "title", "score", "matched", "reasons"}
    assert sub["papers"][0]["matched"] == ["speculative decoding"]
    assert len(read_maildir(tmp_path / "var" / "outbox")) == 1
    again = digest("run", "--config", str(cfg), "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["subscribers"][0]["status"] == "nothing-new"
    assert len(read_maildir(tmp_path / "var" / "outbox")) == 1


def test_run_summary_table(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=[ADA])
    result = digest("run", "--config", str(cfg))
    assert result.returncode == 0
    for text in ("Sources", "samples", "511", "375", "Subscribers", "ada@example.org", "sent", "Maildir"):
        assert text in result.stdout


def test_exit_1_when_a_source_fails(tmp_path: Path, http_server: HttpServer) -> None:
    http_server.routes["/feed"] = Route(b"", status=500)
    cfg = write_config(
        tmp_path,
        sources=[{"kind": "feed", "name": "down", "url": http_server.url("/feed")}, samples_source()],
        subscribers=[ADA],
    )
    result = digest("run", "--config", str(cfg), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert "HTTP 500" in report["sources"][0]["error"]
    assert report["subscribers"][0]["status"] == "sent"


def test_dry_run_sends_and_records_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=[ADA])
    result = digest("run", "--config", str(cfg), "--dry-run", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["subscribers"][0]["status"] == "dry-run"
    assert (
        not (tmp_path / "var" / "outbox" / "new").exists() or read_maildir(tmp_path / "var" / "outbox") == []
    )
    real = digest("run", "--config", str(cfg), "--json")
    assert json.loads(real.stdout)["sources"][0]["new"] == 375  # the dry run stored nothing


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ('lookback_days = "soon"\n', "lookback_days: Input should be a valid integer"),
        ('timezone = "Mars/Olympus"\n', "unknown time zone 'Mars/Olympus'"),
        ('[[sources]]\nkind = "rss"\nname = "x"\npath = "a"\n', "sources[0].kind"),
        ('[[sources]]\nkind = "feed"\nname = "x"\n', "give exactly one of path"),
        ('[smtp]\npassword = "hunter2"\n', "smtp.password: passwords are not read from the config file"),
        ('[delivery]\nmethod = "carrier-pigeon"\n', "delivery.method"),
        ("lookback_dayz = 3\n", "lookback_dayz: unknown setting"),
        ('[[subscribers]]\nemail = "not an address"\n', "subscribers[0].email"),
        ("this is = not toml [", "is not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_message_and_exit_2(tmp_path: Path, config: str, expected: str) -> None:
    cfg = tmp_path / "digest.toml"
    cfg.write_text(config, encoding="utf-8")
    result = digest("run", "--config", str(cfg))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("digest: error:")


def test_missing_config_names_the_fix(tmp_path: Path) -> None:
    result = digest("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "no config file at config/digest.toml" in result.stderr
    assert "--config" in result.stderr


@pytest.mark.processes
def test_another_run_holds_the_lock(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=[ADA])
    lock = tmp_path / "var" / "digest.sqlite3.lock"
    with run_lock(lock, datetime.now(UTC)):
        result = process("run", "--config", str(cfg), env=digest_env())  # another process's run
    assert result.returncode == 2
    assert f"pid {os.getpid()}" in result.stderr
    assert "another digest run holds the lock" in result.stderr
    assert digest("run", "--config", str(cfg)).returncode == 0  # freed


def test_digest_config_env_relative_paths_and_env_overrides(tmp_path: Path) -> None:
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "listings").mkdir()
    for f in (REPO / "config" / "samples").glob("00[12]_*.txt"):
        (confdir / "listings" / f.name).write_bytes(f.read_bytes())
    cfg = write_config(
        confdir, sources=[{"kind": "snapshot", "name": "s", "path": "listings/*.txt"}], subscribers=[ADA]
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"DIGEST_CONFIG": str(cfg), "DIGEST_DELIVERY__MAILDIR": "mail/box", "DIGEST_LOOKBACK_DAYS": "2"}
    result = digest("run", "--json", cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sources"][0]["papers"] == 77 + 73
    assert (confdir / "var" / "digest.sqlite3").is_file()  # relative to the config file, not the cwd
    assert len(read_maildir(confdir / "mail" / "box")) == 1  # the env override, resolved the same way
    assert not (elsewhere / "var").exists()


def test_subscribe_subscribers_unsubscribe(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path, sources=[samples_source()], subscribers=[ADA]))
    out = digest(
        "subscribe",
        "Bob@Example.ORG",
        "--keyword",
        "RAG",
        "-k",
        "test-time scaling",
        "--exclude",
        "survey",
        "--max",
        "4",
        "--config",
        cfg,
    )
    assert out.returncode == 0, out.stderr
    assert "subscribed Bob@example.org: RAG, test-time scaling" in out.stdout
    listed = json.loads(digest("subscribers", "--json", "--config", cfg).stdout)
    assert [(s["email"], s["keywords"], s["exclude"], s["max_papers"]) for s in listed] == [
        ("ada@example.org", ["speculative decoding"], [], 3),
        ("Bob@example.org", ["RAG", "test-time scaling"], ["survey"], 4),
    ]
    table = digest("subscribers", "--config", cfg).stdout
    assert "Bob@example.org" in table and "test-time scaling" in table
    run = json.loads(digest("run", "--json", "--config", cfg).stdout)
    assert {s["email"]: s["status"] for s in run["subscribers"]} == {
        "Bob@example.org": "sent",
        "ada@example.org": "sent",
    }
    assert digest("unsubscribe", "bob@example.org", "--config", cfg).returncode == 0
    assert [s["email"] for s in json.loads(digest("subscribers", "--json", "--config", cfg).stdout)] == [
        "ada@example.org"
    ]
    missing = digest("unsubscribe", "nobody@example.org", "--config", cfg)
    assert missing.returncode == 2 and "no subscriber nobody@example.org" in missing.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["not-an-address", "-k", "RAG"], "is not a usable email address"),
        (["bob@example.org", "-k", "  "], "subscriber bob@example.org, keyword '  ': the keyword is empty"),
        (["bob@example.org", "-k", "*"], "keyword '*': the keyword has no letters or digits"),
        (["bob@example.org", "-k", "ok", "-x", "--"], "keyword '--'"),
    ],
)
def test_subscribe_refuses_bad_input(tmp_path: Path, args: list[str], expected: str) -> None:
    cfg = str(write_config(tmp_path))
    result = digest("subscribe", *args, "--config", cfg)
    assert result.returncode == 2
    assert expected in result.stderr


def test_preview_formats_and_no_side_effects(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path, sources=[samples_source()], subscribers=[ADA]))
    db = tmp_path / "var" / "digest.sqlite3"
    none_yet = digest("preview", "ada@example.org", "--config", cfg)
    assert (
        none_yet.returncode == 2 and "no database" in none_yet.stderr and "digest ingest" in none_yet.stderr
    )
    assert not db.exists()  # preview never creates a database
    assert digest("ingest", "--config", cfg).returncode == 0  # stores the papers, sends nothing
    assert not (tmp_path / "var" / "outbox").exists()
    before = db.read_bytes()
    as_json = json.loads(digest("preview", "ada@example.org", "--format", "json", "--config", cfg).stdout)
    assert len(as_json["papers"]) == 3 and as_json["more"] == 6
    assert as_json["papers"][0]["matched"] == [{"keyword": "speculative decoding", "where": "title"}]
    text = digest("preview", "ada@example.org", "--config", cfg).stdout
    assert text.startswith("3 new papers on speculative decoding")
    html = digest("preview", "ada@example.org", "--format", "html", "--config", cfg).stdout
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert db.read_bytes() == before
    assert not (tmp_path / "var" / "outbox").exists()
    unknown = digest("preview", "zed@example.org", "--config", cfg)
    assert unknown.returncode == 2 and "no subscriber zed@example.org" in unknown.stderr


@pytest.mark.processes
@pytest.mark.parametrize(("stop", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_schedule_stops_cleanly_with_0_on_sigterm_and_130_on_ctrl_c(
    tmp_path: Path, stop: signal.Signals, code: int
) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=[ADA], top={"send_at": "03:00"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    with subprocess.Popen(
        [DIGEST, "schedule", "--config", str(cfg)], stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert "readers' default is daily at 03:00 (UTC)" in line
            proc.send_signal(stop)  # at once: however far it got, it stops cleanly
            assert proc.wait(timeout=10) == code
        finally:
            if proc.poll() is None:
                proc.kill()
