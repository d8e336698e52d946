"""What every listing parser is given besides the bytes, and what it is: the shape of a listing kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from digest.models import Paper


@dataclass(frozen=True, slots=True)
class Listing:
    """One document of a source being read: the source's name (for messages and each paper's ``source``),
    the listing's day (a capture names weekdays, not dates), and where the bytes came from (a file's
    name, a redacted URL) for messages."""

    source: str
    today: date
    origin: str = ""

    @property
    def where(self) -> str:
        """`` (origin)`` for a message, or nothing."""
        return f" ({self.origin})" if self.origin else ""


# A listing kind: the bytes of one document to its papers, and how many entries it skipped on purpose
# (unreadable entries; a new version comes as a paper flagged ``revision``); a ParseError (naming the
# source) when the bytes are not that kind.
Parser = Callable[[bytes, Listing], tuple[list[Paper], int]]
