"""The SMTP transport (see ``transport`` for the interface and its errors): one connection per run,
pipelined, every socket operation bounded by a timeout, and each refusal read for whose fault it is (the
recipient's, or our message's and sender's).
"""

from __future__ import annotations

import re
import smtplib
import ssl
from typing import Protocol

from pydantic import SecretStr

from digest.email.mime import Outgoing
from digest.errors import (
    DeliveryAbortedError,
    DeliveryError,
    PermanentDeliveryError,
    ServerUnavailableError,
    TransientDeliveryError,
)


class SmtpServer(Protocol):
    """Where and how to reach the SMTP server (``[smtp]``, ``config_tables.SmtpConfig``)."""

    @property
    def host(self) -> str: ...
    @property
    def security(self) -> str: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> SecretStr | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def effective_port(self) -> int: ...


class SmtpTransport:
    """One SMTP connection per run, opened at the first message and reused; reconnects once if dropped.

    ``security``: ``starttls`` (upgrade, certificate verified), ``tls`` (implicit TLS), ``none`` (plain;
    then no password is ever sent). Every socket operation has ``timeout``.
    """

    idempotent = False

    def __init__(self, config: SmtpServer, sender: str, *, context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.sender = sender
        self.context = context or ssl.create_default_context()
        self._conn: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        return None  # a 250 reply means the server has taken responsibility

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

    def send(self, message: Outgoing) -> None:
        """One attempt. A 421 or a dropped connection closes it; the next attempt reconnects."""
        recipients = list(message.recipients)
        rcpt = ", ".join(recipients)
        if self._conn is None:
            self._conn = self._connect(rcpt)
        conn = self._conn
        try:
            if message.smtputf8 and not conn.has_extn("smtputf8"):
                raise PermanentDeliveryError(
                    rcpt,
                    f"{self.describe()} does not offer SMTPUTF8, needed for an address whose local part "
                    "is not ASCII",
                    hint="use a relay that offers SMTPUTF8 (Postfix: smtputf8_enable = yes)",
                    recipient_at_fault=False,
                )
            if conn.has_extn("pipelining") and not message.smtputf8:
                self._send_pipelined(conn, recipients, message)
            else:
                options = ["SMTPUTF8"] if message.smtputf8 else []
                conn.sendmail(message.sender or self.sender, recipients, message.wire(), mail_options=options)
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise TransientDeliveryError(rcpt, f"the server closed the connection: {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            if code == 421:
                self._drop()
            raise _by_code(rcpt, code, reply, "RCPT") from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:
                self._drop()
            stage = "MAIL" if isinstance(exc, smtplib.SMTPSenderRefused) else "DATA"
            raise _by_code(rcpt, exc.smtp_code, exc.smtp_error, stage) from exc
        except (smtplib.SMTPException, OSError) as exc:  # timeouts and resets: the state is unknown
            self._drop()
            raise TransientDeliveryError(rcpt, f"connection problem: {exc!r}") from exc

    def _send_pipelined(self, conn: smtplib.SMTP, recipients: list[str], message: Outgoing) -> None:
        """MAIL, RCPT and DATA in one write, their replies read together (RFC 2920): two round trips per
        message instead of four. Raises what ``sendmail`` would for the same replies."""
        data = message.data.replace(b"\n.", b"\n..").replace(b"\n", b"\r\n")  # dot-stuffed (RFC 5321 4.5.2)
        size = f" SIZE={len(data)}" if conn.has_extn("size") else ""
        sender = (
            message.sender or self.sender
        )  # the message's own return path (VERP), else the configured one
        commands = [f"MAIL FROM:{smtplib.quoteaddr(sender)}{size}"]
        commands += [f"RCPT TO:{smtplib.quoteaddr(r)}" for r in recipients]
        conn.send("".join(c + "\r\n" for c in [*commands, "DATA"]))
        mail = conn.getreply()
        refused = {r: answer for r in recipients if (answer := conn.getreply())[0] not in (250, 251)}
        data_reply = conn.getreply()
        if mail[0] != 250:
            self._reset(conn, data_reply)
            raise smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
        if refused:
            self._reset(conn, data_reply)
            raise smtplib.SMTPRecipientsRefused(refused)
        if data_reply[0] != 354:
            self._reset(conn, data_reply)
            raise smtplib.SMTPDataError(*data_reply)
        conn.send(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        code, text = conn.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, text)

    def _reset(self, conn: smtplib.SMTP, data_reply: tuple[int, bytes]) -> None:
        """Abandon the transaction after a refused MAIL or RCPT."""
        if data_reply[0] == 354:
            # The server took DATA anyway and waits for the message: ending it, even empty, could deliver
            # it to a recipient it accepted. Closing the connection abandons the transaction instead.
            self._drop()
        elif data_reply[0] != 421:
            conn.rset()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


_ENHANCED = re.compile(r"^\s*5\.(\d{1,3})\.(\d{1,3})\b")


def recipient_at_fault(code: int, reply: str, stage: str) -> bool:
    """Whether a permanent refusal says something about the recipient (which counts towards bouncing)
    rather than about our message or our sender (which must not).

    A refused RCPT is the recipient's, unless its enhanced status code (RFC 3463) names the message: 5.3.4
    too big, 5.6.x content, 5.2.3 too long. A refused MAIL FROM is ours. After DATA only an address or
    mailbox code (5.1.x, 5.2.x) is the recipient's; a size or content refusal, or one without a code, is ours.

    >>> recipient_at_fault(550, "5.1.1 no such user", "RCPT"), recipient_at_fault(554, "5.6.0 bad header", "DATA")
    (True, False)
    >>> recipient_at_fault(552, "5.2.2 mailbox full", "DATA"), recipient_at_fault(552, "message too big", "DATA")
    (True, False)
    """
    if stage == "MAIL":
        return False
    m = _ENHANCED.match(reply)
    subject, detail = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    about_message = (subject, detail) in ((3, 4), (2, 3)) or subject == 6
    if stage == "RCPT":
        return not about_message
    return subject in (1, 2) and not about_message


def _by_code(rcpt: str, code: int, reply: bytes | str, stage: str) -> DeliveryError:
    """An SMTP reply code to the error kind: 4xx transient, 5xx permanent (blaming the recipient or not)."""
    text = f"{code} {_text(reply)}"
    if 400 <= code < 500:
        return TransientDeliveryError(rcpt, f"server said {text}", hint="retried on the next run")
    at_fault = recipient_at_fault(code, _text(reply), stage)
    return PermanentDeliveryError(
        rcpt,
        f"server refused: {text}" + ("" if at_fault else f" (at {stage}: our message, not the address)"),
        recipient_at_fault=at_fault,
    )
