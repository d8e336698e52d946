"""A channel digest does not ship, in one module: each digest as one JSON line appended to a file, as a
webhook or a feed would take it. The last line registers it; ``[delivery] method = "jsonl"`` then delivers
every digest through it, with the outbox's guarantees (recorded once accepted, never a paper twice)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from digest.models import Digest
from digest.run.channel import Piece
from digest.run.courier import RetryBudget
from digest.wiring import Services, register_channel


@dataclass(frozen=True, slots=True)
class Entry:
    digest: Digest
    message_id: str
    line: str


class JsonLines:
    idempotent = False  # a line appended twice is two lines: each acceptance is recorded at once

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[str] | None = None

    def __enter__(self) -> JsonLines:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def compose(self, digest: Digest, now: datetime, *, message_id: str | None = None) -> Entry:
        mid = message_id or f"<{digest.day:%Y%m%d}.{digest.subscriber.key}@jsonl>"
        papers = [m.paper.title for m in digest.matches]
        line = json.dumps(
            {"to": digest.subscriber.email, "day": digest.day.isoformat(), "id": mid, "papers": papers}
        )
        return Entry(digest, mid, line)

    def send(self, piece: Piece) -> None:
        assert isinstance(piece, Entry) and self.file is not None
        self.file.write(piece.line + "\n")
        self.file.flush()

    def flush(self) -> None:
        if self.file is not None:
            os.fsync(self.file.fileno())

    def describe(self) -> str:
        return f"JSON lines {self.path}"


def make(
    services: Services, *, budget: RetryBudget | None, share: int, sleep: Callable[[float], None]
) -> JsonLines:
    return JsonLines(services.settings.delivery.maildir.with_suffix(".jsonl"))


register_channel("jsonl", make)
