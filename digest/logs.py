"""Log lines on stderr, the same for the command and its worker processes, with secrets taken out.

Libraries log the URLs they fetch (httpx: ``HTTP Request: GET https://user:password@…``); every line goes
through ``redact_text`` so no password or token from a source URL ever reaches a terminal or a log file.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from digest.redact import redact_text

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_FORMAT = "%(asctime)s %(levelname)s %(name)s[worker]: %(message)s"


class RedactingFormatter(logging.Formatter):
    """A formatter whose lines have every URL's credentials replaced by ``***``."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is logged (as logging's last resort does), so a
    command run in-process, its stderr captured, never leaves a handler on a closed stream behind."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(level: int, *, worker: bool = False) -> None:
    """Log at ``level`` and above on stderr, redacted. Replaces handlers set up earlier in this process."""
    handler = StderrHandler()
    handler.setFormatter(RedactingFormatter(WORKER_FORMAT if worker else FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # flufl.bounce logs a detector's exception with its traceback and then raises it; digest reports the
    # message that could not be read once, as one line (the traceback with -vv).
    logging.getLogger("flufl.bounce").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL)
