"""What a run did, as values: per source, per subscriber, and the whole run (what ``digest run`` prints
and ``--json`` writes). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest.models import Match, Status


@dataclass(frozen=True, slots=True)
class SourceReport:
    """One source in a run. ``papers``: new announcements read; ``revisions``: new versions of papers
    listed before (arXiv's "replace"); ``skipped``: entries left out (unreadable ones); ``clamped``: papers
    kept with a field cut or clamped; ``internal``: the failure was a bug in digest, not the source's;
    ``shared``: a run on another host read it just now, so this run did not (PostgreSQL);
    ``last_new``: when it last brought a new paper, this run or an earlier one ("why no email today?")."""

    name: str
    kind: str
    papers: int = 0
    new: int = 0
    error: str | None = None
    not_modified: bool = False
    skipped: int = 0
    clamped: int = 0
    internal: bool = False
    shared: bool = False
    last_new: str | None = None  # when this source last brought a paper not seen before (ISO), any run
    revisions: int = 0

    @property
    def status(self) -> str:
        """``ok``, ``not-modified`` (a URL source answered 304), ``read-by-another-run`` or ``failed``."""
        if self.error:
            return "failed"
        if self.shared:
            return "read-by-another-run"
        return "not-modified" if self.not_modified else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "papers": self.papers,
            "new": self.new,
            "revisions": self.revisions,
            "skipped": self.skipped,
            "clamped": self.clamped,
            "error": self.error,
            "last_new": self.last_new,
        }


@dataclass(frozen=True, slots=True)
class SubscriberReport:
    email: str
    status: Status
    matches: tuple[Match, ...] = ()
    error: str | None = None
    message_id: str | None = None
    note: str | None = None
    internal: bool = False  # the failure was a bug in digest (exit 2), not the server's or the profile's
    updates: tuple[str, ...] = ()  # the papers (keys) whose new versions the digest told of

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "email": self.email,
            "status": str(self.status),
            "papers": [
                {
                    "id": m.paper.key,
                    "title": m.paper.title,
                    "score": round(m.score, 4),
                    "matched": list(m.matched),
                    "reasons": [r.text for r in m.reasons],
                }
                for m in self.matches
            ],
        }
        if self.error:
            out["error"] = self.error
        if self.updates:
            out["updates"] = list(self.updates)
        if self.note:
            out["note"] = self.note
        if self.message_id:
            out["message_id"] = self.message_id
        return out


def is_problem(r: SubscriberReport) -> bool:
    """Something failed that a later run retries (a subscriber already known to bounce is not news)."""
    return r.status in (Status.FAILED, Status.RETRY_LATER) or (
        r.status == Status.BOUNCED and r.error is not None
    )


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a run did. ``subscribers`` holds the details of at most a few thousand subscribers (the
    first ones and every problem); ``counts`` counts them all, so a run of 100,000 stays small."""

    started: datetime
    sources: tuple[SourceReport, ...] = ()
    subscribers: tuple[SubscriberReport, ...] = ()
    delivered_to: str = ""
    dry_run: bool = False
    counts: dict[str, int] | None = None  # status -> subscribers; None: count ``subscribers``
    problems: int | None = None
    omitted: int = 0  # subscribers counted but not in ``subscribers``
    # Wall seconds per stage: start (this process's channel and keys checked), sync (the config's readers),
    # ingest, deliver (plan, compose, send, record).
    timings: dict[str, float] | None = None
    internal_errors: int = 0  # bugs met (a source or a digest that failed unexpectedly): exit 2, not 1
    # Seconds inside the delivery, per phase, summed over the run's processes (see ``run.delivery.PHASES``).
    phases: dict[str, float] | None = None
    processes: int = 1  # how many processes delivered (the run's, or its workers)

    @property
    def status_counts(self) -> dict[str, int]:
        if self.counts is not None:
            return self.counts
        out: dict[str, int] = {}
        for r in self.subscribers:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        """Nothing failed that a later run must retry (a known bouncing subscriber is not a failure)."""
        problems = self.problems if self.problems is not None else sum(map(is_problem, self.subscribers))
        return all(s.error is None for s in self.sources) and problems == 0

    @property
    def internal(self) -> int:
        """Unexpected failures (bugs) met in the sources and the deliveries."""
        return self.internal_errors + sum(s.internal for s in self.sources)

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": [s.to_json() for s in self.sources],
            "counts": self.status_counts,
            "subscribers": [s.to_json() for s in self.subscribers],
            "omitted": self.omitted,
            "timings": self.timings or {},
            "phases": self.phases or {},
            "processes": self.processes,
            "internal_errors": self.internal,
        }
