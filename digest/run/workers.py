"""A run's deliveries spread over worker processes, so every core renders and delivers.

Rendering is Python and holds the GIL, so threads would not help; processes do. The parent ingests the
sources and joins (or begins) the day's run, whose subscribers are cut into ranges in the database
(``store.runs``). Each of ``workers`` processes opens its own connection to the state database and its own
transport (one SMTP connection per worker), builds the candidate pool and the templates once, and runs
exactly the in-process code (``sharing.deliver_claims``): it claims a range, delivers it, claims the next,
as processes on other hosts do; it sends back counts and the details of problems only. The run's retry
budget is one number in shared memory that every worker draws on, and the rate limit is split among them.
Outbox rows make this as safe as a single process: each batch's rows are committed before its messages go
out, whichever process sends them.

Workers are started with ``spawn`` (a fresh interpreter), not ``fork``: nothing of the parent's open
database connection or threads is inherited.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from multiprocessing.util import Finalize
from typing import Any

from digest import logs
from digest.errors import WorkerError
from digest.run.courier import RetryBudget
from digest.run.delivery import Delivery, RangeContext, Tally
from digest.run.runlock import hold_as_worker_of
from digest.run.sharing import Sharing, deliver_claims
from digest.settings import Settings
from digest.store import CHUNK, RUN_SYNC, owner_name
from digest.wiring import Services

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
    context: RangeContext
    sharing: Sharing
    parent: int  # the run's pid: when it changes, the run was killed
    stop: Any  # set by the run when it is interrupted: workers stop after the batch in hand
    done: Any  # shared counters (one slot per worker, no lock): subscribers done, read for progress
    slot: int


_lock_holder: object = None  # the worker's shared lock (a descriptor, or a PostgreSQL session)
_state: _WorkerState | None = None


class Stopped(Exception):
    """A worker stopped between batches because the run was interrupted (Ctrl-C)."""


def _start(
    settings: Settings,
    sharing: Sharing,
    now: datetime,
    workers: int,
    log_level: int,
    done: Any,
    slots: Any,
    budget: Any,
    stop: Any,
    any_hour: bool,
) -> None:
    """In each worker, once: its services (built from the settings, as every process builds its own), the
    store, the channel (its own SMTP connection), the pool and the renderer."""
    global _state, _lock_holder
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle; workers see it gone
    _lock_holder = hold_as_worker_of(settings.database)  # kept for the process's life; released at its end
    logs.configure(log_level, worker=True)
    services = Services(settings)
    store = services.open_store(sync=RUN_SYNC)
    store.runs.attend(sharing.run)
    channel = services.channel(budget=RetryBudget(budget), share=workers)
    channel.__enter__()
    delivery = Delivery(store, channel, now)
    context = RangeContext(delivery, services.pool(store, now), services.default_when, any_hour)
    with slots.get_lock():  # taken once at start (the budget's lock only on a transient failure)
        slot = slots.value
        slots.value += 1
    _state = _WorkerState(context, replace(sharing, owner=owner_name()), os.getppid(), stop, done, slot)

    def close() -> None:
        channel.__exit__(None, None, None)
        store.close()

    Finalize(None, close, exitpriority=10)  # run when the worker exits normally


def _work() -> Tally:
    """Ranges of subscribers claimed and delivered until the run is done; only problems come back in
    detail."""
    assert _state is not None
    state = _state

    def after_batch(n: int) -> None:
        state.done[state.slot] += n
        if os.getppid() != state.parent:  # the run was killed: stop as a crash would (the outbox recovers)
            os._exit(1)
        if state.stop.value:  # the run was interrupted: what this batch sent is recorded; stop here
            raise Stopped

    return deliver_claims(state.context, state.sharing, tally=Tally(keep_first=0), after_batch=after_batch)


def deliver_in_workers(
    settings: Settings,
    sharing: Sharing,
    now: datetime,
    workers: int,
    progress: Callable[[int], None] | None = None,
    *,
    any_hour: bool = False,
) -> Tally:
    """Deliver the ranges of the shared run ``sharing.run`` in ``workers`` processes.

    A worker that fails stops the run with its error once the other workers have finished the range in
    hand; what was not sent is picked up by the next run.
    """
    tally = Tally()
    # The config's readers are in the store by now (the run synced them): a worker reads them there, so it
    # is not sent thousands of them to unpickle.
    settings = settings.model_copy(update={"subscribers": []})
    context = multiprocessing.get_context("spawn")
    done_counts = context.RawArray("q", workers)
    slots = context.Value("i", 0)
    budget = context.Value("d", settings.delivery.retry_budget)  # seconds, one for the whole run
    stopping = context.RawValue("b", 0)
    reported = 0
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_start,
        initargs=(
            settings,
            sharing,
            now,
            workers,
            logging.getLogger().getEffectiveLevel(),
            done_counts,
            slots,
            budget,
            stopping,
            any_hour,
        ),
    ) as executor:
        futures: set[Future[Tally]] = {executor.submit(_work) for _ in range(workers)}
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
            stopping.value = 1
            for future in futures:
                future.cancel()  # workers stop after the batch in hand; ranges not begun wait
            raise
    return tally
