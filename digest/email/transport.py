"""Delivery behind one interface: Maildir (the default, here), SMTP (``smtp``), and memory (the fake that
ships, here).

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
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from digest.email.mime import Outgoing
from digest.errors import (
    DeliveryAbortedError,
    DeliveryError,
    TransientDeliveryError,
)


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
