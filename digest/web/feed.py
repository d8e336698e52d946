"""The reader's Atom feed (``/feed/{token}``) and its reset (``POST /m/{token}/feed``).

The feed's token signs the reader's mailbox and their feed epoch; a reset (from the manage page, CSRF)
counts the epoch up, so the old address answers 410 Gone, and the page shows the new one. A feed reader
polls every hour or so: each answer carries an ``ETag`` (the epoch, the newest sent digest, the profile's
last change) and ``Last-Modified``, and a request that sends either back is answered 304 from two indexed
lookups, before anything is read or built. Reads run on the event loop (see ``reader``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import NamedTuple

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import links
from digest.atom import FEED_ENTRIES, Sent, atom_feed
from digest.run.recall import explained, kept_by_ref
from digest.tokens import Purpose
from digest.web.state import Web

ATOM = "application/atom+xml; charset=utf-8"
REVALIDATE = "private, no-cache"  # a feed reader may keep it, and asks again with its ETag


def stamp(iso: str) -> datetime:
    """A stored ISO 8601 time as an aware datetime (UTC if it names no zone).

    >>> stamp("2026-12-06T07:00:00+00:00").isoformat()
    '2026-12-06T07:00:00+00:00'
    """
    at = datetime.fromisoformat(iso)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def not_modified(request: Request, etag: str, modified: datetime) -> bool:
    """Whether the client's copy is current: ``If-None-Match`` wins when sent (RFC 9110 13.1.3)."""
    asked = request.headers.get("if-none-match")
    if asked is not None:  # compared weakly (RFC 9110 8.8.3.2), as a GET may
        bare = etag.removeprefix("W/")
        return bare in (tag.strip().removeprefix("W/") for tag in asked.split(",")) or asked.strip() == "*"
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        return modified.replace(microsecond=0) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


class Version(NamedTuple):
    """What a reader's feed and archive are made of, in two indexed lookups: the feed's epoch, the newest
    sent digest's row id, and when either that digest or the profile last changed."""

    epoch: int
    last_id: int
    changed: int  # the profile's last change, as a Unix time (the reasons follow the profile)
    modified: datetime

    def etag(self, page: str) -> str:
        """The ETag of ``page`` ("feed", "archive"), weak for an HTML page (its CSP nonce differs)."""
        tag = f'"{page}-{self.epoch}-{self.last_id}-{self.changed}"'
        return tag if page == "feed" else f"W/{tag}"

    def headers(self, page: str) -> dict[str, str]:
        return {
            "ETag": self.etag(page),
            "Last-Modified": format_datetime(self.modified, usegmt=True),
            "Cache-Control": REVALIDATE,
        }


def version_of(web: Web, key: str) -> Version | None:
    """The reader's ``Version``, None if they have no digest here (any more)."""
    with web.stores.get() as store:
        state = store.library.feed_state(key)
        newest = store.outbox.feed_version(key) if state else None
    if state is None:
        return None
    last_id, sent_at = newest if newest else (0, state[1])
    changed = stamp(state[1])
    return Version(state[0], last_id, int(changed.timestamp()), max(stamp(sent_at), changed))


def feed_routes(web: Web) -> list[Route]:
    settings = web.settings
    author = web.pages.sender_name

    def build(key: str, self_url: str) -> bytes:
        with web.stores.get() as store:
            subscriber = store.readers.get(key)
            rows = store.outbox.sent_papers(key, FEED_ENTRIES) if subscriber else []
        profile = subscriber.profile if subscriber else None
        sent = [
            Sent(match, stamp(at), day, tuple(match.why(profile.trending)))
            for paper, at, day, kept in rows
            if profile is not None
            for match in (explained(paper, profile, kept_by_ref(kept)),)
        ]
        return atom_feed(
            site=settings.base_url or self_url,
            self_url=self_url,
            key=key,
            title=f"{author}: your papers",
            author=author,
            sent=sent,
        )

    async def feed(request: Request) -> Response:
        found = web.bearer(Purpose.FEED, request.path_params["token"])
        if found is None or found.nonce is None:
            return web.invalid(request)
        current = version_of(web, found.key)
        if current is None or str(current.epoch) != found.nonce:
            return web.pages.page(
                request,
                410,
                "This feed has moved",
                "Its address was reset, or its reader left. The reader's page shows the new one.",
            )
        headers = current.headers("feed")
        if not_modified(request, headers["ETag"], current.modified):
            return Response(status_code=304, headers=headers)
        base = (settings.base_url or "").rstrip("/")
        body = build(found.key, base + request.url.path if base else str(request.url))
        return Response(body, media_type=ATOM, headers=headers)

    def reset_now(key: str) -> None:
        with web.stores.get() as store:
            store.library.reset_feed(key, datetime.now(UTC))

    async def reset(request: Request) -> Response:
        posted = await web.acting_post(request, Purpose.MANAGE)
        if isinstance(posted, Response):
            return posted
        await run_in_threadpool(reset_now, posted[0])
        back = links.MANAGE.format(token=request.path_params["token"])
        return RedirectResponse(f"{back}#feed", status_code=303)

    return [
        Route(links.FEED, feed, methods=["GET"]),
        Route(links.MANAGE_FEED, reset, methods=["POST"]),
    ]
