"""One store connection per server thread, opened once: a request does not pay for opening the database.

The web app's blocking work runs in a pool of threads (Starlette's ``run_in_threadpool``); each thread
keeps its own SQLite connection (SQLite connections are not shared across threads), opened and checked at
its first request. The first connection opens (and if needed upgrades) the database; later ones find it
ready. Writes from several threads, and from a ``digest run`` beside the app, wait for each other through
SQLite's busy timeout. When the app stops, every connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from digest.errors import StoreError
from digest.selection.index import PaperIndex
from digest.store import Store

log = logging.getLogger(__name__)


class ThreadStores:
    """``with stores.get() as store:`` gives this thread's connection to the database at ``path``."""

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.local = threading.local()
        self.opened: set[Store] = set()
        self.lock = threading.Lock()

    @contextmanager
    def get(self) -> Iterator[Store]:
        store: Store | None = getattr(self.local, "store", None)
        if store is None:
            store = self.local.store = Store.open(self.path)
            with self.lock:
                self.opened.add(store)
        yield store

    def close(self) -> None:
        """Close every thread's connection (the app stops; its threads may outlive it)."""
        with self.lock:
            stores, self.opened = self.opened, set()
        for store in stores:
            with contextlib.suppress(Exception):
                store.close()

    def healthy(self) -> str | None:
        """None if this thread's connection answers a query on the schema; else why not, after dropping the
        connection so that the next use opens a new one (a PostgreSQL server that restarted is reached
        again instead of failing every request from then on)."""
        try:
            with self.get() as store:
                store.ping()
            return None
        except StoreError as failed:
            broken: Store | None = getattr(self.local, "store", None)
            self.local.store = None
            if broken is not None:
                with self.lock:
                    self.opened.discard(broken)
                with contextlib.suppress(Exception):
                    broken.close()
            return failed.message


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
            store.readers.unsubscribe_many(emails, datetime.now(UTC))


class PoolCache:
    """The candidate pool (the stored papers of the lookback window, indexed) for previews.

    Every ``ttl`` seconds a worker thread asks the store whether those papers changed (``version``: one
    indexed query) and indexes them again only if so: indexing holds the GIL for a quarter of a second on
    the 375-paper day, seconds on a 5,000-paper one, and would stall every request of the process meanwhile.
    Requests keep using the current index until the next is ready; only the very first waits for one.
    """

    def __init__(
        self, version: Callable[[], Hashable], build: Callable[[], PaperIndex], ttl: float = 10.0
    ) -> None:
        self.version, self.build, self.ttl = version, build, ttl
        self.pool: PaperIndex | None = None
        self.built_from: Hashable = None
        self.fresh_until = 0.0
        self.building: asyncio.Task[None] | None = None

    async def get(self) -> PaperIndex:
        if time.monotonic() >= self.fresh_until and (self.building is None or self.building.done()):
            self.building = asyncio.create_task(self._refresh())
        if self.pool is None:
            assert self.building is not None
            await asyncio.shield(self.building)  # one build, however many requests wait for it
        assert self.pool is not None
        return self.pool

    def _current(self) -> tuple[PaperIndex, Hashable]:
        version = self.version()
        if self.pool is not None and version == self.built_from:
            return self.pool, version
        return self.build(), version

    async def _refresh(self) -> None:
        try:
            self.pool, self.built_from = await run_in_threadpool(self._current)
            self.fresh_until = time.monotonic() + self.ttl
        except Exception:
            if self.pool is None:
                raise  # the requests waiting for the first pool get the error; the next one tries again
            log.exception("could not refresh the papers for previews; using the previous ones")
