"""What stands between the network and the routes: bodies bounded before they are read, and failures that
still answer as a page of ours.

``BodyLimit`` refuses a request whose body is larger than its route allows with 413, before anything parses
it or checks its CSRF token: a declared ``Content-Length`` over the limit is refused at once, and a body sent
without one (chunked) is counted as it arrives and cut off at the limit, so no request makes the server hold
more than the limit in memory.

``InternalErrors`` turns a bug into a plain 500 inside the app (logged with its traceback), so that the
answer passes through ``SecurityHeaders`` like every other: Starlette's own error handler sits outside every
middleware and would send it bare.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("digest.web")

KIB = 1024


class BodyTooLarge(Exception):
    """A request body went past its route's limit while it was being read."""


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Watched:
    """A ``send`` that remembers whether the response has started (after that, no other answer fits)."""

    def __init__(self, send: Send) -> None:
        self.send, self.started = send, False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


class BodyLimit:
    """ASGI middleware: at most ``limit_for(path)`` bytes of request body (see the module's docstring)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _plain(send, 413, f"the request body is larger than this page takes ({limit:,} bytes)\n")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        watched = _Watched(send)
        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if watched.started:
                raise
            await _plain(send, 413, f"the request body is larger than this page takes ({limit:,} bytes)\n")


class InternalErrors:
    """ASGI middleware: an exception a route did not handle becomes a logged, plain 500 answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = _Watched(send)
        try:
            await self.app(scope, receive, watched)
        except Exception:
            # The path's first part only: the rest may be a token that acts for a reader.
            where = "/" + str(scope.get("path", "")).lstrip("/").split("/")[0]
            log.exception("internal error answering %s %s…", scope.get("method"), where)
            if watched.started:
                raise
            await _plain(send, 500, "internal error: the operator has the details in the log\n")
