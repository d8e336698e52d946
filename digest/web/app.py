"""The reader's web app: routes by area over one state built once, the library does the work, every acting
link is signed.

The areas: ``signup`` (the form and its confirmation link), ``reader`` (unsubscribe, manage, data, delete,
from the links in every digest), ``sent`` (a sent digest in a browser, "more / less like this"), ``api``
(the bearer-token JSON API), ``metrics`` (``/metrics``) and ``/healthz`` here.

Every change of state is a POST (with the form's CSRF token, or RFC 8058's one-click body); GET and HEAD
only read, and the router answers any other method with 405, so neither a link prefetch nor a scanner's
HEAD ever acts. A forged, altered or other-purpose token is refused with 400 and changes nothing.

Around the routes, outermost first: ``SecurityHeaders`` (a CSP with a per-response nonce for the page's
one style block and nothing else, no framing, no referrer: a token must never leak to another site, no
caching) on every answer, errors included; ``InternalErrors`` (a bug answers a plain 500, logged);
``BodyLimit`` (a body over its route's limit is refused with 413 before it is read).

``digest serve --workers N`` runs N such processes on one port, each with its own state.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from digest import links
from digest.references import FILE_MAX
from digest.selection.index import PaperIndex
from digest.web.api import api_routes, bearer_guard
from digest.web.feed import feed_routes
from digest.web.guards import KIB, BodyLimit, InternalErrors
from digest.web.leave import leave_routes
from digest.web.library import library_routes
from digest.web.metrics import metrics_routes
from digest.web.pages import SecurityHeaders
from digest.web.papers import papers_routes
from digest.web.reader import reader_routes
from digest.web.sent import sent_digest_routes
from digest.web.signup import ConfirmationMailer, signup_routes
from digest.web.state import Web
from digest.web.stores import PoolCache, UnsubscribeBatcher
from digest.wiring import Services

log = logging.getLogger("digest.web")

# Request bodies, at most: a form or an API call carries one profile (100 keywords and exclusions of 100
# characters, a 2,000-character description, 50 seeds of 500: some 50 KB, URL-encoded up to three times
# that); everything else carries a line or nothing.
FORM_MAX = 256 * KIB
SMALL_MAX = 4 * KIB
IMPORT_MAX = FILE_MAX + 16 * KIB  # one reference file and the form around it


def body_limit(path: str) -> int:
    """The largest body a request to ``path`` may carry.

    >>> body_limit("/"), body_limit("/m/TOKEN"), body_limit("/u/TOKEN"), body_limit("/m/TOKEN/import")
    (262144, 262144, 4096, 1064960)
    """
    if path.startswith(links.prefix(links.MANAGE)) and path.endswith(links.MANAGE_IMPORT.rsplit("}", 1)[1]):
        return IMPORT_MAX
    if path == links.SIGNUP or path.startswith((links.prefix(links.MANAGE), "/api/")):
        return FORM_MAX
    return SMALL_MAX


def create_app(services: Services) -> Starlette:
    """The app over this process's ``services``: its database, its signing keys (refused at start-up if
    missing or weak)."""
    settings = services.settings
    web = Web.build(services)
    batcher = UnsubscribeBatcher(web.stores)
    mailer = ConfirmationMailer(services.transport)

    def build_pool() -> PaperIndex:
        with web.stores.get() as store:
            pool = services.pool(store, datetime.now(UTC))
        _ = pool.space  # fit the text model here, in the worker thread, not at a request on the event loop
        return pool

    def pool_version() -> tuple[int, int]:
        with web.stores.get() as store:
            return store.papers.version(datetime.now(UTC) - timedelta(days=settings.lookback_days))

    pools = PoolCache(pool_version, build_pool)

    async def health(request: Request) -> Response:
        """200 "ok" when the database answers; 503 otherwise (the reason is logged, not shown: the page is
        public)."""
        problem = await run_in_threadpool(web.stores.healthy)
        if problem is None:
            return PlainTextResponse("ok")
        log.error("health check: the database does not answer: %s", problem)
        return PlainTextResponse("database unavailable", status_code=503)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pools.get()  # index the papers before the first request, not during it
        mailer.start()
        try:
            yield
        finally:
            await run_in_threadpool(mailer.close)
            web.stores.close()

    return Starlette(
        lifespan=lifespan,
        routes=[
            *signup_routes(web, mailer),
            *leave_routes(web, batcher),
            *reader_routes(web, pools),
            *library_routes(web, pools),
            *feed_routes(web),
            *papers_routes(web),
            *sent_digest_routes(web),
            Route("/healthz", health, methods=["GET"]),
            *api_routes(web),
            *metrics_routes(web.stores, bearer_guard(settings)),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(InternalErrors),
            Middleware(BodyLimit, limit_for=body_limit),
        ],
    )
