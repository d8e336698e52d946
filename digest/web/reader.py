"""The reader's own page, reached from the link in every digest: manage, data, delete (leaving by the
unsubscribe link is ``leave``).

Managing (``/m/{token}``, linked from every digest): the reader's topics, exclusions, papers per email,
trending or not, paused (until a date) or not, with a banner and a Resume button while the digest does not
go out, and a preview of the digest those settings give on the papers stored now
("matched" reasons and highlights), updated as they type by a small script (and by a Preview button
without it). Saving needs the form's CSRF token. ``data.json`` downloads everything kept about them;
``delete`` (two steps, CSRF) erases it. A reader the operator's config declares is shown their page but
cannot change or erase it there.

Every change is a POST; a GET or HEAD of any of these pages reads only, and any other method is refused
(405) by the router. Where the work runs: the manage page and its live preview read on the event loop,
with the loop thread's own SQLite connection (in WAL mode a reader never waits for a writer, and under the
GIL a worker thread would add a hand-over per request and no parallelism: bench/web.py measured 1,480
against 2,240 pages/s). Anything that writes, and so may wait for a ``digest run``'s transaction, runs in
a worker thread.
"""

from __future__ import annotations

import secrets
import zoneinfo
from dataclasses import replace
from datetime import UTC, datetime
from html import escape
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from digest import links
from digest.cadence import CADENCES, cadence_label
from digest.email.entries import tldr_for
from digest.errors import ProfileError
from digest.identity import shown
from digest.models import Profile, Subscriber
from digest.profiles import profile_from_form
from digest.run.planning import paused_until, reader_when
from digest.selection.index import PaperIndex
from digest.selection.sections import TITLES, headed
from digest.subscriptions import preview_digest, unknown_seeds
from digest.tokens import Purpose
from digest.web.forms import UPVOTES, Pause, Preview, form_error, profile_form
from digest.web.pages import CSRF_COOKIE, shown_paper
from digest.web.state import CONFIG_OWNED, Web
from digest.web.stores import PoolCache

ZONES = sorted(zoneinfo.available_timezones())  # the manage page's time zone suggestions


def reader_routes(web: Web, pools: PoolCache) -> list[Route]:
    settings = web.settings
    default_when = settings.default_when()

    # -- manage ----------------------------------------------------------------------------------------

    def preview_html(subscriber: Subscriber, pool: PaperIndex) -> Preview:
        with web.stores.get() as store:
            digest = preview_digest(store, subscriber, datetime.now(UTC), pool, default_when)
        matches = digest.matches if digest else ()
        sections: list[tuple[str, list[dict[str, Any]]]] = []
        for m, heading in zip(matches, headed(matches), strict=True):
            if heading or not sections:
                sections.append((heading, []))
            tldr = tldr_for(m.paper, subscriber.profile.language, web.services.renderer.language)
            shown = shown_paper(m.paper, m.matched, m.by, tldr)
            sections[-1][1].append({**shown, "reasons": [r.text for r in m.reasons], "sent": False})
        html = web.pages.env.get_template("preview.html").render(
            sections=sections, count=len(matches), more=digest.more if digest else 0
        )
        return Preview(html, len(matches))

    def save_profile(subscriber: Subscriber, pause: Pause) -> tuple[Subscriber, list[str]]:
        """Store the reader's profile and pause as the form says: the subscriber as stored, and the seeds
        no stored paper answers to yet."""
        now = datetime.now(UTC)
        with web.stores.get() as store:
            store.readers.add(subscriber, now)
            if pause.on:
                store.readers.pause(subscriber.email, pause.until, now)
            return store.readers.get(subscriber.email) or subscriber, unknown_seeds(
                store, subscriber.profile.seeds
            )

    def manage_view(
        key: str, profile: Profile | None, pause: Pause | None, pool: PaperIndex
    ) -> tuple[Subscriber | None, Preview, list[str]]:
        """The subscriber (with ``profile`` if given; saved, with ``pause``, when that is given), the preview
        of their digest, and the seeds saved that no stored paper answers to yet."""
        with web.stores.get() as store:
            subscriber = store.readers.get(key)
        if subscriber is None:
            return None, Preview("", 0), []
        if profile is not None:
            subscriber = replace(subscriber, profile=profile)
        unknown: list[str] = []
        if pause is not None:
            subscriber, unknown = save_profile(subscriber, pause)
        return subscriber, preview_html(subscriber, pool), unknown

    def saved_of(key: str) -> list[dict[str, Any]]:
        """The reader's saved papers, for the manage page to list, link and take out."""
        with web.stores.get() as store:
            return [{"ref": p.ref, "title": p.title, "url": p.page_url} for p, _ in store.library.saved(key)]

    def feed_of(key: str) -> str | None:
        """The reader's feed URL, absolute where there is a base_url (to paste into a feed reader)."""
        with web.stores.get() as store:
            epoch = store.library.feed_epoch(key)
        if epoch is None:
            return None
        return (web.services.links or web.links).feed(key, epoch)

    def said_of(key: str) -> list[dict[str, Any]]:
        """What the reader said with "more / less like this", for the manage page to list and undo."""
        with web.stores.get() as store:
            mine = store.feedback.of([key]).get(key, {})
        return [
            {"ref": p.ref, "title": p.title, "kind": kind}
            for kind in ("more", "less")
            for p in mine.get(kind, [])
        ]

    async def manage_page(request: Request) -> Response:
        return await manage(request, None)

    async def manage_save(request: Request) -> Response:
        posted = await web.acting_post(request, Purpose.MANAGE)
        if isinstance(posted, Response):
            return posted
        return await manage(request, posted)

    async def manage(request: Request, posted: tuple[str, dict[str, str]] | None) -> Response:
        key = posted[0] if posted else web.key_of(request, Purpose.MANAGE)
        if key is None:
            return web.invalid(request)
        preview_only = request.url.path.endswith("/preview")
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        form = posted[1] if posted else None
        profile, error, error_field, save, pause = None, "", "", False, Pause()
        if form is not None:
            try:
                profile = profile_from_form(form, key).profile()
            except ProfileError as exc:
                if preview_only:
                    return HTMLResponse(
                        f'<section id="preview"><p class="error">{escape(form_error(exc).text)}</p></section>'
                    )
                error_field, error = form_error(exc)
            save = not preview_only and not error and form.get("action") == "save"
            try:
                pause = Pause.of(form, datetime.now(UTC).date()) if save else pause
            except ValueError as exc:
                error, error_field, save = str(exc), "paused_until", False
            if save and key in web.declared:
                error, save = CONFIG_OWNED, False
        pool = await pools.get()
        if save:  # a write may wait for a `digest run`'s transaction: in a worker thread
            subscriber, preview, unknown = await run_in_threadpool(manage_view, key, profile, pause, pool)
        else:  # reads only: on the event loop (see the module's docstring)
            subscriber, preview, unknown = manage_view(key, profile, None, pool)
        if subscriber is None:
            return web.no_subscription(request, key)
        if preview_only:
            return HTMLResponse(preview.html)
        response = web.pages.page(
            request,
            400 if error else 200,
            "Your paper digest",
            f"For {subscriber.email}. Changes apply from the next digest.",
            template="manage.html",
            action=request.url.path,
            csrf=csrf,
            form=form or profile_form(subscriber),
            stopped=stopped_line(subscriber),
            error=error,
            error_field=error_field,
            saved=save,
            unknown=unknown,
            preview=preview.html,
            said=said_of(key),
            feed_url=feed_of(key),
            wide=True,
            preview_count=preview.papers,
            saved_papers=saved_of(key),
            when=reader_when(subscriber, default_when).describe(),
            cadences=[("", f"As the digest: {default_when.every()}")]
            + [(c, cadence_label(c)) for c in CADENCES],
            zones=ZONES,
            default_zone=settings.timezone,
            sections=list(TITLES.items()),
            upvote_choices=UPVOTES,
            summaries=settings.summaries.language if settings.summaries.url else "",
        )
        return web.with_csrf_cookie(response, csrf)

    def stopped_line(sub: Subscriber) -> str:
        """What the manage page's banner says of a digest that does not go out now; "" when it does."""
        if sub.bouncing:
            return (
                f"Mail to {sub.email} was refused, so your digest is stopped. Resume it if the address works."
            )
        if not sub.active:
            return f"Your digest is stopped: nothing goes to {sub.email} until you resume it."
        until = paused_until(sub, datetime.now(UTC), default_when)  # as a run decides it
        if until is not None:
            return f"Your digest is paused until {until:%A %d %B %Y}; it comes again from then."
        return ""

    def resume_now(key: str) -> None:
        with web.stores.get() as store:
            store.readers.resume(key, datetime.now(UTC))

    async def resume(request: Request) -> Response:
        posted = await web.acting_post(request, Purpose.MANAGE)
        if isinstance(posted, Response):
            return posted
        await run_in_threadpool(resume_now, posted[0])
        return RedirectResponse(request.url.path.removesuffix("/resume"), status_code=303)

    def undo_feedback(key: str, ref: int) -> None:
        with web.stores.get() as store:
            store.feedback.set(key, ref, None, datetime.now(UTC))

    async def undo(request: Request) -> Response:
        refused = await web.ref_post(request, undo_feedback)
        return refused or RedirectResponse(request.url.path.removesuffix("/feedback"), status_code=303)

    # -- data and deletion -----------------------------------------------------------------------------

    def my_data(key: str) -> dict[str, Any] | None:
        """Everything kept about a reader: the profile, schedule and state, when they signed up, confirmed
        (``created``) and last changed it, what they said of papers, the papers they saved, and every paper
        sent to them."""
        with web.stores.get() as store:
            subscriber = store.readers.get(key)
            if subscriber is None:
                return None
            sent = store.outbox.history(key)
            times, ratings = store.library.times(key), store.library.ratings(key)
            saved = [{"id": p.key, "title": p.title, "saved_at": at} for p, at in store.library.saved(key)]
        sent_json = [
            {"id": r.key, "title": r.title, "sent_at": r.sent_at, "message_id": r.message_id} for r in sent
        ]
        return {**subscriber.to_json(), **times, "ratings": ratings, "saved": saved, "sent": sent_json}

    async def data(request: Request) -> Response:
        key = web.key_of(request, Purpose.MANAGE)
        if key is None:
            return web.invalid(request)
        found = await run_in_threadpool(my_data, key)
        if found is None:
            return JSONResponse({"error": "not subscribed"}, status_code=404)
        return JSONResponse(
            found, headers={"Content-Disposition": 'attachment; filename="my-paper-digest.json"'}
        )

    def forget_now(key: str) -> None:
        with web.stores.get() as store:
            store.readers.forget(key, datetime.now(UTC))

    async def delete(request: Request) -> Response:
        posted = await web.acting_post(request, Purpose.MANAGE)
        if isinstance(posted, Response):
            return posted
        key, form = posted
        if key in web.declared:
            return web.pages.page(
                request,
                400,
                "Not here",
                "Your digest is set up in the operator's configuration: reply to a digest.",
            )
        if form.get("confirm") != "yes":  # a second, explicit step: nothing is erased by one stray click
            return web.pages.page(
                request,
                200,
                "Delete everything?",
                f"{shown(key)}, your topics and the record of every paper sent to you will be erased. No digest "
                "will be sent again. This cannot be undone.",
                template="delete.html",
                action=request.url.path,
                csrf=request.cookies[CSRF_COOKIE],
            )
        await run_in_threadpool(forget_now, key)
        return web.pages.page(
            request,
            200,
            "Deleted",
            f"Everything about {shown(key)} is gone. No digest will be sent again.",
            footnote="Kept: a one-way fingerprint of the address, so that if you subscribe again you are never "
            "sent a paper from before.",
        )

    return [
        Route(links.MANAGE, manage_page, methods=["GET"]),
        Route(links.MANAGE, manage_save, methods=["POST"]),
        Route(links.MANAGE_PREVIEW, manage_save, methods=["POST"]),
        Route(links.MANAGE_UNDO, undo, methods=["POST"]),
        Route(links.MANAGE_RESUME, resume, methods=["POST"]),
        Route(links.MANAGE_DATA, data, methods=["GET"]),
        Route(links.MANAGE_DELETE, delete, methods=["POST"]),
    ]
