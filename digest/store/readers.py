"""The readers the store keeps: their profiles (from the config, the CLI, the web app and the API), their
state (active, bouncing), and their erasure. What they said of papers is ``feedback``.

Every reader is keyed by the canonical key of their mailbox (``identity.mailbox_key``; ``address`` keeps
the address as written, for the To: line), and every method keys the addresses it is given, so a caller
may pass an address in any spelling.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from digest.email.bounces import SOFT
from digest.identity import fingerprint, mailbox_key
from digest.models import Profile, Subscriber
from digest.store.dialect import Connection
from digest.store.sql import iso

BOUNCE_LIMIT = 3  # consecutive permanent failures (or soft bounces a week apart at most) before bouncing
SOFT_BOUNCE_WINDOW = timedelta(days=7)  # soft bounces further apart than this start the count again

# A subscriber's profile columns (``_profile_row`` gives their values, then the fingerprint ``_FLOOR``
# reads): a reader erased earlier and added again is never sent a paper from before.
_CHOICES = (  # what a reader chose: written together by every way a profile comes in
    "keywords",
    "exclude",
    "max_papers",
    "about",
    "seeds",
    "timezone",
    "send_at",
    "cadence",
    "authors",
    "categories",
    "exclude_categories",
    "updates",
    "sections",
    "upvotes",
    "language",
)
_PROFILE = "email, address, name, " + ", ".join(_CHOICES)
_SET_CHOICES = ", ".join(f"{c} = excluded.{c}" for c in _CHOICES)
_PROFILE_MARKS = ",".join("?" * len(_PROFILE.split(",")))
_FLOOR = "(SELECT coalesce(max(last_ref), 0) FROM erasures WHERE fingerprint = ?)"


def _date(stored: str | None) -> date | None:
    """A stored ISO date, or None.

    >>> _date("2026-12-24"), _date(None)
    (datetime.date(2026, 12, 24), None)
    """
    return date.fromisoformat(stored) if stored else None


def _strings(stored: str) -> tuple[str, ...]:
    """A stored JSON list of strings; the empty one (most readers' authors and categories) without a parse.

    >>> _strings("[]"), _strings('["cs.CL"]')
    ((), ('cs.CL',))
    """
    return () if stored == "[]" else tuple(json.loads(stored))


def subscriber_of(r: Any) -> Subscriber:
    """A stored reader from their row."""
    return Subscriber(
        email=r["address"] or r["email"],
        name=r["name"],
        profile=Profile(
            tuple(json.loads(r["keywords"])),
            tuple(json.loads(r["exclude"])),
            r["max_papers"],
            about=r["about"],
            seeds=tuple(json.loads(r["seeds"])),
            timezone=r["timezone"],
            send_at=r["send_at"],
            cadence=r["cadence"],
            authors=_strings(r["authors"]),
            categories=_strings(r["categories"]),
            exclude_categories=_strings(r["exclude_categories"]),
            updates=bool(r["updates"]),
            sections=() if r["sections"] == "{}" else tuple(json.loads(r["sections"]).items()),
            upvotes=float(r["upvotes"]),
            language=r["language"],
        ),
        active=bool(r["active"]) and (r["origin"] == "cli" or bool(r["in_config"])),
        bouncing=r["bouncing_since"] is not None,
        bounce_reason=r["bounce_reason"],
        paused_until=_date(r["paused_until"]),
    )


class Readers:
    """The ``subscribers`` table (``store.readers``), ``feedback`` and ``erasures``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def sync_config(self, subscribers: Iterable[Subscriber], now: datetime) -> None:
        """Make the config's subscribers the store's ``config`` subscribers.

        A config subscriber's profile comes from the config; one who unsubscribed stays unsubscribed;
        one removed from the config gets no more mail.
        """
        stamp = iso(now)
        with self.conn.transaction() as tx:
            tx.execute("UPDATE subscribers SET in_config = 0")
            for s in subscribers:
                tx.execute(
                    f"INSERT INTO subscribers ({_PROFILE}, sent_floor, origin, in_config, active, created,"
                    f" updated) VALUES ({_PROFILE_MARKS},{_FLOOR},'config',1,1,?,?)"
                    " ON CONFLICT (email) DO UPDATE SET address = excluded.address, name = excluded.name,"
                    f" {_SET_CHOICES}, origin = 'config', in_config = 1, updated = excluded.updated",
                    (*self._profile_row(s), stamp, stamp),
                )

    @staticmethod
    def _profile_row(s: Subscriber) -> tuple[str | int | float, ...]:
        """The values of ``_PROFILE`` and then ``_FLOOR`` for ``s``."""
        p = s.profile
        key = s.key
        return (
            key,
            s.email,
            s.name,
            json.dumps(list(p.keywords)),
            json.dumps(list(p.exclude)),
            p.max_papers,
            p.about,
            json.dumps(list(p.seeds)),
            p.timezone,
            p.send_at,
            p.cadence,
            json.dumps(list(p.authors)),
            json.dumps(list(p.categories)),
            json.dumps(list(p.exclude_categories)),
            int(p.updates),
            json.dumps(dict(p.sections)),
            p.upvotes,
            p.language,
            fingerprint(key),
        )

    def add(self, subscriber: Subscriber, now: datetime) -> bool:
        """Add or update a subscriber from the command line, (re-)activating them. True if new. A mailbox
        already stored keeps the address as first written (the config's spelling wins for its readers)."""
        stamp = iso(now)
        with self.conn.transaction() as tx:
            existed = tx.execute("SELECT 1 FROM subscribers WHERE email = ?", (subscriber.key,)).fetchone()
            tx.execute(
                f"INSERT INTO subscribers ({_PROFILE}, sent_floor, origin, active, created, updated)"
                f" VALUES ({_PROFILE_MARKS},{_FLOOR},'cli',1,?,?)"
                " ON CONFLICT (email) DO UPDATE SET name = CASE WHEN excluded.name = '' THEN subscribers.name"
                f" ELSE excluded.name END, {_SET_CHOICES}, active = 1, paused_until = NULL,"
                " bounces = 0, soft_bounces = 0, bouncing_since = NULL,"
                " bounce_reason = NULL, updated = excluded.updated",
                (*self._profile_row(subscriber), stamp, stamp),
            )
        return existed is None

    def add_new(self, subscriber: Subscriber, now: datetime, *, asked: datetime | None = None) -> bool:
        """Add ``subscriber`` only if their mailbox has no profile yet (a web sign-up: a profile is only
        changed by its owner, on their page). True if added; ``asked`` is when they asked (kept for their
        data download)."""
        stamp = iso(now)
        with self.conn.transaction() as tx:
            cur = tx.execute(
                f"INSERT INTO subscribers ({_PROFILE}, sent_floor, origin, active, created, updated, signed_up)"
                f" VALUES ({_PROFILE_MARKS},{_FLOOR},'cli',1,?,?,?) ON CONFLICT (email) DO NOTHING",
                (*self._profile_row(subscriber), stamp, stamp, iso(asked) if asked else None),
            )
        return bool(cur.rowcount > 0)

    def add_many(self, subscribers: Iterable[Subscriber], now: datetime) -> int:
        """Add or update many subscribers in one transaction (an import); returns how many rows were given."""
        stamp = iso(now)
        rows = [(*self._profile_row(s), stamp, stamp) for s in subscribers]
        with self.conn.transaction() as tx:
            tx.executemany(
                f"INSERT INTO subscribers ({_PROFILE}, sent_floor, origin, active, created, updated)"
                f" VALUES ({_PROFILE_MARKS},{_FLOOR},'cli',1,?,?)"
                f" ON CONFLICT (email) DO UPDATE SET {_SET_CHOICES}, active = 1, paused_until = NULL,"
                " updated = excluded.updated",
                rows,
            )
        return len(rows)

    def unsubscribe(self, email: str, now: datetime) -> bool:
        """Stop mail to ``email``; the sent history is kept. False if no such subscriber."""
        return self.unsubscribe_many([email], now) > 0

    def unsubscribe_many(self, emails: Sequence[str], now: datetime) -> int:
        """Stop mail to each of ``emails`` in one transaction (one commit for many one-click requests);
        returns how many subscribers there were."""
        with self.conn.transaction() as tx:
            cur = tx.executemany(
                "UPDATE subscribers SET active = 0, updated = ? WHERE email = ?",
                [(iso(now), mailbox_key(e)) for e in emails],
            )
        return max(int(cur.rowcount), 0)

    def languages(self) -> list[str]:
        """The languages the readers who get mail chose for their TL;DRs (folded, "" for the operator's)."""
        rows = self.conn.execute("SELECT DISTINCT language FROM subscribers WHERE active = 1").fetchall()
        return sorted({str(r[0]).casefold() for r in rows})

    def all(self, *, include_inactive: bool = False) -> list[Subscriber]:
        """Subscribers in address order; by default only those who get mail."""
        return [s for batch in self.batches(include_inactive=include_inactive) for s in batch]

    def batches(
        self, size: int = 500, *, include_inactive: bool = False, start: str = "", stop: str | None = None
    ) -> Iterator[list[Subscriber]]:
        """Subscribers in key order, ``size`` at a time, with keys in [start, stop) (``start`` and ``stop``
        are mailbox keys, as ``bounds`` gives them): a run's memory does not grow with the number
        of subscribers, and workers can each take a range."""
        last, first = start, True
        while True:
            below = "" if stop is None else " AND email < ?"
            rows = self.conn.execute(
                f"SELECT * FROM subscribers WHERE (email > ? OR (? AND email = ?)){below} ORDER BY email LIMIT ?",
                (last, first, start, *(() if stop is None else (stop,)), size),
            ).fetchall()
            if not rows:
                return
            first, last = False, rows[-1]["email"]
            batch = [subscriber_of(r) for r in rows]
            yield [s for s in batch if s.active or include_inactive]

    def schedule_batches(self, size: int = 1000) -> Iterator[list[Subscriber]]:
        """The readers who get mail, ``size`` at a time, with only what says when they are due (address,
        schedule, bouncing; the rest of the profile left empty): a scheduler's wake reads 100,000 of them
        in a fraction of what whole profiles cost (no JSON to parse)."""
        last = ""
        while True:
            rows = self.conn.execute(
                "SELECT email, address, timezone, send_at, cadence, bouncing_since, paused_until FROM subscribers"
                " WHERE email > ?"
                " AND active = 1 AND (origin = 'cli' OR in_config = 1) ORDER BY email LIMIT ?",
                (last, size),
            ).fetchall()
            if not rows:
                return
            last = rows[-1]["email"]
            yield [
                Subscriber(
                    r["address"] or r["email"],
                    profile=Profile(timezone=r["timezone"], send_at=r["send_at"], cadence=r["cadence"]),
                    bouncing=r["bouncing_since"] is not None,
                    paused_until=_date(r["paused_until"]),
                )
                for r in rows
            ]

    def count(self) -> int:
        """Subscribers who get mail: what sizes a run."""
        return int(
            self.conn.execute(
                "SELECT count(*) FROM subscribers WHERE active = 1 AND (origin = 'cli' OR in_config = 1)"
            ).fetchone()[0]
        )

    def has_weekly(self) -> bool:
        """Whether any reader who gets mail chose a weekly cadence (their candidates span a week)."""
        row = self.conn.execute(
            "SELECT 1 FROM subscribers WHERE active = 1 AND (origin = 'cli' OR in_config = 1)"
            " AND cadence LIKE 'weekly%' LIMIT 1"
        ).fetchone()
        return row is not None

    def bounds(self, every: int) -> list[str]:
        """Every ``every``-th subscriber key in order: the starts of equal ranges for workers."""
        rows = self.conn.execute(
            "SELECT email FROM (SELECT email, row_number() OVER (ORDER BY email) AS n FROM subscribers)"
            " AS numbered"
            " WHERE (n - 1) % ? = 0 ORDER BY email",
            (every,),
        )
        return [r[0] for r in rows]

    def get(self, email: str) -> Subscriber | None:
        """The subscriber of this address's mailbox (``identity.mailbox_key``), or None."""
        row = self.conn.execute("SELECT * FROM subscribers WHERE email = ?", (mailbox_key(email),)).fetchone()
        return subscriber_of(row) if row is not None else None

    def resume(self, email: str, now: datetime, *, cadence: str | None = None) -> bool:
        """Mail ``email`` again (after an unsubscribe, a pause, or bouncing), keeping their profile (with
        ``cadence`` instead of theirs, if given). False if unknown."""
        with self.conn.transaction() as tx:
            cur = tx.execute(
                "UPDATE subscribers SET active = 1, paused_until = NULL, bounces = 0, soft_bounces = 0,"
                " bouncing_since = NULL, bounce_reason = NULL, cadence = coalesce(?, cadence), updated = ?"
                " WHERE email = ?",
                (cadence, iso(now), mailbox_key(email)),
            )
        return bool(cur.rowcount > 0)

    def pause(self, email: str, until: date | None, now: datetime) -> bool:
        """Pause ``email``'s digest until their local date ``until`` (then it comes again by itself), or with
        no date until they resume (as an unsubscribe: ``active`` off). False if unknown."""
        with self.conn.transaction() as tx:
            cur = tx.execute(
                "UPDATE subscribers SET active = ?, paused_until = ?, updated = ? WHERE email = ?",
                (int(until is not None), until.isoformat() if until else None, iso(now), mailbox_key(email)),
            )
        return bool(cur.rowcount > 0)

    def set_seeds(self, email: str, seeds: Sequence[str], now: datetime) -> bool:
        """Replace ``email``'s seed papers, and nothing else of theirs (an import); False if unknown."""
        with self.conn.transaction() as tx:
            cur = tx.execute(
                "UPDATE subscribers SET seeds = ?, updated = ? WHERE email = ?",
                (json.dumps(list(seeds)), iso(now), mailbox_key(email)),
            )
        return bool(cur.rowcount > 0)

    def record_bounce(self, email: str, kind: str, reason: str, now: datetime) -> bool:
        """Returned mail about ``email`` (see ``digest.email.bounces``): a hard bounce or a complaint suspends them
        at once (bouncing: no more mail until ``digest resume``); a soft bounce counts, and ``BOUNCE_LIMIT``
        of them with less than ``SOFT_BOUNCE_WINDOW`` between one and the next suspend them too. True when
        they are now bouncing; False for an address that is no subscriber."""
        stamp = iso(now)
        fresh = iso(now - SOFT_BOUNCE_WINDOW)
        email = mailbox_key(email)
        with self.conn.transaction() as tx:
            if kind == SOFT:
                tx.execute(
                    "UPDATE subscribers SET soft_bounces = CASE WHEN last_soft_bounce >= ? THEN soft_bounces + 1"
                    " ELSE 1 END, last_soft_bounce = ? WHERE email = ?",
                    (fresh, stamp, email),
                )
            tx.execute(
                "UPDATE subscribers SET bouncing_since = ?, bounce_reason = ? WHERE email = ?"
                " AND bouncing_since IS NULL AND (? <> ? OR soft_bounces >= ?)",
                (stamp, f"{kind}: {reason}"[:500], email, kind, SOFT, BOUNCE_LIMIT),
            )
            row = tx.execute(
                "SELECT bouncing_since IS NOT NULL FROM subscribers WHERE email = ?", (email,)
            ).fetchone()
        return bool(row and row[0])

    def forget(self, email: str, now: datetime) -> bool:
        """Erase ``email``: their profile, every message row and every record of what they were sent, in one
        transaction (a reader's "delete me"). False if there was no such subscriber.

        Kept: a SHA-256 of their mailbox key and the newest paper ref now (``erasures``), so that a reader
        added again is never sent a paper that came before (``sent_floor``), whoever adds them."""
        email = mailbox_key(email)
        with self.conn.transaction() as tx:
            tx.execute("DELETE FROM sent WHERE email = ?", (email,))
            tx.execute("DELETE FROM feedback WHERE email = ?", (email,))
            tx.execute("DELETE FROM saved WHERE email = ?", (email,))
            tx.execute("DELETE FROM reader_models WHERE email = ?", (email,))
            tx.execute("DELETE FROM messages WHERE email = ?", (email,))
            cur = tx.execute("DELETE FROM subscribers WHERE email = ?", (email,))
            if cur.rowcount <= 0:
                return False
            (last,) = tx.execute("SELECT coalesce(max(pid), 0) FROM papers").fetchone()
            tx.execute(
                "INSERT INTO erasures (fingerprint, last_ref, at) VALUES (?, ?, ?) ON CONFLICT (fingerprint)"
                " DO UPDATE SET last_ref = excluded.last_ref, at = excluded.at",
                (fingerprint(email), int(last), iso(now)),
            )
        return True
