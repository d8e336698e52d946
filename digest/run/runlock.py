"""One run at a time: an exclusive lock file beside the database that names its holder.

``fcntl.flock`` is released by the kernel when the holder dies (even by ``kill -9``), so a crashed run never
leaves a stale lock behind; the pid and start time written into the file are only there to name the holder.

A run's worker processes hold a shared lock on a second file (``<lock>.workers``) while they work. A new
run, once it holds the main lock, waits until it can take that one exclusively: the workers of a run that
was killed finish the batch in hand (they stop when they see their parent gone) before anything else runs.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

from digest.errors import LockedError, StoreError
from digest.store.dialect import shared_by_hosts


def _holder(path: Path) -> str:
    """Who holds the lock, as written into the file; waits a moment for a holder that has just taken it."""
    for _ in range(20):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown process"


WORKERS_WAIT = 120.0  # seconds a new run waits for an earlier run's workers to finish their batch


def workers_path(lock: Path) -> Path:
    return lock.with_name(lock.name + ".workers")


def lock_path(database: Path) -> Path:
    """The run lock beside the database."""
    return database.with_name(database.name + ".lock")


def _wait_for_workers(path: Path, timeout: float = WORKERS_WAIT) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LockedError(
                        f"worker processes of an earlier run still hold {path}",
                        hint="they stop after their current batch; if one hangs, end it and run again",
                    ) from None
                time.sleep(0.05)
    finally:
        os.close(fd)


def hold_as_worker(lock: Path) -> int:
    """In a worker: a shared lock on the workers' file for the worker's life; returns the descriptor."""
    fd = os.open(workers_path(lock), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


@contextmanager
def run_lock(path: Path, now: datetime) -> Iterator[None]:
    """Hold the lock at ``path`` for the duration; raise LockedError naming the holder if taken."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot create the run lock {path}: {exc.strerror}",
            hint="check that this user may write the database's folder (the database setting)",
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(Path(path))
            raise LockedError(
                f"another digest run holds the lock {path}: {holder}",
                hint="wait for it to finish; the lock frees itself when that process ends",
            ) from None
        _wait_for_workers(workers_path(Path(path)))
        os.ftruncate(fd, 0)
        os.write(
            fd,
            f"pid {os.getpid()} on {socket.gethostname()}, started {now.isoformat(timespec='seconds')}".encode(),
        )
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- a database that hosts share: no host-local lock -----------------------------------------------------------


def database_lock(database: Path | str, now: datetime) -> AbstractContextManager[None]:
    """The run lock for this database: a lock file beside a SQLite file. A PostgreSQL database has none:
    runs on any number of hosts share the day's work through claims in the database (``store.runs``)."""
    if shared_by_hosts(database):
        return nullcontext()
    return run_lock(lock_path(Path(database)), now)


def hold_as_worker_of(database: Path | str) -> object:
    """In a worker, for its life: the shared workers' lock of a SQLite database; returns what holds it.
    (On PostgreSQL a worker's claims and run membership live in its database session.)"""
    if shared_by_hosts(database):
        return None
    return hold_as_worker(lock_path(Path(database)))
