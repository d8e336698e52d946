""" "More like this" / "Less like this": the links under each paper of a digest.

``/f/{token}/{n}/{more|less}``: the token signs the reader's address and the digest's date (one signature
per email); ``n`` is the paper's number in that digest, checked against the digest as it was sent, so a
link can only ever speak for its reader, about a paper they were sent. A GET shows the paper and one
button and changes nothing (mail scanners fetch links); the button's POST (CSRF-protected, like every
form here) records the opinion, which moves the reader's ranking from the next digest on. The manage page
lists what they said and undoes it.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import links
from digest.models import Paper
from digest.run.recall import recalled
from digest.tokens import Bearer, Purpose
from digest.web.pages import CSRF_COOKIE
from digest.web.state import Web

VIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
KINDS = {"more": "More papers like this", "less": "Fewer papers like this", "save": "Save this paper"}
_NUMBER = re.compile(r"[0-9]{1,4}")  # a paper's place in a digest (at most 1,000 papers)


def sent_digest_routes(web: Web) -> list[Route]:
    renderer = web.services.renderer

    def invalid(request: Request) -> Response:
        return web.pages.page(
            request, 400, "This link is not valid", "It may have been changed, or its digest deleted."
        )

    def sent_digest_html(key: str, day: date) -> str | None:
        with web.stores.get() as store:
            subscriber = store.readers.get(key)
            row = store.outbox.sent_message(key, day) if subscriber else None
            digest = recalled(subscriber, row, store) if subscriber and row else None
        if digest is None or not digest.matches:
            return None
        return renderer.html(renderer.context(digest, in_browser=True))  # no "View in a browser" link

    async def view(request: Request) -> Response:
        """A sent digest as its HTML part: only the reader's own, only one that was sent."""
        found = web.bearer(Purpose.VIEW, request.path_params["token"])
        if found is None or found.day is None:
            return invalid(request)
        html = await run_in_threadpool(sent_digest_html, found.key, found.day)
        if html is None:
            return web.pages.page(
                request, 404, "This digest is not here", "It may have been deleted with your data."
            )
        # The email's own inline styles are allowed here, and nothing else (no script, no image, no form).
        return HTMLResponse(html, headers={"Content-Security-Policy": VIEW_CSP})

    def sent_paper(key: str, day: date, number: int) -> Paper | None:
        with web.stores.get() as store:
            row = store.outbox.sent_message(key, day)
            if row is None or not 1 <= number <= len(row.refs):
                return None
            found = store.papers.by_refs([row.refs[number - 1]])
        return found[0] if found else None

    async def about(request: Request) -> tuple[Bearer, Paper, str] | Response:
        """Whose link, the paper it speaks of and "more" or "less"; else the page to answer."""
        kind, number = request.path_params["kind"], request.path_params["number"]
        found = web.bearer(Purpose.FEEDBACK, request.path_params["token"])
        if found is None or found.day is None or kind not in KINDS or not _NUMBER.fullmatch(number):
            return invalid(request)
        paper = await run_in_threadpool(sent_paper, found.key, found.day, int(number))
        return (found, paper, kind) if paper is not None else invalid(request)

    async def feedback_page(request: Request) -> Response:
        """GET and HEAD: the paper and one button; nothing changes (scanners fetch links)."""
        found = await about(request)
        if isinstance(found, Response):
            return found
        _, paper, kind = found
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        page = web.pages.page(
            request,
            200,
            f"{KINDS[kind]}?",
            paper.title,
            action=request.url.path,
            button=KINDS[kind],
            positive=kind == "more",
            csrf=csrf,
            footnote="Your page lists your saved papers."
            if kind == "save"
            else "It changes your next digests, not this one. Your settings page lists it.",
        )
        return web.with_csrf_cookie(page, csrf)

    def record(key: str, paper: Paper, kind: str) -> None:
        assert paper.ref is not None
        with web.stores.get() as store:
            if kind == "save":
                store.library.save(key, paper.ref, datetime.now(UTC))
            else:
                store.feedback.set(key, paper.ref, kind, datetime.now(UTC))

    async def feedback(request: Request) -> Response:
        found = await about(request)
        if isinstance(found, Response):
            return found
        bearer, paper, kind = found
        refused = web.csrf_refused(request, await web.form(request))
        if refused:
            return refused
        await run_in_threadpool(record, bearer.key, paper, kind)
        if kind == "save":
            return web.pages.page(
                request,
                200,
                "Saved",
                f"“{paper.title}” is among your saved papers.",
                link=web.links.manage(bearer.key) + "#saved",
                link_text="See them, and download them as BibTeX or RIS",
            )
        return web.pages.page(
            request,
            200,
            "Thank you",
            f"You will get {'more' if kind == 'more' else 'fewer'} papers like “{paper.title}”.",
            link=web.links.manage(bearer.key),
            link_text="See and undo what you said",
        )

    return [
        Route(links.VIEW, view, methods=["GET"]),
        Route(links.FEEDBACK, feedback_page, methods=["GET"]),
        Route(links.FEEDBACK, feedback, methods=["POST"]),
    ]
