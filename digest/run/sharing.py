"""A process's share of a run: claim a range of subscribers, deliver it, renew the claim, until the run is done.

The run is shared through claims in the database (``store.runs``): one process, the worker processes of
``workers`` and the processes of other hosts all call ``deliver_claims``, and each range goes through
``delivery.deliver_range`` once (or again, from where it stopped, when its holder died).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from digest.run.delivery import RangeContext, Tally, deliver_range
from digest.store import Claim

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sharing:
    """A process's part in a shared run (``store.runs``): the run, the process's name in claims, how long a
    claim lasts unrenewed, and how often to look again while other processes hold every range left."""

    run: int
    owner: str
    lease: float
    poll: float = 0.5


class ClaimLost(Exception):
    """This process's claim ran out and another process took the range over: stop working on it."""


def deliver_claims(
    context: RangeContext,
    sharing: Sharing,
    *,
    tally: Tally | None = None,
    after_batch: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Tally:
    """Claim the run's ranges one at a time and deliver each (``deliver_range``), renewing the claim after
    every batch, until every range of the run is done: while other processes hold all that is left, wait
    and look again, so that a range whose holder died (or stopped renewing) is taken over and finished.

    ``after_batch`` is also called with 0 while waiting (a worker's liveness and stop checks).
    """
    tally = tally if tally is not None else Tally()
    store = context.delivery.store
    while True:
        claim = store.runs.claim(sharing.run, sharing.owner, sharing.lease)
        if claim is None:
            progress = store.runs.progress(sharing.run)
            if not (progress.held or progress.free):
                store.runs.finish(sharing.run)
                return tally
            if after_batch:
                after_batch(0)
            sleep(sharing.poll)
            continue
        _deliver_claim(context, sharing, claim, tally, after_batch)


def _deliver_claim(
    context: RangeContext,
    sharing: Sharing,
    claim: Claim,
    tally: Tally,
    after_batch: Callable[[int], None] | None,
) -> None:
    store = context.delivery.store
    where = f"the subscribers from {claim.start or 'the first'}"
    if claim.taken_over:
        log.warning("taking over %s: the process that held them died or stopped renewing its claim", where)
    planned = 0

    def renewed(n: int) -> None:
        nonlocal planned
        planned += n
        if not store.runs.renew(claim, sharing.lease):
            raise ClaimLost
        if after_batch:
            after_batch(n)

    try:
        deliver_range(context, claim.start, claim.stop, tally=tally, after_batch=renewed)
    except ClaimLost:
        log.warning("stopped delivering %s: the claim ran out and another process took them over", where)
        return
    store.runs.finish_range(claim, planned)
