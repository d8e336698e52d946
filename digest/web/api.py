"""A small JSON API for platforms that keep their own sign-up flow: ``/api/subscribers``.

Every request carries ``Authorization: Bearer <DIGEST_API_TOKEN>`` (compared in constant time); without a
configured token the API answers 404, as if it did not exist. No cookies, so no CSRF. Profiles are checked
with the same rules and messages as ``digest subscribe``; a subscriber added here is active at once (the
platform has confirmed the address itself).

- ``GET /api/subscribers?after=EMAIL&limit=N``: subscribers in address order, N at most 500;
- ``GET /api/subscribers/{email}``: one;
- ``PUT /api/subscribers/{email}``: create or replace ``{"keywords": [...], "exclude": [...],
  "max_papers": N, "about": "...", "seeds": [...], "name": "...", "active": true}``;
- ``DELETE /api/subscribers/{email}``: unsubscribe (history kept, so nothing is ever sent twice);
  ``?erase=true`` erases the subscriber and their history instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from digest.cadence import normalise_schedule
from digest.errors import ProfileError, SubscriberError
from digest.models import Profile, Subscriber
from digest.select import check_profile
from digest.settings import Settings, normalise_email
from digest.store import Store
from digest.web.stores import ThreadStores

PAGE_MAX = 500


def profile_from_json(body: Any, email: str) -> tuple[Profile, str, bool]:
    """(profile, name, active) from a PUT body, checked like ``digest subscribe``'s arguments."""
    if not isinstance(body, dict):
        raise ProfileError("the body must be a JSON object", subscriber=email)
    words = {k: body.get(k, []) for k in ("keywords", "exclude", "seeds")}
    if not all(isinstance(v, list) and all(isinstance(w, str) for w in v) for v in words.values()):
        raise ProfileError("keywords, exclude and seeds must be lists of strings", subscriber=email)
    about = body.get("about", "")
    if not isinstance(about, str):
        raise ProfileError("about must be a string", subscriber=email)
    max_papers = body.get("max_papers", 20)
    if not isinstance(max_papers, int) or isinstance(max_papers, bool) or not 1 <= max_papers <= 1000:
        raise ProfileError("max_papers must be a number from 1 to 1000", subscriber=email)
    when = [body.get(k, "") for k in ("timezone", "send_at", "cadence")]
    if not all(isinstance(v, str) for v in when):
        raise ProfileError("timezone, send_at and cadence must be strings", subscriber=email)
    try:
        timezone, send_at, cadence = normalise_schedule(*when)
    except ValueError as exc:
        raise ProfileError(str(exc), subscriber=email) from exc
    profile = Profile(
        tuple(words["keywords"]),
        tuple(words["exclude"]),
        max_papers,
        " ".join(about.split()),
        tuple(words["seeds"]),
        timezone=timezone,
        send_at=send_at,
        cadence=cadence,
    )
    problems = check_profile(profile)
    if problems:
        keyword, why = problems[0]
        raise ProfileError(why, subscriber=email, keyword=keyword)
    name = body.get("name", "")
    return profile, " ".join(str(name).split())[:100], body.get("active", True) is not False


def bearer_guard(settings: Settings) -> Callable[[Request], Response | None]:
    """The check of ``DIGEST_API_TOKEN`` that the API and ``/metrics`` share: it gives None when the request
    carries the token, else the answer to give (404 when no token is configured: the endpoint is off)."""
    token = settings.api_token.get_secret_value() if settings.api_token else ""

    def authorised(request: Request) -> Response | None:
        if not token:
            return JSONResponse({"error": "not found"}, status_code=404)
        given = request.headers.get("authorization", "")
        if not given.startswith("Bearer ") or not secrets.compare_digest(given[7:].encode(), token.encode()):
            return JSONResponse(
                {"error": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    return authorised


def api_routes(settings: Settings, stores: ThreadStores) -> list[Route]:
    authorised = bearer_guard(settings)

    def with_store(work: Any) -> Any:
        with stores.get() as store:
            return work(store)

    async def collection(request: Request) -> Response:
        refused = authorised(request)
        if refused:
            return refused
        after = request.query_params.get("after", "")
        try:
            limit = min(PAGE_MAX, max(1, int(request.query_params.get("limit", "100"))))
        except ValueError:
            return JSONResponse({"error": "limit must be a number"}, status_code=400)

        def page(store: Store) -> list[Subscriber]:
            for batch in store.subscriber_batches(limit, include_inactive=True, start=after):
                return [s for s in batch if s.email.casefold() != after.casefold()]
            return []

        found = await run_in_threadpool(with_store, page)
        return JSONResponse({"subscribers": [s.to_json() for s in found], "limit": limit})

    async def one(request: Request) -> Response:
        refused = authorised(request)
        if refused:
            return refused
        try:
            email = normalise_email(request.path_params["email"])
        except SubscriberError as exc:
            return JSONResponse({"error": exc.message}, status_code=400)
        now = datetime.now(UTC)
        if request.method == "GET":
            found = await run_in_threadpool(with_store, lambda store: store.subscriber(email))
            if found is None:
                return JSONResponse({"error": f"no subscriber {email}"}, status_code=404)
            return JSONResponse(found.to_json())
        if request.method == "DELETE":
            erase = request.query_params.get("erase") == "true"
            removed = await run_in_threadpool(
                with_store, lambda store: store.forget(email) if erase else store.unsubscribe(email, now)
            )
            return JSONResponse({"email": email, "erased" if erase else "unsubscribed": bool(removed)})
        try:
            profile, name, active = profile_from_json(await request.json(), email)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        except ProfileError as exc:
            return JSONResponse({"error": exc.message}, status_code=400)

        def put(store: Store) -> Subscriber | None:
            store.add_subscriber(Subscriber(email, name, profile), now)
            if not active:
                store.unsubscribe(email, now)
            return store.subscriber(email)

        saved = await run_in_threadpool(with_store, put)
        assert saved is not None
        return JSONResponse(saved.to_json())

    return [
        Route("/api/subscribers", collection, methods=["GET"]),
        Route("/api/subscribers/{email}", one, methods=["GET", "PUT", "DELETE"]),
    ]
