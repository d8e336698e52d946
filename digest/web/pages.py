"""What every page of the web app shares: its templates (autoescaped) and its security headers."""

from __future__ import annotations

import secrets
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.email.render import default_templates_dir

CSRF_COOKIE = "digest_csrf"  # the double-submit cookie every form's CSRF token is checked against


def security_headers(nonce: str) -> dict[str, str]:
    """The headers on every response; ``nonce`` allows the page's own style block and nothing else.

    >>> security_headers("abc")["Content-Security-Policy"].split("; ")[:2]
    ["default-src 'none'", "style-src 'nonce-abc'"]
    """
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
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
                own = {name.lower() for name, _ in message.get("headers", [])}  # a route's own policy wins
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in own)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Pages:
    """The app's few pages, from ``templates/web`` (autoescaped: nothing a reader or a feed wrote runs)."""

    def __init__(self, sender_name: str) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(default_templates_dir() / "web")),
            autoescape=select_autoescape(default=True),
            auto_reload=False,  # templates are part of the installed app: no stat() per request
        )
        self.sender_name = sender_name

    def page(
        self,
        request: Request,
        status: int,
        title: str,
        *lines: str,
        template: str = "page.html",
        **extra: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            title=title,
            lines=lines,
            nonce=request.scope["state"]["nonce"],
            sender_name=self.sender_name,
            **extra,
        )
        return HTMLResponse(html, status_code=status)
