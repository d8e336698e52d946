"""A run's deliveries spread over worker processes, so every core renders and delivers.

Rendering is Python and holds the GIL, so threads would not help; processes do. The parent ingests the
sources, then splits the subscribers (in address order) into ranges of ``CHUNK`` and hands the ranges to
``workers`` processes. Each worker opens its own connection to the state database and its own transport
(one SMTP connection per worker), builds the candidate pool and the templates once, and runs exactly the
in-process code (``pipeline.plan_batches`` and ``Delivery``) on each range it is given; it sends back
counts and the details of problems only. Outbox rows make this as safe as a single process: each batch's
rows are committed before its messages go out, whichever process sends them.

Workers are started with ``spawn`` (a fresh interpreter), not ``fork``: nothing of the parent's open
database connection or threads is inherited.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.util import Finalize
from typing import TYPE_CHECKING, Any

from digest.errors import WorkerError
from digest.models import Tally
from digest.settings import Settings

if TYPE_CHECKING:
    from digest.pipeline import Delivery
    from digest.select import PaperIndex

CHUNK = 1000  # subscribers per task: enough to amortise a task, small enough to balance the workers
PROGRESS_EVERY = 0.25  # seconds between progress updates from the workers' counters
AUTO_MIN = 2 * CHUNK  # with fewer subscribers, starting processes costs more than it saves
log = logging.getLogger("digest")


def worker_count(setting: int, subscribers: int, method: str) -> int:
    """How many processes a run uses: the setting, or with 0 (auto) one per core for large runs.

    >>> worker_count(0, 500, "maildir"), worker_count(3, 500, "maildir")
    (1, 3)
    """
    if setting:
        return setting
    if subscribers < AUTO_MIN:
        return 1
    return max(1, os.cpu_count() or 1) if method == "maildir" else 4


@dataclass
class _WorkerState:
    settings: Settings
    now: datetime
    delivery: Delivery
    pool: PaperIndex
    parent: int  # the run's pid: when it changes, the run was killed
    done: (
        Any  # shared counters (one slot per worker, no lock): subscribers done, read by the run for progress
    )
    slot: int


_state: _WorkerState | None = None


def _start(settings: Settings, now: datetime, workers: int, log_level: int, done: Any, slots: Any) -> None:
    """In each worker, once: the store, the transport, the pool and the renderer."""
    global _state
    from digest import pipeline
    from digest.runlock import hold_as_worker, lock_path
    from digest.store import RUN_SYNC, Store
    from digest.transport import make_transport

    hold_as_worker(lock_path(settings.database))  # released by the kernel when this process ends
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[worker]: %(message)s")
    store = Store.open(settings.database, sync=RUN_SYNC)
    transport = make_transport(settings)
    transport.__enter__()
    courier = pipeline._courier(settings, transport, share=workers)
    delivery = pipeline.Delivery(store, pipeline._renderer(settings), courier, now, dry_run=False)
    pool = pipeline.candidate_pool(settings, store, now)
    with slots.get_lock():  # the only lock workers share, taken once at start
        slot = slots.value
        slots.value += 1
    _state = _WorkerState(settings, now, delivery, pool, os.getppid(), done, slot)

    def close() -> None:
        transport.__exit__(None, None, None)
        store.close()

    Finalize(None, close, exitpriority=10)  # run when the worker exits normally


def _work(start: str, stop: str | None) -> Tally:
    """One range of subscribers, planned and delivered in batches; only problems come back in detail."""
    from digest import pipeline

    assert _state is not None
    delivery = _state.delivery
    tally = Tally(keep_first=0)
    for batch in pipeline.plan_batches(
        _state.settings,
        delivery.store,
        _state.now,
        pool=_state.pool,
        start=start,
        stop=stop,
    ):
        tally.add(delivery.deliver_batch(batch))
        _state.done[_state.slot] += len(batch)
        if os.getppid() != _state.parent:  # the run was killed: stop as a crash would (the outbox recovers)
            os._exit(1)
    return tally


def deliver_in_workers(
    settings: Settings,
    bounds: list[str],
    now: datetime,
    workers: int,
    progress: Callable[[int], None] | None = None,
) -> Tally:
    """Deliver to the subscribers from ``bounds[0]`` on, range by range, in ``workers`` processes.

    ``bounds`` are the first addresses of consecutive ranges (``Store.subscriber_bounds``). A worker that
    fails stops the run with its error once the ranges already begun have finished; what was not sent
    is picked up by the next run.
    """
    ranges = list(zip(bounds, [*bounds[1:], None], strict=True))
    tally = Tally()
    context = multiprocessing.get_context("spawn")
    done_counts = context.RawArray("q", workers)
    slots = context.Value("i", 0)
    reported = 0
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start,
        initargs=(settings, now, workers, logging.getLogger().getEffectiveLevel(), done_counts, slots),
    ) as executor:
        futures: set[Future[Tally]] = {executor.submit(_work, start, stop) for start, stop in ranges}
        try:
            while futures:
                done, futures = wait(futures, timeout=PROGRESS_EVERY, return_when=FIRST_EXCEPTION)
                for future in done:
                    tally.merge(future.result())  # a worker's exception is raised here
                if progress:
                    total = sum(done_counts)
                    progress(total - reported)
                    reported = total
        except BrokenProcessPool as exc:
            raise WorkerError(
                "a worker process died during the run (killed, or out of memory); the run stopped",
                hint="run digest run again: it resends what was begun and sends what was left, once",
            ) from exc
        except BaseException:
            for future in futures:
                future.cancel()  # ranges not begun wait for the next run; begun ones finish
            raise
    return tally
