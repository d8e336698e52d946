"""One store connection per server thread, opened once: a request does not pay for opening the database.

The web app's blocking work runs in a pool of threads (Starlette's ``run_in_threadpool``); each thread
keeps its own SQLite connection (SQLite connections are not shared across threads), opened and checked at
its first request. The first connection opens (and if needed upgrades) the database; later ones find it
ready. Writes from several threads, and from a ``digest run`` beside the app, wait for each other through
SQLite's busy timeout.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from digest.store import Store


class ThreadStores:
    """``with stores.get() as store:`` gives this thread's connection to the database at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()

    @contextmanager
    def get(self) -> Iterator[Store]:
        store: Store | None = getattr(self.local, "store", None)
        if store is None:
            store = self.local.store = Store.open(self.path)
        yield store


class UnsubscribeBatcher:
    """Group commit for one-click unsubscribes: requests that arrive together are written in one transaction.

    Each commit is made durable (an fsync) before any of its requests is answered, so an answer of
    "unsubscribed" always means it is on disk; but one fsync serves every request that was waiting, instead
    of one fsync each (bench/web.py measures both).
    """

    def __init__(self, stores: ThreadStores, max_batch: int = 500) -> None:
        self.stores = stores
        self.max_batch = max_batch
        self.pending: list[tuple[str, asyncio.Future[None]]] = []
        self.writing: asyncio.Task[None] | None = None

    async def unsubscribe(self, email: str) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((email, done))
        if self.writing is None or self.writing.done():
            self.writing = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            try:
                await run_in_threadpool(self._write, [email for email, _ in batch])
            except Exception as exc:  # every waiting request learns of it
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for _, done in batch:
                    done.set_result(None)

    def _write(self, emails: list[str]) -> None:
        with self.stores.get() as store:
            store.unsubscribe_many(emails, datetime.now(UTC))
