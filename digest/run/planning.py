"""Planning a run: what each subscriber gets now, decided a batch at a time from the store's state.

Per subscriber (``plan_batch``), in order:

1. bouncing, or a profile that cannot be evaluated: a ``Skip`` that says why;
2. unfinished outbox rows: a ``sending`` row (a crash mid-send) is sent again with its Message-ID; a
   ``retry`` row is sent again while its period lasts, and given up once it is over (its papers go into
   the reader's next digest);
3. the reader's period now (``cadence``: their zone, hour and cadence over the operator's defaults): none
   (before their hour, a weekend for ``weekdays``) is ``waiting``, unless they never had a digest (the
   first one does not wait); a period whose digest was sent or refused is skipped;
4. else their selection from the candidate pool: papers never sent to them and not in a message being
   sent again, ranked and capped by their profile.

Only the readers who reach 4 cost the sent-history query and the selection, so a ``digest schedule`` wake
every few minutes, when few readers' hour has come, reads little.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import numpy as np

from digest.cadence import WEEK_WINDOW_DAYS, Period, When, first_key, key_of, next_opening, period_at
from digest.errors import ProfileError
from digest.identity import mailbox_key
from digest.models import Digest, MessageState, Paper, Status, Subscriber
from digest.profiles import check_profile
from digest.run.reader_models import learned_scores
from digest.run.recall import recalled
from digest.selection.index import PaperIndex
from digest.selection.sections import arranged
from digest.selection.semantic import SentenceModel, Space, Taste, TextModel
from digest.store import DeliveryState, OutboxRow, Store

BATCH = 256  # subscribers planned, begun, delivered and recorded together
# How long a new version of a paper waits to be told of in a reader's next digest (a reader with nothing
# new gets no digest, so their updates wait for the next one).
UPDATES_WINDOW = timedelta(days=30)
SEEDS_UNKNOWN = (
    "none of their seed papers is among the stored papers yet; they count once a listing brings them"
)
log = logging.getLogger("digest")


def resume_hint(email: str) -> str:
    """The command that re-enables a subscriber, keeping their profile."""
    return f"digest resume {email}"


@dataclass(frozen=True, slots=True)
class Skip:
    """No message for this subscriber this run, and why (a report status with its note or error)."""

    subscriber: Subscriber
    status: Status
    note: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """A message to send: the period's digest, or (``resend``) an unfinished one again with its Message-ID."""

    subscriber: Subscriber
    digest: Digest
    resend: OutboxRow | None = None


Planned = Skip | Send


def reader_when(sub: Subscriber, default: When) -> When:
    """The subscriber's schedule: their own zone, hour and cadence where set, else the operator's."""
    p = sub.profile
    return _when(p.timezone, p.send_at, p.cadence, default)


def paused_until(sub: Subscriber, now: datetime, default: When) -> date | None:
    """The local date a pause the reader set ends on, while it holds at ``now``; else None."""
    until = sub.paused_until
    if until is None or not sub.paused_on(now.astimezone(reader_when(sub, default).zone).date()):
        return None
    return until


@functools.lru_cache(maxsize=4096)
def period_of(when: When, now: datetime) -> Period | None:
    """``cadence.period_at``, worked out once per schedule and instant (a run's readers share a few
    schedules): a dictionary lookup a reader."""
    return period_at(when, now)


@functools.lru_cache(maxsize=4096)
def _when(timezone: str, send_at: str, cadence: str, default: When) -> When:
    """``When.of``, parsed once per distinct schedule (most readers share a few)."""
    return When.of(timezone, send_at, cadence, default)


def candidate_pool(
    store: Store, now: datetime, *, lookback_days: int, weekly: bool, model: TextModel
) -> PaperIndex:
    """The stored papers of the lookback window, indexed once per run (or once per worker). With weekly
    readers (``weekly``: the default schedule is weekly, or a reader chose it) the window spans at least a
    week (``WEEK_WINDOW_DAYS``), so their digest gathers the week."""
    days = lookback_days
    if days < WEEK_WINDOW_DAYS and (weekly or store.readers.has_weekly()):
        days = WEEK_WINDOW_DAYS
    papers = store.papers.recent(now - timedelta(days=days))
    if isinstance(model, SentenceModel):
        return PaperIndex(papers, model, stored_space(model, papers, store))
    return PaperIndex(papers, model)


def stored_space(model: SentenceModel, papers: Sequence[Paper], store: Store) -> Space:
    """The papers in a sentence model's space, each embedded once: vectors come from the store, and those
    missing are made now and kept (unless the store is read-only: a preview writes nothing)."""
    refs = [p.ref for p in papers if p.ref is not None]
    known = store.papers.vectors(model.name, refs)
    missing = [p for p in papers if p.ref is not None and p.ref not in known]
    if missing:
        made = model.embed([f"{p.title}. {p.abstract}" for p in missing])
        fresh = [(p.ref, row.tobytes()) for p, row in zip(missing, made, strict=True) if p.ref is not None]
        known.update(fresh)
        if not store.read_only:
            store.papers.save_vectors(model.name, fresh)
    rows = [
        np.frombuffer(known[p.ref], dtype=np.float32) if p.ref is not None else model.embed([p.title])[0]
        for p in papers
    ]
    return model.space_of(np.vstack(rows) if rows else np.zeros((0, model.dims), dtype=np.float32))


def plan_batches(
    store: Store,
    now: datetime,
    default: When,
    pool: PaperIndex,
    *,
    only: str | None = None,
    start: str = "",
    stop: str | None = None,
    size: int = BATCH,
    any_hour: bool = False,
) -> Iterator[list[Planned]]:
    """Plan a batch of subscribers at a time (keys in [start, stop)), each batch's state read in a few
    queries; memory stays flat however many subscribers there are. ``default`` is the schedule of readers
    who set none; with ``any_hour`` every reader's hour counts as come (a preview, ``digest run --now``);
    their cadence still holds."""
    for subs in store.readers.batches(size, start=start, stop=stop):
        if only is not None:
            subs = [s for s in subs if s.key == mailbox_key(only)]
        if subs:
            yield plan_batch(subs, store, pool, now, default, any_hour=any_hour)


def plan(
    store: Store,
    now: datetime,
    default: When,
    pool: PaperIndex,
    *,
    only: str | None = None,
    any_hour: bool = False,
) -> list[Planned]:
    """Every active subscriber's plan at ``now`` (see ``plan_batch``)."""
    return [
        p for batch in plan_batches(store, now, default, pool, only=only, any_hour=any_hour) for p in batch
    ]


@dataclass(frozen=True, slots=True)
class Due:
    """Who a run now would plan a message for (``due_now``): ``fresh``, readers whose period opened since
    the last run, new readers and unfinished messages; ``open``, every reader inside a period they have
    no digest for (those with nothing new yet wait there until something comes)."""

    fresh: int
    open: int


def due_now(store: Store, now: datetime, default: When, since: datetime | None) -> Due:
    """Count the readers due at ``now`` without selecting anything: what ``digest schedule`` asks at each
    wake to decide whether to run (``since``: when it last ran, None for never; ``default``: the schedule
    of readers who set none)."""
    fresh = opened = 0
    for subs in store.readers.schedule_batches(1000):
        live = [s for s in subs if not s.bouncing and paused_until(s, now, default) is None]
        keys = period_keys(live, store, now, default)
        state = store.outbox.state([s.email for s in live], {k for k in keys.values() if k is not None})
        for sub in live:
            email = sub.key
            key = keys[email]
            lacks = (
                key is not None and (email, key) not in state.sent_on and (email, key) not in state.refused_on
            )
            new = False
            if lacks:  # a first digest (no period: see period_keys), or a period opened since the last run
                opened += 1
                period = period_of(reader_when(sub, default), now)
                new = period is None or since is None or period.opens > since
            if new or state.unfinished.get(email):
                fresh += 1
    return Due(fresh, opened)


def period_keys(
    subs: Sequence[Subscriber], store: Store, now: datetime, default: When, *, any_hour: bool = False
) -> dict[str, date | None]:
    """Each subscriber's current period key (by mailbox key), or None when they are waiting: between
    periods, and not new (a reader never sent a digest gets their first at once, see ``first_key``)."""
    keys: dict[str, date | None] = {}
    between: list[str] = []
    for sub in subs:
        when = reader_when(sub, default)
        period = period_of(when, now)
        if period is not None:
            keys[sub.key] = period.key
        elif any_hour:
            keys[sub.key] = first_key(when, now)
        else:
            between.append(sub.email)
    if between:
        had = store.outbox.ever_sent(between)
        for sub in subs:
            key = sub.key
            if key not in keys:
                keys[key] = None if key in had else first_key(reader_when(sub, default), now)
    return keys


def plan_batch(
    subs: Sequence[Subscriber],
    store: Store,
    pool: PaperIndex,
    now: datetime,
    default: When,
    *,
    any_hour: bool = False,
) -> list[Planned]:
    """What each of a batch of subscribers gets now (see the module's docstring)."""
    live = [s for s in subs if not s.bouncing]
    keys = period_keys(live, store, now, default, any_hour=any_hour)
    days = {k for k in keys.values() if k is not None}
    # A waiting reader may have had today's digest already (a first one): so that their note names the
    # opening they will really get a digest at, ask about today's date too.
    days.update(first_key(reader_when(s, default), now) for s in live if keys[s.key] is None)
    state = store.outbox.state([s.email for s in live], days)
    stale: list[int] = []
    early: dict[str, list[Planned]] = {}
    choosing: list[tuple[Subscriber, date, list[Planned]]] = []
    for sub in subs:
        decided = decide(sub, keys.get(sub.key), state, store, now, default, stale)
        if isinstance(decided, tuple):
            choosing.append((sub, *decided))
        else:
            early[sub.key] = decided
    if stale and not store.read_only:
        store.outbox.expire(stale, now)
    if choosing:
        sent = store.outbox.sent_refs([s.email for s, _, _ in choosing], pool.min_ref)
        tastes = tastes_of([s for s, _, _ in choosing], pool, store, now)
        wanting = [s.email for s, _, _ in choosing if s.profile.updates]  # who wants to hear of new versions
        updates = store.outbox.updates_due(wanting, now - UPDATES_WINDOW) if wanting else {}
        for sub, key, resends in choosing:
            mine = updates.get(sub.key, ())
            early[sub.key] = resends + choose(sub, key, pool, sent, resends, tastes.get(sub.key), mine)
    return [p for sub in subs for p in early[sub.key]]


def decide(
    sub: Subscriber,
    key: date | None,
    state: DeliveryState,
    store: Store,
    now: datetime,
    default: When,
    stale: list[int],
) -> list[Planned] | tuple[date, list[Planned]]:
    """Steps 1-3 for one subscriber: their plan, or (period key, resends) when a selection is to be made.
    Retry rows whose period is over are added to ``stale``."""
    if sub.bouncing:
        note = f"skipped: bouncing after repeated refusals; re-enable with: {resume_hint(sub.email)}"
        return [Skip(sub, Status.BOUNCED, note=note)]
    until = paused_until(sub, now, default)
    if until is not None:
        return [Skip(sub, Status.WAITING, note=f"waiting: paused until {until.isoformat()}")]
    problems = check_profile(sub.profile)
    if problems:
        detail = "; ".join(str(ProfileError(why, subscriber=sub.email, keyword=kw)) for kw, why in problems)
        log.warning("invalid profile, not sent: %s", detail)
        return [Skip(sub, Status.FAILED, error=f"invalid profile: {detail}")]
    email = sub.key
    out: list[Planned] = []
    has_period = False
    for row in state.unfinished.get(email, ()):
        if row.status == MessageState.RETRY and row.day != key:
            stale.append(row.id)  # its period is over: the papers go into the reader's next digest
            continue
        out.append(Send(sub, recalled(sub, row, store), resend=row))
        has_period = has_period or row.day == key
    if key is None:
        when = reader_when(sub, default)
        opens = next_opening(when, now)
        if (email, key_of(when, opens.astimezone(when.zone).date())) in state.sent_on:
            opens = next_opening(when, opens)  # that period's digest went out early (their first)
        opens = opens.astimezone(when.zone)
        note = f"waiting: next digest {opens:%a %Y-%m-%d %H:%M} ({when.describe()})"
        return [*out, Skip(sub, Status.WAITING, note=note)]
    if has_period:
        return out
    if (email, key) in state.sent_on:
        return [*out, Skip(sub, Status.NOTHING_NEW, note=f"already got the digest for {key.isoformat()}")]
    refused = state.refused_on.get((email, key))
    if refused is not None:
        error = f"refused earlier for the digest of {key.isoformat()} ({refused}); the next one tries again"
        return [*out, Skip(sub, Status.FAILED, error=error)]
    return key, out


def choose(
    sub: Subscriber,
    key: date,
    pool: PaperIndex,
    sent: dict[str, set[int]],
    resends: list[Planned],
    taste: Taste | None,
    updates: Sequence[Paper] = (),
) -> list[Planned]:
    """Step 4: the period's digest (with the new versions of papers they were sent, ``updates``, that a
    message being sent again does not tell already), or nothing new."""
    skip = set(sent.get(sub.key, set()))
    for item in resends:
        if isinstance(item, Send) and item.resend is not None:
            skip.update(item.resend.refs)
    chosen = arranged(pool, sub.profile, skip, taste)
    if not chosen.matches:
        p = sub.profile
        waits = p.seeds and not (p.keywords or p.about) and not any(pool.named.get(n) for n in p.seeds)
        return [Skip(sub, Status.NOTHING_NEW, note=SEEDS_UNKNOWN if waits else None)]
    told = {
        ref for item in resends if isinstance(item, Send) and item.resend for ref, _ in item.resend.updates
    }
    news = tuple(p for p in updates if p.ref not in told)
    return [Send(sub, Digest(sub, chosen.matches, key, chosen.more, chosen.rest, news))]


def tastes_of(subs: Sequence[Subscriber], pool: PaperIndex, store: Store, now: datetime) -> dict[str, Taste]:
    """The taste (see ``semantic``) of each subscriber in a batch whose profile has a description, seed
    papers or feedback, by mailbox key, in the pool's space: one feedback query per batch, each seed name
    looked up once per pool, each distinct (description, liked, disliked) made once per pool. A reader
    with feedback also gets their own model's liking of each paper (``reader_models``)."""
    wanted = [s for s in subs if not s.profile.trending]
    if not wanted:
        return {}
    feedback = store.feedback.of([s.email for s in wanted])
    unknown = {n for s in wanted for n in s.profile.seeds if n not in pool.named}
    if unknown:
        found = store.papers.find(sorted(unknown))
        pool.named.update({n: found.get(n) for n in unknown})
    pool.embed_abouts(s.profile.about for s in wanted)
    out: dict[str, Taste] = {}
    positive: dict[str, list[Paper]] = {}
    for sub in wanted:
        mine = feedback.get(sub.key, {})
        liked = [p for n in sub.profile.seeds if (p := pool.named.get(n)) is not None]
        liked += mine.get("more", [])
        if not (sub.profile.about.strip() or liked):
            continue
        taste = pool.taste(sub.profile.about, liked, mine.get("less", []))
        if taste is not None:
            out[sub.key] = taste
            positive[sub.key] = liked
    if not pool.blend.learned:  # readers' own models are off: nothing to fit or read
        return out
    learned = learned_scores([s for s in wanted if s.key in out], positive, feedback, pool, store, now)
    return {key: replace(t, learned=learned[key]) if key in learned else t for key, t in out.items()}
