"""The store's migrations on a real PostgreSQL cluster (started by the test session).

The schema is written once (``digest.store.schema``) and rewritten for PostgreSQL where the dialects
differ; these tests check that every migration applies there, that it gives the same tables and columns
as on SQLite, and that addresses (mailbox keys since schema 12) are compared byte for byte.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from running import cli

from digest.models import Paper
from digest.store import SCHEMA_VERSION, RunProgress, Store
from digest.store.schema import MIGRATIONS, POSTGRESQL_PREAMBLE, for_postgresql


@pytest.fixture
def database(postgres_database: str) -> str:
    return postgres_database


def _migrated(url: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(url)
    with conn.transaction():
        conn.execute(POSTGRESQL_PREAMBLE)
    for migration in MIGRATIONS:
        with conn.transaction():
            conn.execute(for_postgresql(migration))  # several statements: psycopg sends them as one
    return conn


def test_every_migration_applies_and_gives_the_tables_and_columns_of_sqlite(
    database: str, tmp_path: Path
) -> None:
    with _migrated(database) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
    on_postgresql: dict[str, set[str]] = {}
    for table, column in rows:
        on_postgresql.setdefault(str(table), set()).add(str(column))
    with Store.open(tmp_path / "s.sqlite3") as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = [r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        on_sqlite = {t: {r[1] for r in store.conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    assert on_postgresql == on_sqlite


def test_addresses_are_compared_byte_for_byte_as_keys(database: str) -> None:
    """Since schema 12 the address columns hold mailbox keys and compare them byte for byte ("C"), as
    SQLite's NOCASE does on keys (they have no ASCII capital): ICU's case-insensitive collation, used
    before, took "ß" for "ss" and "É" for "é", and so two mailboxes for one."""
    with _migrated(database) as conn:
        insert = (
            "INSERT INTO subscribers (email, max_papers, origin, created, updated)"
            " VALUES (%s, 20, 'cli', 'now', 'now')"
        )
        for key in ("strasse@example.org", "straße@example.org", "josé@example.org", "josÉ@example.org"):
            conn.execute(insert, (key,))
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute(insert, ("strasse@example.org",))
        found = conn.execute(
            "SELECT email FROM subscribers WHERE email = %s", ("straße@example.org",)
        ).fetchall()
        assert found == [("straße@example.org",)]
        # Papers get their ref from the database, as SQLite's rowid gives it.
        paper = (
            "INSERT INTO papers (title_key, title, abstract, source, first_seen, last_seen)"
            " VALUES (%s, %s, '', 's', 'now', 'now') RETURNING pid"
        )
        refs = [conn.execute(paper, (t, t)).fetchone() for t in ("a", "b")]
        assert refs == [(1,), (2,)]


@pytest.mark.processes
def test_digest_run_on_postgresql_sends_once_through_claims(database: str, tmp_path: Path) -> None:
    """The daily job end to end on PostgreSQL: a preview and a dry run that change nothing, a real `digest
    run` (two worker processes) into a Maildir, then again the same day (nothing new); each run's range
    was claimed, done and the run finished."""
    import json

    from conftest import read_maildir, samples_source, write_config

    people = [{"email": f"reader{i}@example.org", "keywords": ["LLM"], "max_papers": 3} for i in range(6)]
    cfg = write_config(
        tmp_path,
        top={"database": database},
        sources=[samples_source()],
        subscribers=people,
        tables={"delivery": {"workers": 2}},
    )
    digest = ["--config", str(cfg)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cli(*digest, "ingest", env=env).check()
    # A preview and a dry run work inside a transaction that is never committed: nothing changes.
    preview = cli(*digest, "preview", "reader0@example.org", "--format", "json", env=env)
    assert preview.returncode == 0, preview.stderr
    assert json.loads(preview.stdout)["status"] == "would-send"
    dry = cli(*digest, "run", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    first = cli(*digest, "run", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["counts"] == {"sent": 6}
    again = cli(*digest, "run", "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout)["counts"] == {"nothing-new": 6}
    assert len(read_maildir(tmp_path / "var" / "outbox")) == 6
    with Store.open(database) as store:  # each run shared its one range out through a claim, and finished
        latest = store.runs.latest()
        assert latest is not None and latest >= 2
        assert store.runs.progress(latest) == RunProgress(done=1, held=0, free=0)
        (done,) = store.runs.ranges(latest)
        assert done.owner and done.claims == 1 and done.subscribers == 6


def test_migrate_store_copies_everything_and_the_history_holds(database: str, tmp_path: Path) -> None:
    """`digest migrate-store`: a SQLite store after a real run (papers, subscribers, outbox, sent records,
    feedback) copied into PostgreSQL with every count checked; the next run there sends nothing twice."""
    import json

    from conftest import samples_source, write_config

    people = [{"email": f"reader{i}@example.org", "keywords": ["LLM"], "max_papers": 3} for i in range(4)]
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=people)
    digest = ["--config", str(cfg)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    assert cli(*digest, "run", env=env).returncode == 0
    with Store.open(tmp_path / "var" / "digest.sqlite3") as store:
        (ref,) = store.conn.execute("SELECT pid FROM sent LIMIT 1").fetchone()
        store.feedback.set("reader0@example.org", ref, "more", datetime.now(UTC))
        before = {
            t: store.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("papers", "sent")
        }
    moved = cli(*digest, "migrate-store", "--to", database, env=env)
    assert moved.returncode == 0, moved.stderr
    assert f"papers: {before['papers']:,} rows copied and counted" in moved.stdout
    with Store.open(tmp_path / "var" / "digest.sqlite3") as store:
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {line.split(":")[0] for line in moved.stdout.splitlines() if "rows copied" in line} == tables
    again = cli(*digest, "migrate-store", "--to", database, env=env)
    assert again.returncode == 2 and "already holds data" in again.stderr  # never into a used database
    text = cfg.read_text(encoding="utf-8").replace(
        'database = "var/digest.sqlite3"', f'database = "{database}"'
    )
    cfg.write_text(text, encoding="utf-8")
    rerun = cli(*digest, "run", "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["counts"] == {"nothing-new": 4}  # the same day: already sent
    with Store.open(database) as store:
        assert store.feedback.of(["reader0@example.org"])["reader0@example.org"]["more"][0].ref == ref
        assert store.conn.execute("SELECT count(*) FROM sent").fetchone()[0] == before["sent"]
        # New rows get ids after the copied ones.
        store.papers.ingest([Paper("A paper after the move", "Its abstract.")], datetime.now(UTC))
        (top,) = store.conn.execute("SELECT max(pid) FROM papers").fetchone()
        assert top == before["papers"] + 1


def test_the_web_app_on_postgresql(database: str, tmp_path: Path) -> None:
    """`digest serve` on PostgreSQL: the manage page with its preview, a saved change, the sign-up rate
    limit kept in the database, and a one-click unsubscribe that the next run honours."""
    import json
    import re

    import httpx
    from conftest import TEST_SECRET_KEY, free_port, mails_to, samples_source, write_config
    from running import web

    from digest.tokens import Purpose, Signer

    port = free_port()
    cfg = write_config(
        tmp_path,
        top={"database": database, "base_url": f"http://127.0.0.1:{port}"},
        sources=[samples_source()],
    )
    digest = ["--config", str(cfg)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DIGEST_SECRET_KEY": TEST_SECRET_KEY}
    cli(*digest, "ingest", env=env).check()
    cli(*digest, "subscribe", "ada@example.org", "-k", "speculative decoding", env=env).check()
    signer = Signer([TEST_SECRET_KEY])
    with web(cfg, port, env) as base, httpx.Client(base_url=base) as client:
        page = client.get(f"/m/{signer.make(Purpose.MANAGE, 'ada@example.org')}")
        assert page.status_code == 200 and "matched: speculative decoding" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        saved = client.post(
            f"/m/{signer.make(Purpose.MANAGE, 'ada@example.org')}",
            data={"csrf": csrf.group(1), "keywords": "diffusion", "max_papers": "3", "action": "save"},
        )
        assert saved.status_code == 200 and "Saved." in saved.text
        for _ in range(4):
            asked = {"csrf": csrf.group(1), "email": "zoe@example.org", "keywords": "RAG"}
            assert client.post("/", data=asked).status_code == 200
        assert len(mails_to(tmp_path, "zoe@example.org", expect=3)) == 3
        run = cli(*digest, "run", "--json", env=env)
        (ada,) = json.loads(run.stdout)["subscribers"]
        assert ada["status"] == "sent" and all(p["matched"] == ["diffusion"] for p in ada["papers"])
        left = httpx.post(
            f"{base}/u/{signer.make(Purpose.UNSUBSCRIBE, 'ada@example.org')}",
            data={"List-Unsubscribe": "One-Click"},
        )
        assert left.status_code == 200 and "You are unsubscribed" in left.text
    with Store.open(database) as store:
        assert [s.email for s in store.readers.all()] == []


def test_a_profile_changes_only_by_its_owner_on_postgresql(database: str, tmp_path: Path) -> None:
    """The reader's library on PostgreSQL: a confirmation for an address that has a digest changes nothing,
    coming back weekly from the unsubscribe page keeps the profile, a pause until a date is kept, and the
    data download reads the times and ratings."""
    import re
    from datetime import date

    import httpx
    from conftest import TEST_SECRET_KEY, free_port, write_config
    from running import web

    from digest.subscriptions import Request as SignupRequest
    from digest.tokens import Purpose, Signer

    port = free_port()
    cfg = write_config(tmp_path, top={"database": database, "base_url": f"http://127.0.0.1:{port}"})
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DIGEST_SECRET_KEY": TEST_SECRET_KEY}
    cli("--config", str(cfg), "subscribe", "ada@example.org", "-k", "speculative decoding", env=env).check()
    signer = Signer([TEST_SECRET_KEY])
    asked = SignupRequest.from_form({"email": "ada@example.org", "keywords": "diffusion"})
    manage = f"/m/{signer.make(Purpose.MANAGE, 'ada@example.org')}"
    leave = f"/u/{signer.make(Purpose.UNSUBSCRIBE, 'ada@example.org')}"
    with web(cfg, port, env) as base, httpx.Client(base_url=base) as client:
        confirmed = client.post(
            f"/c/{signer.make_timed(Purpose.CONFIRM, asked.token_data(datetime.now(UTC)))}"
        )
        assert "You already have a digest" in confirmed.text
        gone = client.post(leave, data={"List-Unsubscribe": "One-Click"})
        csrf = re.search(r'name="csrf" value="([^"]+)"', gone.text)
        assert csrf
        assert client.post(f"{leave}/weekly", data={"csrf": csrf.group(1)}).status_code == 200
        until = (datetime.now(UTC) + timedelta(days=5)).date()
        form = {
            "csrf": csrf.group(1),
            "keywords": "speculative decoding",
            "max_papers": "20",
            "action": "save",
        }
        saved = client.post(
            manage, data={**form, "cadence": "weekly", "paused": "yes", "paused_until": str(until)}
        )
        assert saved.status_code == 200 and "paused until" in saved.text
        data = client.get(f"{manage}/data.json").json()
    assert data["paused_until"] == str(until) and data["ratings"] == [] and data["signed_up"] is None
    with Store.open(database) as store:
        ada = store.readers.get("ada@example.org")
        assert ada is not None and ada.active and ada.paused_until == date.fromisoformat(str(until))
        assert ada.profile.keywords == ("speculative decoding",) and ada.profile.cadence == "weekly:mon"


def test_the_scheduled_job_runs_on_postgresql(database: str, tmp_path: Path) -> None:
    """`digest schedule`'s job on PostgreSQL sends, and a second firing the same day sends nothing twice."""
    from conftest import read_maildir, samples_source, write_config

    from digest.scheduler import Waker

    ada = {"email": "ada@example.org", "keywords": ["RAG"]}
    cfg = write_config(tmp_path, top={"database": database}, sources=[samples_source()], subscribers=[ada])
    now = datetime(2026, 11, 23, 9, tzinfo=UTC)
    waker = Waker(str(cfg))
    assert waker(now) == 0 and waker.last_run == now
    assert waker(now + timedelta(minutes=5)) == 0 and waker.last_run == now  # nobody due: no run
    assert Waker(str(cfg))(now + timedelta(minutes=10)) == 0  # a restart runs at once: nothing twice
    assert len(read_maildir(tmp_path / "var" / "outbox")) == 1
