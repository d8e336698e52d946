"""One run at a time: an exclusive lock file beside the database that names its holder.

``fcntl.flock`` is released by the kernel when the holder dies (even by ``kill -9``), so a crashed run never
leaves a stale lock behind; the pid and start time written into the file are only there to name the holder.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from digest.errors import LockedError


def _holder(path: Path) -> str:
    """Who holds the lock, as written into the file; waits a moment for a holder that has just taken it."""
    for _ in range(20):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown process"


@contextmanager
def run_lock(path: Path, now: datetime) -> Iterator[None]:
    """Hold the lock at ``path`` for the duration; raise LockedError naming the holder if taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(Path(path))
            raise LockedError(
                f"another digest run holds the lock {path}: {holder}",
                hint="wait for it to finish; the lock frees itself when that process ends",
            ) from None
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
