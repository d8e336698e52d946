"""The reader's web app: routes stay thin, the library does the work, every acting link is signed.

Managing (``/m/{token}``, linked from every digest): the reader's topics, exclusions, papers per email,
trending or not, paused or not, with a preview of the digest those settings give on the papers stored now
("matched" reasons and highlights), updated as they type by a small script (and by a Preview button
without it). Saving needs the form's CSRF token. ``data.json`` downloads everything kept about them;
``delete`` (two steps, CSRF) erases it.

Subscribing (``/``): a form with CSRF protection (a random token in a SameSite=Strict cookie and in the
form); the request is checked like ``digest subscribe`` and mailed as a confirmation link (double opt-in,
see ``subscriptions``); the answer is the same whether the address is known or not; one address may ask 3
times an hour and one client 20 times. ``/c/{token}`` shows a button, and its POST creates the subscriber.

The unsubscribe link of every digest (RFC 8058):

- ``GET /u/{token}`` shows one button and changes nothing (mail scanners fetch links);
- ``POST /u/{token}`` with ``List-Unsubscribe=One-Click`` (what Gmail and Yahoo send, without cookies, and
  what the button sends) unsubscribes at once. No CSRF token: the RFC requires the bare POST to work, and
  the signed token already proves the link came from the subscriber's own mail.

Where the work runs: a request that only reads (the manage page and its live preview, the hot path) runs on
the event loop, with the loop thread's own SQLite connection. In WAL mode a reader never waits for a writer,
so these reads cannot block the loop, and under the GIL a worker thread would add a hand-over per request
and no parallelism (bench/web.py: 1,480 against 2,240 pages/s with two workers). Anything that writes, and
so may wait for a ``digest run``'s transaction, runs in a worker thread; so does rendering a whole sent
digest (``/v/``). ``digest serve --workers N`` runs N such processes on one port.

A forged, altered or other-purpose token is refused with 400 and changes nothing. Every response carries
strict security headers: a CSP with a per-response nonce for the page's one style block and nothing else
allowed, no framing, no referrer (a token must never leak to another site), no caching.
"""

from __future__ import annotations

import logging
import secrets
import time
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from digest.cadence import CADENCES, cadence_label
from digest.errors import DeliveryError, ProfileError, SubscriberError, TokenError
from digest.mime import Outgoing
from digest.models import Profile, Subscriber
from digest.planning import candidate_pool, reader_when
from digest.select import PaperIndex
from digest.settings import Settings
from digest.subscriptions import (
    ASK_WINDOW,
    ASKS_PER_ADDRESS,
    ASKS_PER_CLIENT,
    confirm_link,
    confirmation_message,
    preview_digest,
    profile_from_form,
    read_confirmation,
)
from digest.subscriptions import Request as SignupRequest
from digest.tokens import Purpose, Signer
from digest.transport import make_transport
from digest.web.api import api_routes, bearer_guard
from digest.web.metrics import metrics_routes
from digest.web.pages import CSRF_COOKIE, Pages, SecurityHeaders, highlighted_title
from digest.web.sent import sent_digest_routes
from digest.web.stores import PoolCache, ThreadStores, UnsubscribeBatcher

ONE_CLICK = "One-Click"  # RFC 8058: the body is List-Unsubscribe=One-Click


log = logging.getLogger("digest.web")
ZONES = sorted(zoneinfo.available_timezones())  # the manage page's time zone suggestions


def create_app(settings: Settings) -> Starlette:
    """The app for ``settings``: its database, its signing keys (refused at start-up if missing or weak)."""
    signer = Signer(settings.signing_keys())
    stores = ThreadStores(settings.database)
    batcher = UnsubscribeBatcher(stores)
    pages = Pages(settings.sender.split("<")[0].strip().strip('"') or "Paper Digest")
    default_when = settings.default_when()

    def csrf_refused(request: Request, form: dict[str, str]) -> Response | None:
        """None when the form's CSRF token matches its cookie (both present), else the 403 page."""
        cookie, field = request.cookies.get(CSRF_COOKIE, ""), form.get("csrf", "")
        if cookie and field and secrets.compare_digest(cookie, field):
            return None
        return pages.page(request, 403, "This form has expired", "Reload the page and send it again.")

    def invalid(request: Request) -> HTMLResponse:
        return pages.page(
            request,
            400,
            "This link is not valid",
            "It may have been changed or cut short. Use the unsubscribe link in a recent digest email.",
        )

    async def unsubscribe(request: Request) -> Response:
        try:
            email = signer.read(Purpose.UNSUBSCRIBE, request.path_params["token"])
        except TokenError:
            return invalid(request)
        if request.method == "GET":  # never acts: scanners and previews fetch links
            return pages.page(
                request,
                200,
                "Unsubscribe from the digest?",
                f"{email} will get no more digest emails.",
                action=request.url.path,
                button="Unsubscribe",
                one_click=True,
                footnote="Changed your mind? Just close this page.",
            )
        form = await request.form()
        if form.get("List-Unsubscribe") != ONE_CLICK:
            return PlainTextResponse("expected List-Unsubscribe=One-Click", status_code=400)
        await batcher.unsubscribe(email)
        return pages.page(request, 200, "You are unsubscribed", f"{email} will get no more digest emails.")

    secure_cookie = (settings.base_url or "").startswith("https://")

    def allowed(what: str, limit: int) -> bool:
        with stores.get() as store:
            return store.allow(what, limit, ASK_WINDOW, time.time())

    def with_csrf_cookie(response: Response, csrf: str) -> Response:
        """The response carrying the form's CSRF token in a cookie scripts and other sites cannot read."""
        response.set_cookie(
            CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=secure_cookie, path="/"
        )
        return response

    def form_page(
        request: Request, status: int, csrf: str, form: dict[str, str], error: str = ""
    ) -> Response:
        response = pages.page(
            request,
            status,
            "Get new papers on your topics, every morning",
            "One email a day with the new research papers that match your topics, never the same paper twice.",
            template="subscribe.html",
            csrf=csrf,
            form=form,
            error=error,
            when=default_when.every(),
        )
        return with_csrf_cookie(response, csrf)

    async def subscribe(request: Request) -> Response:
        if request.method == "GET":
            return form_page(request, 200, secrets.token_urlsafe(24), {})
        form = {k: str(v) for k, v in (await request.form()).items()}
        refused = csrf_refused(request, form)
        if refused:
            return refused
        cookie = request.cookies[CSRF_COOKIE]
        client = request.client.host if request.client else "unknown"
        if not await run_in_threadpool(allowed, f"client:{client}", ASKS_PER_CLIENT):
            return pages.page(request, 429, "Too many requests", "Please try again in an hour.")
        try:
            asked = SignupRequest.from_form(form)
        except (ProfileError, SubscriberError) as exc:
            return form_page(request, 400, cookie, form, error=exc.message)
        # The mailed link is built from base_url only, never from the Host header a client sends.
        if not settings.base_url:
            return pages.page(request, 503, "Sign-up is not set up here", "The operator has to set base_url.")
        if await run_in_threadpool(allowed, f"address:{asked.email.casefold()}", ASKS_PER_ADDRESS):
            link = confirm_link(signer, settings.base_url, asked)
            message = confirmation_message(settings, asked, link, datetime.now(UTC))
            try:
                await run_in_threadpool(send_confirmation, message)
            except DeliveryError:
                return pages.page(request, 503, "We could not send the email", "Please try again later.")
        # The same answer whether the address is new, known, or has asked too often: no enumeration.
        return pages.page(
            request,
            200,
            "Check your inbox",
            f"We sent a confirmation link to {asked.email}. Follow it within 48 hours to start your digest.",
            footnote="Nothing arrives? Look in the spam folder, or send the form again in a while.",
        )

    def send_confirmation(message: Outgoing) -> None:
        with make_transport(settings) as transport:
            transport.send(message)
            transport.flush()

    def add_now(asked: SignupRequest) -> None:
        with stores.get() as store:
            store.add_subscriber(asked.subscriber(), datetime.now(UTC))

    async def confirm(request: Request) -> Response:
        try:
            asked = read_confirmation(signer, request.path_params["token"])
        except TokenError as exc:
            return pages.page(
                request,
                400,
                f"This link {exc.message.removeprefix('this link ')}",
                "Subscribe again from the form.",
            )
        what = "the trending papers" if asked.profile.trending else ", ".join(asked.profile.topics)
        if request.method == "GET":  # never acts: scanners and previews fetch links
            return pages.page(
                request,
                200,
                "Confirm your subscription",
                f"{asked.email} will get a daily digest on: {what}.",
                action=request.url.path,
                button="Confirm",
                positive=True,
            )
        await run_in_threadpool(add_now, asked)
        return pages.page(
            request,
            200,
            "You are subscribed",
            f"{asked.email} gets a daily digest on: {what}.",
            link=f"/m/{signer.make(Purpose.MANAGE, asked.email)}",
            link_text="Tune your topics and preview your digest",
            footnote="Every digest links to this page, and to unsubscribe in one click.",
        )

    declared = {s.email.casefold() for s in settings.subscribers}  # their profile comes from the config

    def build_pool() -> PaperIndex:
        with stores.get() as store:
            pool = candidate_pool(settings, store, datetime.now(UTC))
        _ = pool.space  # fit the text model here, in the worker thread, not at a request on the event loop
        return pool

    def pool_version() -> tuple[int, int]:
        with stores.get() as store:
            return store.papers_version(datetime.now(UTC) - timedelta(days=settings.lookback_days))

    pools = PoolCache(pool_version, build_pool)

    def preview_html(subscriber: Subscriber, pool: PaperIndex) -> str:
        with stores.get() as store:
            digest = preview_digest(settings, store, subscriber, datetime.now(UTC), pool)
        entries = [
            {
                "title": highlighted_title(m.paper.title, m.matched),
                "matched": m.matched,
                "likeness": m.likeness,
            }
            for m in (digest.matches if digest else ())
        ]
        return pages.env.get_template("preview.html").render(
            entries=entries, more=digest.more if digest else 0
        )

    def load_subscriber(email: str) -> Subscriber | None:
        with stores.get() as store:
            return store.subscriber(email)

    def save_profile(subscriber: Subscriber, paused: bool) -> None:
        now = datetime.now(UTC)
        with stores.get() as store:
            store.add_subscriber(subscriber, now)
            if paused:
                store.unsubscribe(subscriber.email, now)

    def profile_form(subscriber: Subscriber) -> dict[str, str]:
        p = subscriber.profile
        return {
            "keywords": "\n".join(p.keywords),
            "exclude": ", ".join(p.exclude),
            "max_papers": str(p.max_papers),
            "trending": "yes" if p.trending else "",
            "paused": "" if subscriber.active else "yes",
            "about": p.about,
            "seeds": "\n".join(p.seeds),
            "timezone": p.timezone,
            "send_at": p.send_at,
            "cadence": p.cadence,
        }

    def said_of(email: str) -> list[dict[str, Any]]:
        """What the reader said with "more / less like this", for the manage page to list and undo."""
        with stores.get() as store:
            mine = store.feedback([email]).get(email.casefold(), {})
        return [
            {"ref": p.ref, "title": p.title, "kind": kind}
            for kind in ("more", "less")
            for p in mine.get(kind, [])
        ]

    def undo_feedback(email: str, ref: int) -> None:
        with stores.get() as store:
            store.set_feedback(email, ref, None, datetime.now(UTC))

    async def manage_post(request: Request) -> tuple[str, dict[str, str]] | Response:
        """(address, form) of a POST to a manage link that carries its CSRF token; else the page to answer."""
        email = manage_email(request)
        if email is None:
            return invalid(request)
        form = {k: str(v) for k, v in (await request.form()).items()}
        return csrf_refused(request, form) or (email, form)

    async def undo(request: Request) -> Response:
        posted = await manage_post(request)
        if isinstance(posted, Response):
            return posted
        email, form = posted
        if form.get("ref", "").isdigit():
            await run_in_threadpool(undo_feedback, email, int(form["ref"]))
        return RedirectResponse(request.url.path.removesuffix("/feedback"), status_code=303)

    def manage_email(request: Request) -> str | None:
        """The address a manage link was made for, or None for a forged, altered or foreign one."""
        try:
            return signer.read(Purpose.MANAGE, request.path_params["token"])
        except TokenError:
            return None

    def manage_view(
        email: str, profile: Profile | None, save: bool, paused: bool, pool: PaperIndex
    ) -> tuple[Subscriber | None, str]:
        """The subscriber (with ``profile`` if given, saved if ``save``) and the preview of their digest."""
        subscriber = load_subscriber(email)
        if subscriber is None:
            return None, ""
        if profile is not None:
            subscriber = replace(subscriber, profile=profile)
        if save:
            save_profile(subscriber, paused)
        return subscriber, preview_html(subscriber, pool)

    async def manage(request: Request) -> Response:
        email = manage_email(request)
        if email is None:
            return invalid(request)
        preview_only = request.url.path.endswith("/preview")
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        form: dict[str, str] | None = None
        profile, error, save = None, "", False
        if request.method == "POST":
            form = {k: str(v) for k, v in (await request.form()).items()}
            refused = csrf_refused(request, form)
            if refused:
                return refused
            try:
                profile = profile_from_form(form, email)
            except ProfileError as exc:
                if preview_only:
                    return HTMLResponse(
                        f'<section id="preview"><p class="error">{escape(exc.message)}</p></section>'
                    )
                error = exc.message
            save = not preview_only and not error and form.get("action") == "save"
            if save and email in declared:
                error, save = (
                    "your digest is set up in the operator's configuration: reply to a digest to change it",
                    False,
                )
        paused = form is not None and form.get("paused") == "yes"
        pool = await pools.get()
        if save:  # a write may wait for a `digest run`'s transaction: in a worker thread
            subscriber, preview = await run_in_threadpool(manage_view, email, profile, True, paused, pool)
        else:  # reads only: on the event loop (see the module's docstring)
            subscriber, preview = manage_view(email, profile, False, paused, pool)
        if subscriber is None:
            return pages.page(
                request,
                404,
                "No subscription here",
                f"{email} is not subscribed.",
                footnote="Subscribe again from the form.",
            )
        if preview_only:
            return HTMLResponse(preview)
        response = pages.page(
            request,
            400 if error else 200,
            "Your paper digest",
            f"For {email}. Changes apply from the next digest.",
            template="manage.html",
            action=request.url.path,
            csrf=csrf,
            form=form or profile_form(subscriber),
            error=error,
            saved=save,
            preview=preview,
            said=said_of(email),
            when=reader_when(subscriber, settings.default_when()).describe(),
            cadences=[("", f"As the digest: {default_when.every()}")]
            + [(c, cadence_label(c)) for c in CADENCES],
            zones=ZONES,
            default_zone=settings.timezone,
        )
        return with_csrf_cookie(response, csrf)

    def my_data(email: str) -> dict[str, Any] | None:
        with stores.get() as store:
            subscriber = store.subscriber(email)
            if subscriber is None:
                return None
            sent = store.history(subscriber.email)
        sent_json = [
            {"id": r.key, "title": r.title, "sent_at": r.sent_at, "message_id": r.message_id} for r in sent
        ]
        return {**subscriber.to_json(), "sent": sent_json}

    async def data(request: Request) -> Response:
        email = manage_email(request)
        if email is None:
            return invalid(request)
        found = await run_in_threadpool(my_data, email)
        if found is None:
            return JSONResponse({"error": "not subscribed"}, status_code=404)
        return JSONResponse(
            found, headers={"Content-Disposition": 'attachment; filename="my-paper-digest.json"'}
        )

    def forget_now(email: str) -> None:
        with stores.get() as store:
            store.forget(email)

    async def delete(request: Request) -> Response:
        posted = await manage_post(request)
        if isinstance(posted, Response):
            return posted
        email, form = posted
        csrf = request.cookies[CSRF_COOKIE]
        if email in declared:
            return pages.page(
                request,
                400,
                "Not here",
                "Your digest is set up in the operator's configuration: reply to a digest.",
            )
        if form.get("confirm") != "yes":  # a second, explicit step: nothing is erased by one stray click
            return pages.page(
                request,
                200,
                "Delete everything?",
                f"{email}, your topics and the record of every paper sent to you will be erased. No digest will "
                "be sent again. This cannot be undone.",
                template="delete.html",
                action=request.url.path,
                csrf=csrf,
            )
        await run_in_threadpool(forget_now, email)
        return pages.page(
            request, 200, "Deleted", f"Everything about {email} is gone. No digest will be sent again."
        )

    async def health(request: Request) -> Response:
        """200 "ok" when the database answers; 503 otherwise (the reason is logged, not shown: the page is
        public)."""
        problem = await run_in_threadpool(stores.healthy)
        if problem is None:
            return PlainTextResponse("ok")
        log.error("health check: the database does not answer: %s", problem)
        return PlainTextResponse("database unavailable", status_code=503)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pools.get()  # index the papers before the first request, not during it
        yield

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/", subscribe, methods=["GET", "POST"]),
            Route("/c/{token}", confirm, methods=["GET", "POST"]),
            Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
            Route("/m/{token}", manage, methods=["GET", "POST"]),
            Route("/m/{token}/preview", manage, methods=["POST"]),
            Route("/m/{token}/feedback", undo, methods=["POST"]),
            Route("/m/{token}/data.json", data, methods=["GET"]),
            Route("/m/{token}/delete", delete, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
            *api_routes(settings, stores),
            *metrics_routes(stores, bearer_guard(settings)),
            *sent_digest_routes(
                settings,
                signer,
                stores,
                pages,
                csrf_refused,
                with_csrf_cookie,
                lambda email: f"/m/{signer.make(Purpose.MANAGE, email)}",
            ),
        ],
    )
    app.add_middleware(SecurityHeaders)
    return app
