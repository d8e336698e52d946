"""DKIM signatures, verified by dkimpy's verifier against the public key, on the bytes as stored in the
Maildir and as received by a real SMTP server."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from conftest import free_port, samples_source, write_config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digest.errors import ConfigError
from digest.models import Profile, Status
from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.subscriptions import Request, confirmation_message
from digest.wiring import Services

SUBSCRIBERS = [
    {"email": "ada@example.org", "name": "Ada", "keywords": ["speculative decoding"], "max_papers": 3},
    {"email": "grace@example.org", "keywords": [], "max_papers": 2},
]


@pytest.fixture(scope="module")
def key_pair() -> tuple[str, bytes]:
    """A fresh RSA-2048 key: (the private key as PEM text, the DNS TXT record publishing its public half)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def verifies(data: bytes, record: bytes) -> bool:
    """dkimpy's verdict, the record served for exactly the name the signature points at."""

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"mail2026._domainkey.example.org." else None

    return bool(dkim.verify(data, dnsfunc=dns))


def settings_with_dkim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private: str, **tables: Any) -> Any:
    monkeypatch.setenv("DIGEST_DKIM__PRIVATE_KEY", private.replace("\n", "\\n"))  # as a .env line holds it
    cfg = write_config(
        tmp_path,
        sources=[samples_source()],
        subscribers=SUBSCRIBERS,
        tables={"dkim": {"selector": "mail2026"}, **tables},
    )
    return load_settings(cfg)


def test_every_digest_in_the_maildir_carries_a_signature_that_verifies(
    tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch, key_pair: tuple[str, bytes]
) -> None:
    private, record = key_pair
    settings = settings_with_dkim(tmp_path, monkeypatch, private)
    with Store.open(settings.database) as store:
        report = pipeline.run_once(Services(settings), store, now)
    assert {s.status for s in report.subscribers} == {Status.SENT}
    files = sorted((settings.delivery.maildir / "new").iterdir())
    assert len(files) == 2
    for f in files:
        data = f.read_bytes()
        assert data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;")
        signed = re.search(rb"h=([^;]+);", data.replace(b"\n ", b" "))
        assert signed is not None
        names = {h.strip() for h in signed.group(1).split(b":")}
        assert {b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"} <= names  # RFC 8058
        assert verifies(data, record)
        assert verifies(data.replace(b"\n", b"\r\n"), record)  # as SMTP carries it
        assert b"</html>" in data
        assert not verifies(data.replace(b"</html>", b"</htmL>", 1), record)  # one changed byte
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        wrong = b"v=DKIM1; k=rsa; p=" + base64.b64encode(
            other.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        assert not verifies(data, wrong)


class RawHandler:
    """An aiosmtpd handler that keeps each message's bytes exactly as they arrived."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.original_content)
        return "250 OK"


@pytest.fixture
def raw_smtp() -> Iterator[tuple[int, RawHandler]]:
    handler, port = RawHandler(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, handler
    controller.stop()


def test_the_bytes_a_smtp_server_receives_verify(
    tmp_path: Path,
    now: datetime,
    monkeypatch: pytest.MonkeyPatch,
    key_pair: tuple[str, bytes],
    raw_smtp: tuple[int, RawHandler],
) -> None:
    private, record = key_pair
    port, handler = raw_smtp
    smtp = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5}
    settings = settings_with_dkim(tmp_path, monkeypatch, private, delivery={"method": "smtp"}, smtp=smtp)
    with Store.open(settings.database) as store:
        pipeline.run_once(Services(settings), store, now)
    assert len(handler.received) == 2
    assert all(verifies(data, record) for data in handler.received)


def test_the_confirmation_email_is_signed_too(
    tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch, key_pair: tuple[str, bytes]
) -> None:
    private, record = key_pair
    settings = settings_with_dkim(tmp_path, monkeypatch, private)
    request = Request("new@example.org", "New", Profile(keywords=("transformers",)))
    message = confirmation_message(
        settings.sender, Services(settings).dkim, request, "https://digest.example.org/c/token", now
    )
    assert verifies(message.data, record)


@pytest.mark.processes
def test_a_selector_without_a_usable_key_stops_before_anything_is_sent(
    tmp_path: Path, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_DKIM__PRIVATE_KEY", raising=False)
    cfg = write_config(
        tmp_path, sources=[samples_source()], subscribers=SUBSCRIBERS, tables={"dkim": {"selector": "s"}}
    )
    with pytest.raises(ConfigError, match="DIGEST_DKIM__PRIVATE_KEY"):
        Services(load_settings(cfg)).check()

    monkeypatch.setenv(
        "DIGEST_DKIM__PRIVATE_KEY",
        "-----BEGIN RSA PRIVATE KEY-----\\nnot a key\\n-----END RSA PRIVATE KEY-----",
    )
    settings = load_settings(cfg)
    with Store.open(settings.database) as store, pytest.raises(ConfigError, match="cannot be read") as caught:
        pipeline.run_once(Services(settings), store, now, workers=2)  # not a dead worker
    assert "not a key" not in str(caught.value)  # the key's text is never echoed
    assert not (settings.delivery.maildir / "new").exists() or not any(
        (settings.delivery.maildir / "new").iterdir()
    )


def test_a_private_key_in_the_config_file_is_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tables={"dkim": {"selector": "s", "private_key": "-----BEGIN…"}})
    with pytest.raises(ConfigError, match="private keys are not read from the config file"):
        load_settings(cfg)
