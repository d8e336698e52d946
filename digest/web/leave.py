"""Leaving, and coming back, from the unsubscribe link of every digest (RFC 8058):

- ``GET /u/{token}`` (and HEAD) shows one button and changes nothing: mail scanners fetch links;
- ``POST /u/{token}`` with ``List-Unsubscribe=One-Click`` (what Gmail and Yahoo send, without cookies, and
  what the button sends) unsubscribes at once. No CSRF token: the RFC requires the bare POST to work, and
  the signed token already proves the link came from the subscriber's own mail.
- Both pages offer the digest weekly instead, and once unsubscribed, Resubscribe (``/resubscribe``,
  ``/weekly``: POSTs with the page's CSRF token). The unsubscribe token turns the digest on or off and
  makes it weekly; it never reads or changes the profile (that takes the manage link).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest import links
from digest.cadence import normalise_schedule
from digest.identity import shown
from digest.models import Subscriber
from digest.run.planning import reader_when
from digest.tokens import Purpose
from digest.web.pages import CSRF_COOKIE
from digest.web.state import CONFIG_OWNED, Web, sentence
from digest.web.stores import UnsubscribeBatcher

ONE_CLICK = "One-Click"  # RFC 8058: the body is List-Unsubscribe=One-Click
WEEKLY = normalise_schedule("", "", "weekly")[2]  # "weekly instead": on the cadence's first day


def leave_routes(web: Web, batcher: UnsubscribeBatcher) -> list[Route]:
    default_when = web.settings.default_when()

    def unsubscribed(key: str) -> Subscriber | None:
        with web.stores.get() as store:
            return store.readers.get(key)

    def state_choices(request: Request, sub: Subscriber | None, *, left: bool) -> list[dict[str, str]]:
        """The buttons of the unsubscribe page, behind the same token: resubscribe (once ``left``), and a
        weekly digest instead, unless it is weekly already or the operator's config owns the schedule."""
        token = request.path_params["token"]
        out = [{"action": links.RESUBSCRIBE.format(token=token), "button": "Resubscribe", "kind": "go"}]
        out = out if left else []
        weekly = sub is not None and reader_when(sub, default_when).cadence.startswith("weekly")
        if sub is not None and not weekly and sub.key not in web.declared:
            out.append(
                {"action": links.WEEKLY_INSTEAD.format(token=token), "button": "Get it weekly instead"}
            )
        return out

    def state_page(
        request: Request, title: str, line: str, sub: Subscriber | None, *, left: bool, **extra: Any
    ) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        choices = state_choices(request, sub, left=left)
        response = web.pages.page(request, 200, title, line, choices=choices, choice_csrf=csrf, **extra)
        return web.with_csrf_cookie(response, csrf)

    async def unsubscribe_page(request: Request) -> Response:
        found = web.bearer(Purpose.UNSUBSCRIBE, request.path_params["token"])
        if found is None:
            return web.invalid(request)
        sub = unsubscribed(found.key)
        return state_page(
            request,
            "Unsubscribe from the digest?",
            f"{shown(found.key)} will get no more digest emails.",
            sub,
            left=sub is not None and not sub.active,
            action=request.url.path,
            button="Unsubscribe",
            one_click=True,
            footnote="Changed your mind? Just close this page.",
        )

    async def unsubscribe(request: Request) -> Response:
        found = web.bearer(Purpose.UNSUBSCRIBE, request.path_params["token"])
        if found is None:
            return web.invalid(request)
        form = await web.form(request)
        if form.get("List-Unsubscribe") != ONE_CLICK:
            return PlainTextResponse("expected List-Unsubscribe=One-Click", status_code=400)
        await batcher.unsubscribe(found.key)
        return state_page(
            request,
            "You are unsubscribed",
            f"{shown(found.key)} will get no more digest emails.",
            unsubscribed(found.key),
            left=True,
            footnote="Your topics are kept: resubscribe here or from your page whenever you like.",
        )

    def come_back(key: str, cadence: str | None) -> Subscriber | None:
        with web.stores.get() as store:
            store.readers.resume(key, datetime.now(UTC), cadence=cadence)
            return store.readers.get(key)

    async def resubscribe(request: Request) -> Response:
        """``/resubscribe`` and ``/weekly`` under an unsubscribe link: the digest on again (weekly, for the
        second), the profile as it was. CSRF-checked: only the page's own buttons send them."""
        posted = await web.acting_post(request, Purpose.UNSUBSCRIBE)
        if isinstance(posted, Response):
            return posted
        key = posted[0]
        weekly = request.url.path.endswith("/weekly")
        if weekly and key in web.declared:
            return web.pages.page(request, 400, "Not here", sentence(CONFIG_OWNED))
        sub = await run_in_threadpool(come_back, key, WEEKLY if weekly else None)
        if sub is None:
            return web.no_subscription(request, key)
        return web.pages.page(
            request,
            200,
            "Your digest is on" if not weekly else "Your digest comes weekly",
            f"{shown(key)} gets {reader_when(sub, default_when).describe()}, on the same topics.",
            link=web.links.manage(key),
            link_text="Change your topics and schedule on your page",
        )

    return [
        Route(links.UNSUBSCRIBE, unsubscribe_page, methods=["GET"]),
        Route(links.UNSUBSCRIBE, unsubscribe, methods=["POST"]),
        Route(links.RESUBSCRIBE, resubscribe, methods=["POST"]),
        Route(links.WEEKLY_INSTEAD, resubscribe, methods=["POST"]),
    ]
