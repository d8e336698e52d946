"""The reader's web app: routes stay thin, the library does the work, every acting link is signed.

Today it answers the unsubscribe link of every digest (RFC 8058):

- ``GET /u/{token}`` shows one button and changes nothing (mail scanners fetch links);
- ``POST /u/{token}`` with ``List-Unsubscribe=One-Click`` (what Gmail and Yahoo send, without cookies, and
  what the button sends) unsubscribes at once. No CSRF token: the RFC requires the bare POST to work, and
  the signed token already proves the link came from the subscriber's own mail.

A forged, altered or other-purpose token is refused with 400 and changes nothing. Every response carries
strict security headers: a CSP with a per-response nonce for the page's one style block and nothing else
allowed, no framing, no referrer (a token must never leak to another site), no caching.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.errors import TokenError
from digest.render import default_templates_dir
from digest.settings import Settings
from digest.store import Store
from digest.tokens import Purpose, Signer

ONE_CLICK = "One-Click"  # RFC 8058: the body is List-Unsubscribe=One-Click


def security_headers(nonce: str) -> dict[str, str]:
    """The headers on every response; ``nonce`` allows the page's own style block and nothing else.

    >>> security_headers("abc")["Content-Security-Policy"].split("; ")[:2]
    ["default-src 'none'", "style-src 'nonce-abc'"]
    """
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


class SecurityHeaders:
    """ASGI middleware: a fresh nonce per request (``scope["state"]["nonce"]``) and the headers above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["nonce"] = nonce
        extra = [(k.lower().encode(), v.encode()) for k, v in security_headers(nonce).items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Pages:
    """The app's few pages, from ``templates/web`` (autoescaped: nothing a reader or a feed wrote runs)."""

    def __init__(self, sender_name: str) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(default_templates_dir() / "web")),
            autoescape=select_autoescape(default=True),
        )
        self.sender_name = sender_name

    def page(self, request: Request, status: int, title: str, *lines: str, **extra: Any) -> HTMLResponse:
        html = self.env.get_template("page.html").render(
            title=title,
            lines=lines,
            nonce=request.scope["state"]["nonce"],
            sender_name=self.sender_name,
            action=extra.get("action"),
            button=extra.get("button"),
            footnote=extra.get("footnote"),
        )
        return HTMLResponse(html, status_code=status)


def create_app(settings: Settings) -> Starlette:
    """The app for ``settings``: its database, its signing keys (refused at start-up if missing or weak)."""
    signer = Signer(settings.signing_keys())
    pages = Pages(settings.sender.split("<")[0].strip().strip('"') or "Paper Digest")

    def unsubscribe_now(email: str) -> None:
        with Store.open(settings.database) as store:
            store.unsubscribe(email, datetime.now(UTC))

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
                footnote="Changed your mind? Just close this page.",
            )
        form = await request.form()
        if form.get("List-Unsubscribe") != ONE_CLICK:
            return PlainTextResponse("expected List-Unsubscribe=One-Click", status_code=400)
        await run_in_threadpool(unsubscribe_now, email)
        return pages.page(request, 200, "You are unsubscribed", f"{email} will get no more digest emails.")

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/u/{token}", unsubscribe, methods=["GET", "POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )
    app.add_middleware(SecurityHeaders)
    return app
