"""SMTP delivery with verified TLS and AUTH, against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import RecordingHandler, free_port, samples_source, sent_refs, write_config

from digest.config_tables import SmtpConfig
from digest.email.mime import Outgoing
from digest.email.smtp import SmtpTransport
from digest.errors import DeliveryAbortedError, PermanentDeliveryError, TransientDeliveryError
from digest.models import Status
from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.wiring import Services

USER, PASSWORD = "digest", "s3cret-from-env"


@dataclass
class TlsServer:
    port: int
    handler: RecordingHandler
    ca: trustme.CA
    auth_attempts: list[tuple[str, str]]

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


def _start(implicit_tls: bool) -> tuple[Controller, TlsServer]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    attempts: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        attempts.append((login, password))
        # handled=False: let aiosmtpd send the 235/535 reply itself.
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False)

    handler = RecordingHandler()
    port = free_port()
    kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": True}
    if implicit_tls:
        # aiosmtpd only knows about TLS it negotiated via STARTTLS; on an implicit-TLS port it would
        # otherwise never offer AUTH. The connection is TLS all the same.
        kwargs.update(ssl_context=server_ctx, auth_require_tls=False)
    else:
        kwargs.update(tls_context=server_ctx, require_starttls=True)
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    if implicit_tls:
        # The controller's own readiness probe would speak plain text to a TLS port.
        controller.ssl_context = server_ctx
    controller.start()
    return controller, TlsServer(port, handler, ca, attempts)


@pytest.fixture(params=["starttls", "tls"])
def tls_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, TlsServer]]:
    controller, server = _start(implicit_tls=request.param == "tls")
    yield request.param, server
    controller.stop()


@pytest.fixture
def starttls_server() -> Iterator[TlsServer]:
    controller, server = _start(implicit_tls=False)
    yield server
    controller.stop()


def _settings(tmp_path: Path, port: int, security: str, username: str | None = USER) -> Any:
    smtp: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": security, "timeout": 5}
    if username:
        smtp["username"] = username
    cfg = write_config(
        tmp_path,
        sources=[samples_source()],
        subscribers=[
            {"email": "ada@example.org", "keywords": ["RAG"]},
            {"email": "bob@example.org", "keywords": []},
        ],
        tables={"delivery": {"method": "smtp"}, "smtp": smtp},
    )
    return load_settings(cfg)


def test_verified_tls_and_auth_with_the_password_from_the_environment(
    tmp_path: Path, now: datetime, tls_server: tuple[str, TlsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    security, server = tls_server
    monkeypatch.setenv("DIGEST_SMTP__PASSWORD", PASSWORD)
    settings = _settings(tmp_path, server.port, security)
    assert settings.smtp.password.get_secret_value() == PASSWORD
    transport = SmtpTransport(settings.smtp, settings.sender_address, context=server.client_context())
    with Store.open(settings.database) as store:
        report = pipeline.run_once(Services(settings, transport=transport), store, now)
    assert [s.status for s in report.subscribers] == [Status.SENT, Status.SENT]
    assert server.auth_attempts == [(USER, PASSWORD)]  # one login: one connection for the run
    assert len(server.handler.messages) == 2
    assert len(server.handler.sessions) == 1


# The server side logs the deliberately failed handshake as an unraisable exception in its thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_untrusted_certificate_aborts_before_any_password_is_sent(
    tmp_path: Path, now: datetime, starttls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SMTP__PASSWORD", PASSWORD)
    settings = _settings(tmp_path, starttls_server.port, "starttls")
    transport = SmtpTransport(settings.smtp, settings.sender_address)  # the system's trust store only
    with Store.open(settings.database) as store:
        report = pipeline.run_once(Services(settings, transport=transport), store, now)
        assert sent_refs(store, "ada@example.org") == set()
    assert [s.status for s in report.subscribers] == [Status.FAILED, Status.RETRY_LATER]
    assert all("TLS with 127.0.0.1" in (s.error or "") for s in report.subscribers)
    assert (report.subscribers[1].error or "").startswith("not attempted")
    assert "CERTIFICATE_VERIFY_FAILED" in (report.subscribers[0].error or "")
    assert starttls_server.auth_attempts == []
    assert starttls_server.handler.messages == []


def test_wrong_password_aborts_with_a_clear_message(
    tmp_path: Path, starttls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_SMTP__PASSWORD", "wrong")
    settings = _settings(tmp_path, starttls_server.port, "starttls")
    transport = SmtpTransport(
        settings.smtp, settings.sender_address, context=starttls_server.client_context()
    )
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["To"] = "ada@example.org"
    msg.set_content("x")
    with pytest.raises(DeliveryAbortedError, match=r"refused the login for 'digest': 535") as info, transport:
        transport.send(Outgoing.of(msg))
    assert "DIGEST_SMTP__PASSWORD" in str(info.value)


def test_no_password_over_a_plain_connection(tmp_path: Path, starttls_server: TlsServer) -> None:
    settings = _settings(tmp_path, starttls_server.port, "none")
    transport = SmtpTransport(settings.smtp, settings.sender_address)
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["To"] = "ada@example.org"
    msg.set_content("x")
    with pytest.raises(DeliveryAbortedError, match="unencrypted"), transport:
        transport.send(Outgoing.of(msg))
    assert starttls_server.auth_attempts == []


def test_unreachable_server_is_transient(tmp_path: Path) -> None:
    settings = _settings(tmp_path, free_port(), "none", username=None)
    transport = SmtpTransport(settings.smtp, settings.sender_address)
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["To"] = "ada@example.org"
    msg.set_content("x")
    with pytest.raises(TransientDeliveryError, match="cannot connect"), transport:
        transport.send(Outgoing.of(msg))


class PipeliningHandler(RecordingHandler):
    """Offers PIPELINING and counts the messages that came in."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any
    ) -> Any:
        session.host_name = hostname
        responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses


def test_pipelined_sends_keep_dot_lines_and_reuse_one_connection(tmp_path: Path) -> None:
    handler = PipeliningHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = _settings(tmp_path, port, "none", username=None)
        body = "Line one\n.\n..two dots\n.leading dot\nlast\n"
        with SmtpTransport(settings.smtp, "digest@example.org") as transport:
            for i in range(3):
                data = (
                    f"From: digest@example.org\nTo: r{i}@example.org\nMessage-ID: <m{i}@x>\n\n{body}".encode()
                )
                transport.send(Outgoing("digest@example.org", (f"r{i}@example.org",), f"<m{i}@x>", data))
    finally:
        controller.stop()
    assert len(handler.messages) == 3 and len(handler.sessions) == 1
    for _, _, msg in handler.messages:
        assert msg.get_content().replace("\r\n", "\n") == body


class WitnessServer(socketserver.BaseRequestHandler):
    """Records what arrives in the first read after each transaction starts: with PIPELINING the client
    sends MAIL, RCPT and DATA in one write, without it only MAIL (it waits for the reply)."""

    offer_pipelining: ClassVar[bool] = True
    first_reads: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        sock = self.request
        sock.sendall(b"220 witness ESMTP\r\n")
        sock.recv(4096)  # EHLO
        sock.sendall(b"250-witness\r\n250 PIPELINING\r\n" if self.offer_pipelining else b"250 witness\r\n")
        pending = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk or chunk.upper().startswith(b"QUIT"):
                sock.sendall(b"221 bye\r\n")
                return
            self.first_reads.append(chunk)
            pending = chunk
            for reply in (b"250 ok\r\n", b"250 ok\r\n", b"354 go on\r\n"):  # MAIL, RCPT, DATA
                while pending.count(b"\r\n") < 1:
                    pending += sock.recv(65536)
                pending = pending.partition(b"\r\n")[2]
                sock.sendall(reply)
            while b"\r\n.\r\n" not in pending:
                pending += sock.recv(65536)
            sock.sendall(b"250 queued\r\n")


@pytest.mark.parametrize("offered", [True, False])
def test_mail_rcpt_and_data_go_in_one_write_only_when_pipelining_is_offered(offered: bool) -> None:
    WitnessServer.offer_pipelining = offered
    WitnessServer.first_reads = []
    server = socketserver.TCPServer(("127.0.0.1", 0), WitnessServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = SmtpConfig(host="127.0.0.1", port=server.server_address[1], security="none", timeout=5)
        with SmtpTransport(cfg, "digest@example.org") as transport:
            for i in range(2):
                data = f"From: digest@example.org\nTo: r{i}@example.org\n\nbody\n".encode()
                transport.send(Outgoing("digest@example.org", (f"r{i}@example.org",), f"<m{i}@x>", data))
    finally:
        server.shutdown()
        server.server_close()
    assert len(WitnessServer.first_reads) == 2
    for first in (read.upper() for read in WitnessServer.first_reads):
        assert first.startswith(b"MAIL FROM:")
        assert (b"RCPT TO:" in first and first.rstrip().endswith(b"DATA")) == offered


class CarelessServer(socketserver.StreamRequestHandler):
    """A server that offers PIPELINING, refuses the recipient, and then accepts DATA all the same: what it
    receives after its 354 is kept in ``after_data``, so the test sees whether the client ended a message."""

    after_data: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        self.wfile.write(b"220 careless ESMTP\r\n")
        if not self.rfile.readline().upper().startswith(b"EHLO"):
            return
        self.wfile.write(b"250-careless\r\n250 PIPELINING\r\n")
        replies = {b"MAIL": b"250 ok\r\n", b"RCPT": b"550 5.1.1 no such user\r\n", b"DATA": b"354 go on\r\n"}
        for _ in range(3):
            line = self.rfile.readline()
            self.wfile.write(replies.get(line[:4].upper(), b"500 what\r\n"))
        self.after_data.append(self.rfile.read())  # until the client closes the connection


def test_a_data_accepted_after_a_refused_recipient_is_abandoned_not_ended() -> None:
    CarelessServer.after_data.clear()
    server = socketserver.TCPServer(("127.0.0.1", 0), CarelessServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = SmtpConfig(host="127.0.0.1", port=server.server_address[1], security="none", timeout=5)
        transport = SmtpTransport(cfg, "digest@example.org")
        data = b"From: digest@example.org\nTo: gone@example.org\n\nbody\n"
        with pytest.raises(PermanentDeliveryError, match="550"):
            transport.send(Outgoing("digest@example.org", ("gone@example.org",), "<m@x>", data))
        transport.close()
        deadline = time.monotonic() + 5
        while not CarelessServer.after_data and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.shutdown()
        server.server_close()
    assert CarelessServer.after_data == [b""]  # the connection was closed: no message, not even an empty one
