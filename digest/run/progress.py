"""How far a long run is: a progress bar on a terminal, a log line every few seconds otherwise (cron, a
log file), nothing for short runs."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

SHOW_FROM = 500  # subscribers; a shorter run is over before a bar would help
LOG_EVERY = 10.0  # seconds between log lines when stderr is not a terminal
log = logging.getLogger("digest.run.progress")


class LogLines:
    """``advance(n)`` logs "12,000/100,000 subscribers (12%), 2,100/s, about 42 s left" at most every
    ``every`` seconds, and once at the end."""

    def __init__(
        self, total: int, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total, self.every, self.clock = total, every, clock
        self.done = 0
        self.started = self.last = clock()

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else 0.0
        pct = 100 * self.done / self.total if self.total else 100.0
        return (
            f"{self.done:,}/{self.total:,} subscribers ({pct:.0f}%), {rate:,.0f}/s, about {left:.0f} s left"
        )

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s", self.line(now))

    def finish(self) -> None:
        log.info("%s", self.line(self.clock()).split(", about")[0] + " in all")


@contextmanager
def run_progress(total: int) -> Iterator[Callable[[int], None] | None]:
    """The ``progress`` callback for ``pipeline.run_once``: a rich bar on a terminal, else log lines."""
    if total < SHOW_FROM:
        yield None
        return
    if sys.stderr.isatty():
        columns = (
            TextColumn("delivering"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("subscribers"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("deliver", total=total)
            yield lambda n: bar.advance(task, n)
        return
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)  # progress lines show at the default verbosity too
    lines = LogLines(total)
    yield lines.advance
    lines.finish()
