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
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.errors import LockedError, StoreError


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


# -- PostgreSQL (#16): the database holds the lock ------------------------------------------------------------

RUN_KEY, WORKERS_KEY = 7320452, 7320453  # advisory lock keys: one run at a time; a run's workers


def _is_url(database: Path | str) -> bool:
    return isinstance(database, str) and database.startswith(("postgresql://", "postgres://"))


def _connect(url: str) -> Any:
    import sqlite3

    from digest.store import postgresql
    from digest.store.base import store_error

    try:
        return postgresql.Connection(url)
    except sqlite3.Error as exc:
        raise store_error(exc, postgresql.without_password(url)) from exc


@contextmanager
def _postgresql_run_lock(url: str) -> Iterator[None]:
    """On PostgreSQL the run lock is a session advisory lock on a connection of its own: released by the
    server when that session ends, however the run ends (even ``kill -9``, once the socket closes)."""
    conn = _connect(url)
    try:
        if not conn.execute("SELECT pg_try_advisory_lock(?)", (RUN_KEY,)).fetchone()[0]:
            raise LockedError(
                "another digest run holds the run lock of this database",
                hint="wait for it to finish; the lock frees itself when that run's session ends",
            )
        deadline = time.monotonic() + WORKERS_WAIT
        while not conn.execute("SELECT pg_try_advisory_lock(?)", (WORKERS_KEY,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise LockedError(
                    "worker processes of an earlier run still hold this database",
                    hint="they stop after their current batch; if one hangs, end it and run again",
                )
            time.sleep(0.05)
        conn.execute("SELECT pg_advisory_unlock(?)", (WORKERS_KEY,))
        yield
    finally:
        conn.close()


def database_lock(database: Path | str, now: datetime) -> AbstractContextManager[None]:
    """The run lock for this database: a lock file beside a SQLite file, an advisory lock in PostgreSQL."""
    if _is_url(database):
        return _postgresql_run_lock(str(database))
    return run_lock(lock_path(Path(database)), now)


def hold_as_worker_of(database: Path | str) -> object:
    """In a worker, for its life: the shared workers' lock of this database; returns what holds it."""
    if _is_url(database):
        conn = _connect(str(database))
        conn.execute("SELECT pg_advisory_lock_shared(?)", (WORKERS_KEY,))
        return conn
    return hold_as_worker(lock_path(Path(database)))
