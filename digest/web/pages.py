"""What every page of the web app shares: its templates (autoescaped), its security headers, and how a
paper is shown."""

from __future__ import annotations

import secrets
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.email.entries import paper_entry
from digest.email.render import default_templates_dir
from digest.models import Paper

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


@lru_cache(maxsize=1 << 13)
def shown_paper(
    paper: Paper, matched: tuple[str, ...], by: tuple[str, ...] = (), tldr: str = ""
) -> dict[str, Any]:
    """What a page shows of a paper (its link, meta line, title and abstract with ``matched`` in
    ``<mark>``, escaped): the email's entry, with the highlights made HTML once. Cached: a reader typing in
    the manage page sees mostly the same papers with each keystroke.

    >>> str(shown_paper(Paper("Fast <b>RAG</b>", "Retrieval."), ("RAG",))["title_html"])
    'Fast &lt;b&gt;<mark>RAG</mark>&lt;/b&gt;'
    """
    entry = paper_entry(paper, matched, by)

    def html(parts: list[tuple[str, bool]]) -> Markup:
        return Markup("").join(
            Markup("<mark>%s</mark>") % text if hit else escape(text) for text, hit in parts
        )

    def abstract(runs: list[tuple[bool, list[tuple[str, bool]]]]) -> Markup:
        return Markup("").join(
            Markup('<strong class="found">%s</strong>') % html(run) if found else html(run)
            for found, run in runs
        )

    return {
        "url": entry["url"],
        "meta_html": html(entry["meta_parts"]),
        "finding": entry["finding"],
        "tldr": tldr,
        "title_html": html(entry["title_parts"]),
        "abstract_html": abstract(entry["abstract_parts"]),
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
