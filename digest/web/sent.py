""" "More like this" / "Less like this" (#15): the links under each paper of a digest.

``/f/{token}/{n}/{more|less}``: the token signs the reader's address and the digest's date (one signature
per email); ``n`` is the paper's number in that digest, checked against the digest as it was sent, so a
link can only ever speak for its reader, about a paper they were sent. A GET shows the paper and one
button and changes nothing (mail scanners fetch links); the button's POST (CSRF-protected, like every
form here) records the opinion, which moves the reader's ranking from the next digest on. The manage page
lists what they said and undoes it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest.delivery import make_renderer
from digest.errors import TokenError
from digest.models import Digest, Paper
from digest.select import explain
from digest.settings import Settings
from digest.tokens import Purpose, Signer
from digest.web.pages import CSRF_COOKIE, Pages
from digest.web.stores import ThreadStores

VIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
KINDS = {"more": "More papers like this", "less": "Fewer papers like this"}


def sent_digest_routes(
    settings: Settings,
    signer: Signer,
    stores: ThreadStores,
    pages: Pages,
    csrf_refused: Callable[[Request, dict[str, str]], Response | None],
    with_csrf_cookie: Callable[[Response, str], Response],
    manage_link: Callable[[str], str],
) -> list[Route]:
    renderer = make_renderer(settings)

    def invalid(request: Request) -> Response:
        return pages.page(
            request, 400, "This link is not valid", "It may have been changed, or its digest deleted."
        )

    def sent_digest_html(email: str, day: date) -> str | None:
        with stores.get() as store:
            subscriber = store.subscriber(email)
            row = store.sent_message(email, day) if subscriber else None
            papers = store.papers_by_refs(row.refs) if row else []
        if subscriber is None or row is None or not papers:
            return None
        digest = Digest(subscriber, tuple(explain(p, subscriber.profile) for p in papers), day, more=row.more)
        body = renderer.render(digest, datetime.now(UTC), message_id=row.message_id).get_body(("html",))
        return str(body.get_content()) if body is not None else None

    async def view(request: Request) -> Response:
        """A sent digest as its HTML part: only the reader's own, only one that was sent."""
        try:
            email, _, day = signer.read(Purpose.VIEW, request.path_params["token"]).rpartition("|")
            html = await run_in_threadpool(sent_digest_html, email, date.fromisoformat(day))
        except (TokenError, ValueError):
            return invalid(request)
        if html is None:
            return pages.page(
                request, 404, "This digest is not here", "It may have been deleted with your data."
            )
        # The email's own inline styles are allowed here, and nothing else (no script, no image, no form).
        return HTMLResponse(html, headers={"Content-Security-Policy": VIEW_CSP})

    def sent_paper(email: str, day: date, number: int) -> Paper | None:
        with stores.get() as store:
            row = store.sent_message(email, day)
            if row is None or not 1 <= number <= len(row.refs):
                return None
            found = store.papers_by_refs([row.refs[number - 1]])
        return found[0] if found else None

    def record(email: str, paper: Paper, kind: str) -> None:
        assert paper.ref is not None
        with stores.get() as store:
            store.set_feedback(email, paper.ref, kind, datetime.now(UTC))

    async def feedback(request: Request) -> Response:
        kind = request.path_params["kind"]
        try:
            email, _, day = signer.read(Purpose.FEEDBACK, request.path_params["token"]).rpartition("|")
            number = int(request.path_params["number"])
            paper = await run_in_threadpool(sent_paper, email, date.fromisoformat(day), number)
        except (TokenError, ValueError):
            paper = None
        if paper is None or kind not in KINDS:
            return invalid(request)
        if request.method == "GET":  # never acts: scanners and previews fetch links
            csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
            page = pages.page(
                request,
                200,
                f"{KINDS[kind]}?",
                paper.title,
                action=request.url.path,
                button=KINDS[kind],
                positive=kind == "more",
                csrf=csrf,
                footnote="It changes your next digests, not this one. Your settings page lists it.",
            )
            return with_csrf_cookie(page, csrf)
        form = {k: str(v) for k, v in (await request.form()).items()}
        refused = csrf_refused(request, form)
        if refused:
            return refused
        await run_in_threadpool(record, email, paper, kind)
        return pages.page(
            request,
            200,
            "Thank you",
            f"You will get {'more' if kind == 'more' else 'fewer'} papers like “{paper.title}”.",
            link=manage_link(email),
            link_text="See and undo what you said",
        )

    return [
        Route("/v/{token}", view, methods=["GET"]),
        Route("/f/{token}/{number}/{kind}", feedback, methods=["GET", "POST"]),
    ]
