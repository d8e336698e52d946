"""A small JSON API for platforms that keep their own sign-up flow: ``/api/subscribers``.

Every request carries ``Authorization: Bearer <DIGEST_API_TOKEN>`` (compared in constant time); without a
configured token the API answers 404, as if it did not exist. No cookies, so no CSRF. Profiles are checked
with the same rules and messages as ``digest subscribe``, and every field must have its type (``"active":
"false"`` is refused, not read as true); a subscriber added here is active at once (the platform has
confirmed the address itself).

- ``GET /api/subscribers?after=EMAIL&limit=N``: subscribers in mailbox-key order, N at most 500;
- ``GET /api/subscribers/{email}``: one;
- ``PUT /api/subscribers/{email}``: create or replace ``{"keywords": [...], "exclude": [...],
  "max_papers": N, "about": "...", "seeds": [...], "name": "...", "active": true, "timezone": "...",
  "send_at": "HH:MM", "cadence": "...", "authors": [...], "categories": [...], "exclude_categories":
  [...], "sections": {"keywords": 5}, "upvotes": 0.5, "updates": true, "language": "German"}`` (every
  field of a ``[[subscribers]]`` table); the answer lists the seeds no stored paper answers to yet
  (``unknown_seeds``);
- ``DELETE /api/subscribers/{email}``: unsubscribe (history kept, so nothing is ever sent twice);
  ``?erase=true`` erases the subscriber and their history instead (a reader added again later is still
  never sent a paper from before: see ``Readers.forget``).

A reader the operator's config declares belongs to the config: PUT and DELETE answer 409 with the reason
and change nothing (a change would be undone by the next run, and an erasure would lose the record of what
was sent while the config kept the reader).
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

from digest.errors import ProfileError, SubscriberError
from digest.identity import mailbox_key, normalise_email
from digest.models import Profile, Subscriber
from digest.profiles import ProfileInput
from digest.settings import Settings
from digest.store import Store
from digest.subscriptions import unknown_seeds
from digest.web.state import Web

PAGE_MAX = 500
_READ_ONLY = {"email", "bouncing", "bounce_reason"}  # what GET shows and PUT may carry back, ignored


def profile_from_json(body: Any, email: str) -> tuple[Profile, str, bool]:
    """(profile, name, active) from a PUT body: the one reader profile (``profiles``), every field of its
    own type, and ``active`` (a boolean) beside it; ProfileError otherwise."""
    if not isinstance(body, dict):
        raise ProfileError("the body must be a JSON object", subscriber=email)
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise ProfileError("active must be true or false", subscriber=email)
    data = {k: v for k, v in body.items() if k not in _READ_ONLY and k != "active"}
    asked = ProfileInput.checked(data, subscriber=email)
    return asked.profile(), asked.name, active


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


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def api_routes(web: Web) -> list[Route]:
    authorised = bearer_guard(web.settings)

    def with_store(work: Any) -> Any:
        with web.stores.get() as store:
            return work(store)

    async def collection(request: Request) -> Response:
        refused = authorised(request)
        if refused:
            return refused
        after = mailbox_key(request.query_params.get("after", ""))
        try:
            limit = min(PAGE_MAX, max(1, int(request.query_params.get("limit", "100"))))
        except ValueError:
            return _error(400, "limit must be a number")

        def page(store: Store) -> list[Subscriber]:
            for batch in store.readers.batches(limit, include_inactive=True, start=after):
                return [s for s in batch if s.key != after]
            return []

        found = await run_in_threadpool(with_store, page)
        return JSONResponse({"subscribers": [s.to_json() for s in found], "limit": limit})

    def addressed(request: Request) -> str | Response:
        """The address in the path, checked; or the answer to give (unauthorised, not an address)."""
        refused = authorised(request)
        if refused:
            return refused
        try:
            return normalise_email(request.path_params["email"])
        except SubscriberError as exc:
            return _error(400, exc.message)

    def writable(request: Request) -> str | Response:
        """The address in the path, for a change: or the answer to give (unauthorised, not an address, a
        reader the config declares: 409)."""
        email = addressed(request)
        if isinstance(email, Response) or mailbox_key(email) not in web.declared:
            return email
        return _error(
            409,
            f"{email} is declared in the operator's config file, which owns their profile and subscription:"
            " change it there",
        )

    async def one(request: Request) -> Response:
        email = addressed(request)
        if isinstance(email, Response):
            return email
        found = await run_in_threadpool(with_store, lambda store: store.readers.get(email))
        if found is None:
            return _error(404, f"no subscriber {email}")
        return JSONResponse(found.to_json())

    async def remove(request: Request) -> Response:
        email = writable(request)
        if isinstance(email, Response):
            return email
        erase, now = request.query_params.get("erase") == "true", datetime.now(UTC)
        removed = await run_in_threadpool(
            with_store,
            lambda store: (
                store.readers.forget(email, now) if erase else store.readers.unsubscribe(email, now)
            ),
        )
        return JSONResponse({"email": email, "erased" if erase else "unsubscribed": bool(removed)})

    async def put(request: Request) -> Response:
        email = writable(request)
        if isinstance(email, Response):
            return email
        try:
            profile, name, active = profile_from_json(await request.json(), email)
        except RecursionError:
            return _error(400, "the body is nested too deeply")
        except ValueError:
            return _error(400, "the body is not JSON")
        except ProfileError as exc:
            return _error(400, exc.message)

        def save(store: Store) -> tuple[Subscriber | None, list[str]]:
            now = datetime.now(UTC)
            store.readers.add(Subscriber(email, name, profile), now)
            if not active:
                store.readers.unsubscribe(email, now)
            return store.readers.get(email), unknown_seeds(store, profile.seeds)

        saved, unknown = await run_in_threadpool(with_store, save)
        assert saved is not None
        return JSONResponse({**saved.to_json(), "unknown_seeds": unknown})

    return [
        Route("/api/subscribers", collection, methods=["GET"]),
        Route("/api/subscribers/{email}", one, methods=["GET"]),
        Route("/api/subscribers/{email}", put, methods=["PUT"]),
        Route("/api/subscribers/{email}", remove, methods=["DELETE"]),
    ]
