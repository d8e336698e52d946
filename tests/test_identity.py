"""One mailbox, one identity, everywhere: the canonical key (``identity.mailbox_key``) is what the store on
both backends, the tokens, the rate limits, feedback and the sent history compare. Two mailboxes never
share a key (``ada@straße.de`` is not ``ada@strasse.de``; ``JOSÉ`` is not ``josé``); one mailbox written two
ways always does (``Ada@Example.ORG``; ``straße.de`` and its A-label). Old databases are re-keyed in place,
and links signed before keys keep working where they cannot be mistaken for another reader's."""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import TEST_SECRET_KEY, free_port, mails_to, read_maildir, samples_source, write_config
from itsdangerous import URLSafeSerializer
from running import cli, web

from digest.identity import mailbox_key, normalise_email
from digest.models import Paper, Profile, Subscriber
from digest.store import SCHEMA_VERSION, NewMessage, Store
from digest.store.schema import MIGRATIONS, POSTGRESQL_PREAMBLE, REKEY_STEP, for_postgresql
from digest.tokens import Purpose, Signer

SAME_MAILBOX = [
    ("Ada@Example.ORG", "ada@example.org"),
    ("ada@straße.de", "ada@xn--strae-oqa.de"),  # a domain in Unicode and as its A-label
    ("ada@Straße.DE", "ada@straße.de"),
    ("ADA@STRASSE.de", "ada@strasse.de"),
    (unicodedata.normalize("NFD", "josé@example.org"), "josé@example.org"),  # NFD and NFC
]
OTHER_MAILBOXES = [
    ("ada@straße.de", "ada@strasse.de"),  # different domains in DNS
    ("JOSÉ@example.org", "josé@example.org"),  # non-ASCII case is not folded
    ("straße@example.de", "strasse@example.de"),
    ("ı@example.org", "i@example.org"),  # Turkish dotless i
    ("ada@example.org", "ada@example.org.uk"),
]


@pytest.mark.parametrize(("one", "other"), SAME_MAILBOX)
def test_one_mailbox_written_two_ways_has_one_key(one: str, other: str) -> None:
    assert mailbox_key(one) == mailbox_key(other)
    assert mailbox_key(normalise_email(one)) == mailbox_key(normalise_email(other)) == mailbox_key(other)


@pytest.mark.parametrize(("one", "other"), OTHER_MAILBOXES)
def test_two_mailboxes_never_share_a_key(one: str, other: str) -> None:
    assert mailbox_key(one) != mailbox_key(other)
    assert mailbox_key(normalise_email(one)) != mailbox_key(normalise_email(other))
    signer = Signer([TEST_SECRET_KEY])
    for purpose in (Purpose.UNSUBSCRIBE, Purpose.MANAGE):
        assert signer.make(purpose, one) != signer.make(purpose, other)
        assert signer.read(purpose, signer.make(purpose, one)).key == mailbox_key(one)


def test_the_store_keys_every_address_on_both_backends(store_location: str, now: datetime) -> None:
    """Subscribers, lookups, unsubscribes, feedback and the sent history compare keys, on SQLite and on
    PostgreSQL alike (whose ICU collation equated ß with ss and É with é), and keep the address as written."""
    with Store.open(store_location) as store:
        store.papers.ingest([Paper(f"Paper {i}", "Abstract.") for i in range(3)], now)
        refs = [p.ref for p in store.papers.recent(now - timedelta(days=1)) if p.ref is not None]
        people = [
            "ada@straße.de",
            "ada@strasse.de",
            "JOSÉ@example.org",
            "josé@example.org",
            "Zoe@Example.org",
        ]
        for address in people:
            assert store.readers.add(Subscriber(address, "", Profile(("RAG",))), now)
        assert not store.readers.add(Subscriber("zoe@example.org", "", Profile(("LLM",))), now)  # same
        assert [s.email for s in store.readers.all()] == [
            "ada@strasse.de",
            "ada@straße.de",
            "JOSÉ@example.org",
            "josé@example.org",
            "Zoe@Example.org",  # as first written: the second spelling was the same mailbox
        ]  # in key order: the keys' bytes
        assert store.readers.get("ADA@xn--strae-oqa.de").email == "ada@straße.de"
        assert store.readers.get("ada@STRASSE.de").email == "ada@strasse.de"
        assert store.readers.unsubscribe("JOSÉ@example.org", now)
        active = {s.email for s in store.readers.all()}
        assert "JOSÉ@example.org" not in active and "josé@example.org" in active
        row_ids = store.outbox.begin(
            [
                NewMessage("ada@straße.de", now.date(), "<m1@example.org>", (refs[0],)),
                NewMessage("ada@strasse.de", now.date(), "<m2@example.org>", (refs[1],)),
            ],
            now,
        )
        assert None not in row_ids  # two readers' digests of one day, not one
        store.outbox.mark_sent_many([i for i in row_ids if i is not None], now)
        sent = store.outbox.sent_refs(["ada@xn--strae-oqa.de", "ADA@strasse.de"])
        assert sent == {mailbox_key("ada@straße.de"): {refs[0]}, "ada@strasse.de": {refs[1]}}
        assert store.outbox.owners(["<m1@example.org>"]) == {"<m1@example.org>": mailbox_key("ada@straße.de")}
        store.feedback.set("ada@straße.de", refs[2], "more", now)
        assert set(store.feedback.of(["ada@strasse.de", "ada@straße.de"])) == {mailbox_key("ada@straße.de")}
        state = store.outbox.state(["ada@straße.de", "ada@strasse.de"], {now.date()})
        assert state.sent_on == {(mailbox_key("ada@straße.de"), now.date()), ("ada@strasse.de", now.date())}
        assert store.readers.forget("ADA@STRASSE.DE", now)
        assert store.readers.get("ada@straße.de") is not None and store.readers.get("ada@strasse.de") is None
        assert store.outbox.history("ada@straße.de") and not store.outbox.history("ada@strasse.de")


def _rows_of_schema_11(conn: sqlite3.Connection | psycopg.Connection[tuple[object, ...]], mark: str) -> None:
    """A version-11 database's rows as the code before keys wrote them (the address as given, compared
    by the collation): two spellings of one mailbox, a reader with a non-ASCII capital, and history."""
    subscriber = (
        f"INSERT INTO subscribers (email, max_papers, origin, active, created, updated) VALUES"
        f" ({mark}, 20, 'cli', {mark}, 'c', {mark})"
    )
    for email, active, updated in (
        ("Zoe@Example.org", 1, "2026-01-01"),
        ("JOSÉ@example.org", 1, "2026-01-01"),
        ("ada@straße.de", 0, "2026-01-01"),
        ("ada@xn--strae-oqa.de", 1, "2026-02-01"),  # the same mailbox: merged into one reader
    ):
        conn.execute(subscriber, (email, active, updated))
    for pid in (1, 2):
        conn.execute(
            f"INSERT INTO papers (pid, title_key, title, abstract, source, first_seen, last_seen)"
            f" VALUES ({mark}, {mark}, {mark}, '', 's', 'f', 'l')",
            (pid, f"p{pid}", f"P{pid}"),
        )
    message = (
        f"INSERT INTO messages (id, email, message_id, digest_date, status, created) VALUES"
        f" ({mark}, {mark}, {mark}, '2026-11-20', 'sent', 'c')"
    )
    sent = f"INSERT INTO sent (email, pid, message, sent_at) VALUES ({mark}, {mark}, {mark}, 's')"
    for mid, (email, pids) in enumerate(
        (("Zoe@Example.org", (1,)), ("ada@straße.de", (1,)), ("ada@xn--strae-oqa.de", (1, 2))), start=1
    ):
        conn.execute(message, (mid, email, f"<m{mid}@example.org>"))
        for pid in pids:
            conn.execute(sent, (email, pid, mid))
    conn.execute(
        f"INSERT INTO feedback (email, pid, kind, at) VALUES ({mark}, 2, 'more', 'a')", ("JOSÉ@example.org",)
    )


def _check_rekeyed(location: str) -> None:
    with Store.open(location) as store:
        everyone = {s.key: s for s in store.readers.all(include_inactive=True)}
        assert set(everyone) == {"zoe@example.org", "josÉ@example.org", "ada@xn--strae-oqa.de"}
        assert everyone["zoe@example.org"].email == "Zoe@Example.org"  # the address as it was written
        assert everyone["josÉ@example.org"].email == "JOSÉ@example.org"
        assert everyone["ada@xn--strae-oqa.de"].active  # the active one of the two kept its profile
        assert store.outbox.sent_refs(["zoe@example.org", "ada@straße.de"]) == {
            "zoe@example.org": {1},
            "ada@xn--strae-oqa.de": {1, 2},  # both spellings' history, each paper once
        }
        assert set(store.feedback.of(["JOSÉ@example.org"])) == {"josÉ@example.org"}
        assert store.readers.get("josé@example.org") is None  # another mailbox
        assert store.outbox.owners(["<m2@example.org>", "<m3@example.org>"]) == {
            "<m2@example.org>": "ada@xn--strae-oqa.de",
            "<m3@example.org>": "ada@xn--strae-oqa.de",
        }


def test_a_sqlite_database_of_schema_11_is_rekeyed_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[: REKEY_STEP + 0]:
        conn.executescript(migration)
    conn.execute(f"PRAGMA user_version = {REKEY_STEP}")
    conn.execute("BEGIN")
    _rows_of_schema_11(conn, "?")
    conn.execute("COMMIT")
    conn.close()
    _check_rekeyed(str(path))
    with Store.open(path) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_postgresql_database_of_schema_11_is_rekeyed_in_place(postgres_database: str) -> None:
    with psycopg.connect(postgres_database) as conn:
        with conn.transaction():
            conn.execute(POSTGRESQL_PREAMBLE)
            conn.execute("CREATE TABLE digest_schema (version INTEGER NOT NULL)")
            for migration in MIGRATIONS[:REKEY_STEP]:
                conn.execute(for_postgresql(migration))
            conn.execute("INSERT INTO digest_schema (version) VALUES (%s)", (REKEY_STEP,))
        with conn.transaction():
            _rows_of_schema_11(conn, "%s")
            conn.execute("SELECT setval(pg_get_serial_sequence('papers', 'pid'), 2)")
    _check_rekeyed(postgres_database)
    with psycopg.connect(postgres_database) as conn:
        collations = conn.execute(
            "SELECT table_name, collation_name FROM information_schema.columns WHERE column_name = 'email'"
            " AND table_schema = current_schema() ORDER BY table_name"
        ).fetchall()
    assert collations == [
        ("feedback", "C"),
        ("messages", "C"),
        ("reader_models", "C"),
        ("saved", "C"),
        ("sent", "C"),
        ("subscribers", "C"),
    ]


def test_links_signed_before_keys_work_unless_another_reader_could_be_meant(tmp_path: Path) -> None:
    """A one-click link in mail sent before keys carried ``str.casefold()`` of the address: it still acts
    for that reader, but not when the casefolded value could be another subscriber's (ß folds to ss),
    nor when it lost non-ASCII case."""
    port = free_port()
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, sources=[samples_source()])
    now = datetime.now().astimezone()
    with Store.open(tmp_path / "var" / "digest.sqlite3") as store:
        for address in ("ada@example.org", "ada@strasse.de", "ada@straße.de", "JOSÉ@example.org"):
            store.readers.add(Subscriber(address, "", Profile(("RAG",))), now)

    def legacy(purpose: Purpose, email: str) -> str:
        return str(URLSafeSerializer([TEST_SECRET_KEY], salt=f"digest.{purpose}").dumps(email.casefold()))

    with web(cfg, port) as base, httpx.Client(base_url=base) as client:
        one_click = {"List-Unsubscribe": "One-Click"}
        assert (
            client.post(f"/u/{legacy(Purpose.UNSUBSCRIBE, 'Ada@Example.org')}", data=one_click).status_code
            == 200
        )
        assert client.get(f"/m/{legacy(Purpose.MANAGE, 'ada@example.org')}").status_code == 200
        for ambiguous in ("ada@straße.de", "ada@strasse.de", "JOSÉ@example.org"):
            assert (
                client.post(f"/u/{legacy(Purpose.UNSUBSCRIBE, ambiguous)}", data=one_click).status_code == 400
            )
            assert client.get(f"/m/{legacy(Purpose.MANAGE, ambiguous)}").status_code == 400
    with Store.open(tmp_path / "var" / "digest.sqlite3") as store:
        assert {s.email for s in store.readers.all()} == {
            "ada@strasse.de",
            "ada@straße.de",
            "JOSÉ@example.org",
        }


def _links(message: object, kind: str) -> list[str]:
    html = message.get_body(("html",)).get_content()  # type: ignore[attr-defined]
    return re.findall(rf'href="(http://127\.0\.0\.1:\d+/{kind}/[^"]+)"', html)


def test_a_reader_at_strasse_and_one_at_strasse_with_eszett_are_two_readers(tmp_path: Path) -> None:
    """The issue's case, end to end: ada@strasse.de reads the digest; ada@straße.de signs up on the form and
    confirms. Her manage link opens only her own page and data; both get today's digest; each one's
    unsubscribe link unsubscribes only them. JOSÉ@… unsubscribes for real."""
    port = free_port()
    cfg = write_config(
        tmp_path,
        top={"base_url": f"http://127.0.0.1:{port}"},
        sources=[samples_source()],
    )
    for address in ("ada@strasse.de", "JOSÉ@example.org"):
        made = cli("subscribe", address, "-k", "reasoning", "--max", "2", "--config", str(cfg))
        assert made.returncode == 0, made.stderr
    with web(cfg, port) as base, httpx.Client(base_url=base) as client:
        page = client.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        asked = client.post("/", data={"csrf": csrf.group(1), "email": "ada@straße.de", "keywords": "agents"})
        assert asked.status_code == 200
        (mail,) = mails_to(tmp_path, "ada@xn--strae-oqa.de", expect=1)
        link = re.search(r"(http://127\.0\.0\.1:\d+/c/\S+)", mail.get_body(("plain",)).get_content())
        assert link
        done = client.post(link.group(1))
        assert done.status_code == 200
        manage = re.search(r'href="(/m/[^"]+)"', done.text)
        assert manage
        mine = client.get(manage.group(1))
        assert (
            "For ada@straße.de." in mine.text and "agents" in mine.text and "ada@strasse.de" not in mine.text
        )
        data = client.get(manage.group(1) + "/data.json").json()
        assert data["email"] == "ada@straße.de" and data["keywords"] == ["agents"]

    run = cli("run", "--json", "--config", str(cfg))
    assert run.returncode == 0, run.stderr
    statuses = {s["email"]: s["status"] for s in json.loads(run.stdout)["subscribers"]}
    assert statuses == {"ada@strasse.de": "sent", "ada@straße.de": "sent", "JOSÉ@example.org": "sent"}
    digests = {
        mailbox_key(str(m["To"])): m
        for m in read_maildir(tmp_path / "var" / "outbox")
        if "Confirm" not in str(m["Subject"])
    }
    assert set(digests) == {"ada@strasse.de", "ada@xn--strae-oqa.de", "josÉ@example.org"}
    with web(cfg, port) as base, httpx.Client(base_url=base) as client:
        for reader in ("ada@straße.de", "JOSÉ@example.org"):
            (unsubscribe,) = set(_links(digests[mailbox_key(reader)], "u"))
            done = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
            assert done.status_code == 200 and "You are unsubscribed" in done.text
    listed = cli("subscribers", "--all", "--json", "--config", str(cfg))
    active = {s["email"]: s["active"] for s in json.loads(listed.stdout)}
    assert active == {"ada@strasse.de": True, "ada@straße.de": False, "JOSÉ@example.org": False}
