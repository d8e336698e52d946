"""Subscribing from the web, with double opt-in: the library half of the web app's sign-up (routes stay thin).

A request (address, keywords, exclusions, name, or the trending digest) is checked with the same rules and
messages as ``digest subscribe``, then packed into a timed, signed confirmation token and mailed to the
address; nothing is stored. Following the link (a POST from the page it opens) creates or updates the
subscriber. So nobody can subscribe a stranger, and an address that is already subscribed gets the same
answer as any other (no enumeration): only its owner learns anything, by mail.

The rate limits below bound how often one address and one client may ask, so the form cannot be used to
mail-bomb anyone with confirmations; the web app counts them in the store (``store.limits.allow``), so every worker
process and host shares them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from digest.cadence import When, first_key, normalise_schedule
from digest.email.dkim import DkimKey, signed
from digest.email.mime import Outgoing, ascii_address, notice
from digest.errors import ProfileError, SubscriberError, TokenError
from digest.identity import normalise_email
from digest.models import Digest, Profile, Subscriber
from digest.profiles import ProfileInput, profile_from_form
from digest.run.planning import reader_when, tastes_of
from digest.selection.index import PaperIndex
from digest.selection.sections import arranged
from digest.store import Store
from digest.tokens import Purpose, Signer

CONFIRM_MAX_AGE = 48 * 3600  # seconds a confirmation link stays valid
ASK_WINDOW = 3600.0  # the rate limits' window, in seconds
ASKS_PER_ADDRESS = 3  # confirmation emails one address may be sent per window
ASKS_PER_CLIENT = 20  # sign-up requests one client (IP address) may send per window


@dataclass(frozen=True, slots=True)
class Request:
    """What a reader asked for on the sign-up form, checked (``profiles``)."""

    email: str
    name: str
    profile: Profile
    asked: datetime | None = None  # when the form was sent (a confirmation link carries it)

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> Request:
        """The form's fields checked as every profile is (``profiles.profile_from_form``); SubscriberError
        or ProfileError otherwise."""
        email = normalise_email(form.get("email", ""))
        try:  # the sign-up form's zone is the browser's own guess, not the reader's choice: drop a bad one
            normalise_schedule(form.get("timezone", ""), "", "")
        except ValueError:
            form = {**form, "timezone": ""}
        asked = profile_from_form(form, email)
        return cls(email, asked.name, asked.profile())

    def token_data(self, now: datetime | None = None) -> dict[str, Any]:
        """What a confirmation token carries: the subscriber as ``to_json`` shows them, less their state,
        and when they asked (``now``)."""
        data = self.subscriber().to_json()
        del data["active"], data["bouncing"]
        return {**data, "asked": now.isoformat()} if now else data

    @classmethod
    def from_token_data(cls, data: dict[str, Any]) -> Request:
        """The request a confirmation token carries, checked again (a rule may be newer than the token)."""
        email = normalise_email(str(data.get("email", "")))
        asked = ProfileInput.checked(
            {k: v for k, v in data.items() if k not in ("email", "asked")}, subscriber=email
        )
        try:
            when = datetime.fromisoformat(str(data["asked"])) if "asked" in data else None
        except ValueError:
            when = None
        return cls(email, asked.name, asked.profile(), when)

    def subscriber(self) -> Subscriber:
        return Subscriber(self.email, self.name, self.profile)


def preview_digest(
    store: Store, subscriber: Subscriber, now: datetime, pool: PaperIndex, default: When
) -> Digest | None:
    """The digest ``subscriber`` (with a profile perhaps not saved yet) would get now from the stored papers
    in ``pool``, leaving out what they were already sent; None when nothing matches. ``default`` is the
    schedule of readers who set none (it names the digest's period)."""
    day = first_key(reader_when(subscriber, default), now)
    skip = store.outbox.sent_refs([subscriber.email], pool.min_ref).get(subscriber.key, set())
    taste = tastes_of([subscriber], pool, store, now).get(subscriber.key)
    chosen = arranged(pool, subscriber.profile, skip, taste)
    if not chosen.matches:
        return None
    return Digest(subscriber, chosen.matches, day, more=chosen.more)


def unknown_seeds(store: Store, seeds: Sequence[str]) -> list[str]:
    """The seed papers (arXiv ids or titles) no stored paper answers to yet: said at subscribe time, since
    until one is known the reader's digest follows their other signals only."""
    if not seeds:
        return []
    found = store.papers.find(seeds)
    return [s for s in seeds if s not in found]


def _html(subject: str, *paragraphs: str) -> str:
    """A short notice's HTML part: its language and title set, for screen readers and mail clients.

    >>> _html("Hi", "<p>one</p>").startswith('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Hi')
    True
    """
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(subject)}</title></head>'
        '<body style="font-family:sans-serif;line-height:1.5;color:#18181b"><main>'
        f'<h1 style="font-size:20px">{escape(subject)}</h1>' + "".join(paragraphs) + "</main></body></html>\n"
    )


def _mid_hash(kind: str, email: str, now: datetime) -> str:
    return f"{kind}.{hashlib.sha256(f'{ascii_address(email)}{now.isoformat()}'.encode()).hexdigest()[:24]}"


def confirmation_message(
    sender: str, dkim: DkimKey | None, request: Request, link: str, now: datetime
) -> Outgoing:
    """The email that asks the address's owner to confirm: a short text and HTML part, no tracking; from
    ``sender``, signed with ``dkim`` when there is a key."""
    what = "the trending papers" if request.profile.trending else ", ".join(request.profile.topics)
    text = (
        f"Someone (we hope you) asked to get a digest of new research papers on: {what}.\n\n"
        f"To confirm, open this link within 48 hours and press the button:\n\n  {link}\n\n"
        "If it was not you, ignore this email: nothing happens without the confirmation.\n"
    )
    subject = "Confirm your paper digest subscription"
    html = _html(
        subject,
        f"<p>Someone (we hope you) asked to get a digest of new research papers on: {escape(what)}.</p>",
        f'<p><a href="{escape(link)}">Confirm the subscription</a> (within 48 hours).</p>',
        "<p>If it was not you, ignore this email: nothing happens without the confirmation.</p>",
    )
    mid = _mid_hash("confirm", request.email, now)
    return signed(dkim, notice(sender, request.email, subject, text, html, mid, now))


def page_link_message(
    sender: str, dkim: DkimKey | None, email: str, link: str, now: datetime, *, signing_up: bool
) -> Outgoing:
    """The email that gives a reader the link to their page (``link``): asked for on the "lost your link?"
    form, or sent instead of a confirmation when an address that already has a digest signs up again
    (``signing_up``), so that a sign-up never replaces a profile and the form answers every address alike."""
    why = (
        "asked to subscribe this address to the paper digest. It already has a digest, so nothing changed"
        if signing_up
        else "asked for the link to this address's paper digest page"
    )
    text = (
        f"Someone (we hope you) {why}.\n\n"
        f"Your page, to see and change your topics, schedule and papers, pause or resume:\n\n  {link}\n\n"
        "If it was not you, ignore this email: nothing changes unless you act on that page.\n"
    )
    subject = "Your paper digest" if signing_up else "The link to your paper digest"
    html = _html(
        subject,
        f"<p>Someone (we hope you) {escape(why)}.</p>",
        f'<p><a href="{escape(link)}">Open your page</a> to see and change your topics, schedule and papers,'
        " pause or resume.</p>",
        "<p>If it was not you, ignore this email: nothing changes unless you act on that page.</p>",
    )
    return signed(dkim, notice(sender, email, subject, text, html, _mid_hash("page", email, now), now))


def read_confirmation(signer: Signer, token: str, max_age: int = CONFIRM_MAX_AGE) -> Request:
    """The request a confirmation token carries; TokenError if forged, altered or expired."""
    data = signer.read_timed(Purpose.CONFIRM, token, max_age)
    try:
        return Request.from_token_data(data)
    except (KeyError, TypeError, ValueError, SubscriberError, ProfileError) as exc:  # signed by us: a bug, or
        # a rule newer than the link
        raise TokenError("this link is not valid") from exc
