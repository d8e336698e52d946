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

import ctypes
import hashlib
import os
import re
import smtplib
import ssl
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
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


class Transport(Protocol):
    """Where messages go. ``describe()`` says where, for the run summary.

    ``idempotent``: delivering the same Message-ID twice leaves one copy (so a resend after a crash can
    never duplicate, and the pipeline may record a batch of deliveries in one transaction).
    """

    idempotent: bool

    def __enter__(self) -> Transport: ...
    def __exit__(self, *exc: object) -> None: ...
    def send(self, message: Outgoing) -> None: ...
    def flush(self) -> None:
        """Make what ``send`` accepted durable (before the run records it as sent)."""

    def describe(self) -> str: ...


class MemoryTransport:
    """Keeps messages in a list. For tests, previews and library users; ``refuse`` makes chosen recipients fail."""

    idempotent = False

    def __init__(self, refuse: dict[str, DeliveryError] | None = None) -> None:
        self.sent: list[EmailMessage] = []
        self.refuse = refuse or {}

    def __enter__(self) -> MemoryTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, message: Outgoing) -> None:
        for rcpt in message.recipients:
            if rcpt in self.refuse:
                raise self.refuse[rcpt]
        self.sent.append(message.message())

    def flush(self) -> None:
        return None

    def describe(self) -> str:
        return "memory"


# Threads per process that fsync written files in the background. The disk does the work, so a few threads
# keep it busy; more only compete with rendering for the cores (a run has a process per core).
SYNC_THREADS = 2
# How a batch of Maildir files is made durable before the run records it (``[delivery] maildir_sync``):
# "filesystem", one syncfs(2) of the Maildir's file system per batch (Linux; elsewhere "files"); "files",
# each file's fsync begun in the background as it is written, then the folder's.
MAILDIR_SYNCS = ("filesystem", "files")
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
HAS_SYNCFS = _LIBC is not None and hasattr(_LIBC, "syncfs")


def fsync_path(path: str) -> None:
    """``fsync`` a file or a folder by its path: its data (or its entries) on disk before this returns."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs_path(path: str) -> None:
    """syncfs(2) of the file system ``path`` is on: every file's data and every name on it reach the disk
    before this returns (Linux; a write-back error is reported since Linux 5.8). The standard library has
    ``os.sync`` (every file system of the machine) and ``os.fsync`` (one file), not this; ctypes calls it."""
    assert _LIBC is not None
    fd = os.open(path, os.O_RDONLY)
    try:
        if _LIBC.syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
    finally:
        os.close(fd)


class MaildirTransport:
    """Writes each message into a Maildir's ``new/`` (via ``tmp/``, so a reader never sees half a file).

    The file is named after the Message-ID, so delivering a message again (a resend after a crash) finds
    it already there, in ``new/`` or, once a mail reader has seen it, in ``cur/``, and adds no copy.
    Maildir readers accept any unique name; ``mailbox.Maildir`` picks its own, so it cannot do this.
    """

    idempotent = True

    def __init__(self, path: Path, sync: str = "filesystem") -> None:
        if sync not in MAILDIR_SYNCS:
            raise ValueError(f"sync must be one of {MAILDIR_SYNCS}, not {sync!r}")
        self.path = Path(path)
        self._dir = str(self.path)
        self._ready = False
        self._seen: set[str] | None = None  # base names in cur/, read once, on the first resend check
        self.whole_filesystem = sync == "filesystem" and HAS_SYNCFS
        self._written = 0  # files written since the last flush
        self._syncing: list[Future[None]] = []  # fsyncs begun since the last flush ("files")
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> MaildirTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self._ready = False
        self._seen = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _open(self, rcpt: str) -> None:
        """The Maildir, created with its parent folders at the first message."""
        if self._ready:
            return
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryAbortedError(rcpt, f"cannot open the Maildir {self.path}: {exc.strerror}") from exc
        self._ready = True

    @staticmethod
    def file_name(message_id: str) -> str:
        return hashlib.sha256(message_id.encode()).hexdigest()[:40] + ".digest"

    def _delivered(self, name: str) -> bool:
        if os.path.exists(f"{self._dir}/new/{name}"):
            return True
        if self._seen is None:
            self._seen = {entry.split(":", 1)[0] for entry in os.listdir(f"{self._dir}/cur")}
        return name in self._seen

    def send(self, message: Outgoing) -> None:
        if not self._ready:
            self._open(", ".join(message.recipients))
        name = self.file_name(message.message_id)
        try:
            if self._delivered(name):
                return
            tmp = f"{self._dir}/tmp/{name}.{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(message.data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, f"{self._dir}/new/{name}")
            self._written += 1
            if not self.whole_filesystem:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="maildir-fsync")
                self._syncing.append(self._pool.submit(fsync_path, f"{self._dir}/new/{name}"))
        except OSError as exc:
            rcpt = ", ".join(message.recipients)
            raise TransientDeliveryError(rcpt, f"cannot write to {self.path}: {exc.strerror}") from exc

    def flush(self) -> None:
        """Messages written since the last flush reach the disk, their names too, before this returns.

        With ``sync="filesystem"`` (Linux): one syncfs(2) of the Maildir's file system, one journal commit
        for the whole batch; whatever else waits to be written on that file system is written with it.
        With ``sync="files"``: each file's ``fsync`` starts in a background thread as soon as it is
        written, so the syncs overlap the writing of the rest of the batch; this waits for them, then
        syncs the folder (its new names). Only this Maildir's files are flushed. bench/fsync.py measures
        each way.
        """
        if not self._written:
            return
        self._written = 0
        syncing, self._syncing = self._syncing, []
        try:
            if self.whole_filesystem:
                syncfs_path(f"{self._dir}/new")
                return
            for done in syncing:
                done.result()
            fsync_path(f"{self._dir}/new")
        except OSError as exc:
            raise TransientDeliveryError(
                "(a batch)", f"cannot flush {self.path} to disk: {exc.strerror}"
            ) from exc

    def describe(self) -> str:
        return f"Maildir {self.path}"


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
