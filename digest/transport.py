"""Delivery behind one interface: Maildir (the default), SMTP, and memory (the fake that ships).

A transport is a context manager (``with transport: transport.send(msg)``) so that SMTP opens one
connection for the whole run and closes it at the end. ``send`` returns only when the message was accepted
(written to the Maildir, answered 250 by the server); otherwise it raises a ``DeliveryError``:

- ``TransientDeliveryError``: 4xx, timeout, dropped connection; the papers stay candidates for next run;
  ``ServerUnavailableError`` when no connection could be made at all;
- ``PermanentDeliveryError``: 5xx for that recipient;
- ``DeliveryAbortedError``: authentication or TLS failure; nothing else can go out this run.
"""

from __future__ import annotations

import mailbox
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol

from digest.errors import (
    DeliveryAbortedError,
    DeliveryError,
    PermanentDeliveryError,
    ServerUnavailableError,
    TransientDeliveryError,
)
from digest.settings import Settings, SmtpConfig


class Transport(Protocol):
    """Where messages go. ``describe()`` says where, for the run summary."""

    def __enter__(self) -> Transport: ...
    def __exit__(self, *exc: object) -> None: ...
    def send(self, message: EmailMessage) -> None: ...
    def describe(self) -> str: ...


def _recipients(message: EmailMessage) -> list[str]:
    return [addr for _, addr in getaddresses(message.get_all("To", []))]


class MemoryTransport:
    """Keeps messages in a list. For tests, previews and library users; ``refuse`` makes chosen recipients fail."""

    def __init__(self, refuse: dict[str, DeliveryError] | None = None) -> None:
        self.sent: list[EmailMessage] = []
        self.refuse = refuse or {}

    def __enter__(self) -> MemoryTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, message: EmailMessage) -> None:
        for rcpt in _recipients(message):
            if rcpt in self.refuse:
                raise self.refuse[rcpt]
        self.sent.append(message)

    def describe(self) -> str:
        return "memory"


class MaildirTransport:
    """Writes each message into a Maildir's ``new/`` (via ``tmp/``, so a reader never sees half a file)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def __enter__(self) -> MaildirTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self._box = None

    def _open(self, rcpt: str) -> mailbox.Maildir:
        """The Maildir, created with its parent folders at the first message."""
        if self._box is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._box = mailbox.Maildir(self.path, create=True)
            except OSError as exc:
                raise DeliveryAbortedError(
                    rcpt, f"cannot open the Maildir {self.path}: {exc.strerror}"
                ) from exc
        return self._box

    def send(self, message: EmailMessage) -> None:
        rcpt = ", ".join(_recipients(message))
        box = self._open(rcpt)
        try:
            box.add(message)
        except OSError as exc:
            raise TransientDeliveryError(rcpt, f"cannot write to {self.path}: {exc.strerror}") from exc

    def describe(self) -> str:
        return f"Maildir {self.path}"


class SmtpTransport:
    """One SMTP connection per run, opened at the first message and reused; reconnects once if dropped.

    ``security``: ``starttls`` (upgrade, certificate verified), ``tls`` (implicit TLS), ``none`` (plain;
    then no password is ever sent). Every socket operation has ``timeout``.
    """

    def __init__(self, config: SmtpConfig, sender: str, *, context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.sender = sender
        self.context = context or ssl.create_default_context()
        self._conn: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"SMTP {self.config.host}:{self.config.effective_port} ({self.config.security})"

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                self._conn.close()
            self._conn = None

    def _connect(self, rcpt: str) -> smtplib.SMTP:
        """A ready connection: TLS verified, logged in. Closed again if any step fails."""
        cfg = self.config
        where = f"{cfg.host}:{cfg.effective_port}"
        conn: smtplib.SMTP | None = None
        try:
            if cfg.security == "tls":
                conn = smtplib.SMTP_SSL(
                    cfg.host, cfg.effective_port, timeout=cfg.timeout, context=self.context
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.effective_port, timeout=cfg.timeout)
            self._setup(conn, rcpt, where)
            return conn
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, DeliveryError):
                raise
            if isinstance(exc, ssl.SSLError):
                raise DeliveryAbortedError(
                    rcpt,
                    f"TLS with {where} failed: {exc}",
                    hint="check the server's certificate and host name",
                ) from exc
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                raise DeliveryAbortedError(
                    rcpt,
                    f"{where} refused the login for {cfg.username!r}: {exc.smtp_code} {_text(exc.smtp_error)}",
                    hint="check [smtp] username and DIGEST_SMTP__PASSWORD",
                ) from exc
            if isinstance(exc, smtplib.SMTPException | OSError):
                raise ServerUnavailableError(
                    rcpt, f"cannot connect to {where}: {exc!r}", hint="retried on the next run"
                ) from exc
            raise

    def _setup(self, conn: smtplib.SMTP, rcpt: str, where: str) -> None:
        """EHLO, STARTTLS, AUTH on a fresh connection."""
        cfg = self.config
        conn.ehlo()
        if cfg.security == "starttls":
            if not conn.has_extn("starttls"):
                raise DeliveryAbortedError(
                    rcpt,
                    f"{where} does not offer STARTTLS",
                    hint='set [smtp] security = "tls" for port 465, or check the host and port',
                )
            conn.starttls(context=self.context)
            conn.ehlo()
        if cfg.username:
            if cfg.security == "none":
                raise DeliveryAbortedError(
                    rcpt,
                    "refusing to send a password over an unencrypted connection",
                    hint='set [smtp] security to "starttls" or "tls"',
                )
            conn.login(cfg.username, cfg.password.get_secret_value() if cfg.password else "")

    def send(self, message: EmailMessage) -> None:
        """One attempt. A 421 or a dropped connection closes it; the next attempt reconnects."""
        recipients = _recipients(message)
        rcpt = ", ".join(recipients)
        if self._conn is None:
            self._conn = self._connect(rcpt)
        try:
            self._conn.send_message(message, from_addr=self.sender, to_addrs=recipients)
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise TransientDeliveryError(rcpt, f"the server closed the connection: {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            if code == 421:
                self._drop()
            raise _by_code(rcpt, code, reply) from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self._drop()
            raise _by_code(rcpt, exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:  # timeouts and resets: the state is unknown
            self._drop()
            raise TransientDeliveryError(rcpt, f"connection problem: {exc!r}") from exc

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _by_code(rcpt: str, code: int, reply: bytes | str) -> DeliveryError:
    """An SMTP reply code to the error kind: 4xx transient, 5xx permanent."""
    text = f"{code} {_text(reply)}"
    if 400 <= code < 500:
        return TransientDeliveryError(rcpt, f"server said {text}", hint="retried on the next run")
    return PermanentDeliveryError(rcpt, f"server refused: {text}")


def make_transport(settings: Settings) -> Transport:
    """The transport ``[delivery] method`` names."""
    if settings.delivery.method == "smtp":
        return SmtpTransport(settings.smtp, settings.sender_address)
    return MaildirTransport(settings.delivery.maildir)
