"""The retry policy of a run's deliveries: bounded retries with backoff, pacing, and one retry budget that
every worker process draws on.

``Courier.send`` hands one message to a transport; a transient failure (4xx, timeout, dropped connection) is
retried a few times, waiting longer each time, while the run's budget of seconds for such failures lasts.
What is still failing then is the next run's to retry (the outbox keeps it). Permanent failures and
configuration failures are raised at once: retrying would not help.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from digest.email.mime import Outgoing
from digest.email.transport import Transport
from digest.errors import TransientDeliveryError

log = logging.getLogger("digest")


class SharedNumber(Protocol):
    """A number several processes may change: ``multiprocessing.Value("d")`` (with its lock)."""

    value: float

    def get_lock(self) -> Any: ...


class _Local:
    """A ``SharedNumber`` for one process."""

    def __init__(self, value: float) -> None:
        self.value = value

    def get_lock(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


class RetryBudget:
    """Seconds a run may still spend on transient failures, shared by all its worker processes."""

    def __init__(self, seconds: float | SharedNumber) -> None:
        self.left = _Local(seconds) if isinstance(seconds, int | float) else seconds

    def spend(self, seconds: float) -> None:
        with self.left.get_lock():
            self.left.value -= seconds

    def allows(self, seconds: float) -> bool:
        """Whether waiting ``seconds`` more stays within the budget; if so, they are spent."""
        with self.left.get_lock():
            if seconds > self.left.value:
                return False
            self.left.value -= seconds
            return True


class Courier:
    """Sends through a transport with bounded retries and optional pacing.

    A transient failure is retried up to ``retries`` times, waiting ``backoff`` seconds doubled each time.
    ``budget`` caps the seconds a run spends on transient failures (the waits and the failed attempts
    themselves, timeouts included), over all its workers; once spent, a transient failure is final for this
    run. ``rate_limit`` (messages per second) spaces the sends.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        retries: int = 3,
        backoff: float = 2.0,
        budget: RetryBudget | None = None,
        rate_limit: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.retries = retries
        self.backoff = backoff
        self.budget = budget or RetryBudget(120.0)
        self.interval = 1.0 / rate_limit if rate_limit else 0.0
        self.sleep = sleep
        self.clock = clock
        self._last: float | None = None

    def _pace(self) -> None:
        if self.interval and self._last is not None:
            wait = self._last + self.interval - self.clock()
            if wait > 0:
                self.sleep(wait)
        self._last = self.clock()

    def send(self, message: Outgoing) -> None:
        attempt = 0
        while True:
            self._pace()
            started = self.clock()
            try:
                self.transport.send(message)
                return
            except TransientDeliveryError as exc:
                self.budget.spend(self.clock() - started)
                delay = self.backoff * (2**attempt)
                if attempt >= self.retries or not self.budget.allows(delay):
                    raise
                log.info("transient failure (%s); retry %d in %.1f s", exc, attempt + 1, delay)
                self.sleep(delay)
                attempt += 1
