"""The reader's library: their past digests (``/m/{token}/archive``) and all of one day's matches
(``/v/{token}/all``, linked from the email's "N more papers matched"); and, for someone deciding to sign
up, a sample digest (``/sample``) of the papers most upvoted lately.

The archive lists every digest sent to the reader, newest first: its date, how many papers it carried and
how many more matched, with links to it as sent and to all its matches. A day's matches are the digest's
papers and then the ones its cap left out, best first, as the run ranked them and kept them
(``Digest.rest``, up to ``REST_KEPT``); each with its reasons under the reader's profile now and those
its digest's row kept (the liked paper or description a paper chosen by meaning is close to). Both read
only, on the event loop (see ``reader``).
"""

from __future__ import annotations

import weakref
from datetime import UTC, date, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import links
from digest.email.entries import tldr_for
from digest.models import Digest, Match, Paper, Profile, Reason, Subscriber
from digest.run.recall import explained, kept_by_ref
from digest.selection.index import PaperIndex
from digest.tokens import Purpose
from digest.web.feed import not_modified, version_of
from digest.web.pages import shown_paper
from digest.web.sent import VIEW_CSP
from digest.web.state import Web
from digest.web.stores import PoolCache

SAMPLE_PAPERS = 5  # papers in the sample digest the sign-up page links


def long_date(day: date) -> str:
    """``"Monday 7 December 2026"``.

    >>> long_date(date(2026, 12, 7))
    'Monday 7 December 2026'
    """
    return f"{day:%A} {day.day} {day:%B %Y}"


def entries_of(
    papers: list[Paper],
    profile: Profile,
    in_digest: int,
    summaries: str | None = None,
    kept: dict[int, list[Reason]] | None = None,
) -> list[dict[str, Any]]:
    """What the page shows of each paper: the email's entry (title and abstract highlighted for the
    keywords it matches, its TL;DR where ``summaries`` names the operator's language), its reasons (with
    those its digest's row ``kept``), and whether it was among the digest's first ``in_digest``."""
    out = []
    for i, paper in enumerate(papers):
        match = explained(paper, profile, kept or {})
        out.append(
            {
                **shown_paper(paper, match.matched, match.by, tldr_for(paper, profile.language, summaries)),
                "reasons": match.why(profile.trending),
                "sent": i < in_digest,
            }
        )
    return out


def library_routes(web: Web, pools: PoolCache) -> list[Route]:
    def archive_of(key: str) -> tuple[Subscriber | None, list[dict[str, Any]]]:
        with web.stores.get() as store:
            subscriber = store.readers.get(key)
            rows = store.outbox.sent_digests(key) if subscriber else []
        views = [web.links.view(key, row.day) for row in rows]
        return subscriber, [
            {
                "day": long_date(row.day),
                "papers": len(row.refs),
                "more": row.more,
                "view": view,
                "all": links.beside(view, links.VIEW, links.VIEW_ALL),
            }
            for row, view in zip(rows, views, strict=True)
        ]

    async def archive(request: Request) -> Response:
        """The past digests; a browser or a script asking again with the ETag gets 304 (see ``feed``)."""
        found = web.bearer(Purpose.MANAGE, request.path_params["token"])
        if found is None:
            return web.invalid(request)
        current = version_of(web, found.key)
        if current is None:
            return web.no_subscription(request, found.key)
        headers = current.headers("archive")
        if not_modified(request, headers["ETag"], current.modified):
            return Response(status_code=304, headers=headers)
        subscriber, digests = archive_of(found.key)
        if subscriber is None:
            return web.no_subscription(request, found.key)
        page = web.pages.page(
            request,
            200,
            "Your past digests",
            f"Every digest sent to {subscriber.email}, newest first."
            if digests
            else f"No digest has been sent to {subscriber.email} yet.",
            template="archive.html",
            digests=digests,
            manage=links.MANAGE.format(token=request.path_params["token"]),
        )
        page.headers.update(headers)
        return page

    def matches_of(key: str, day: date) -> tuple[Subscriber | None, list[dict[str, Any]], int]:
        """The reader, the entries of all that day's kept matches, and how many more matched than kept."""
        with web.stores.get() as store:
            subscriber = store.readers.get(key)
            row = store.outbox.sent_message(key, day) if subscriber else None
            papers = store.papers.by_refs([*row.refs, *row.rest]) if row else []
        if subscriber is None or row is None:
            return None, [], 0
        entries = entries_of(
            papers,
            subscriber.profile,
            len(row.refs),
            web.services.renderer.language,
            kept_by_ref(row.reasons),
        )
        return subscriber, entries, max(row.more - len(row.rest), 0)

    async def all_matches(request: Request) -> Response:
        found = web.bearer(Purpose.VIEW, request.path_params["token"])
        if found is None or found.day is None:
            return web.invalid(request)
        subscriber, entries, unkept = matches_of(found.key, found.day)
        if subscriber is None or not entries:
            return web.pages.page(
                request, 404, "This digest is not here", "It may have been deleted with your data."
            )
        sent = sum(1 for e in entries if e["sent"])
        return web.pages.page(
            request,
            200,
            f"All {len(entries) + unkept} matches of {long_date(found.day)}",
            f"The {sent} paper{'s' if sent != 1 else ''} of your digest, then the ones it had no room for,"
            " best first.",
            template="matches.html",
            entries=entries,
            unkept=unkept,
            view=links.VIEW.format(token=request.path_params["token"]),
        )

    def sample_html(pool: PaperIndex, today: date) -> str | None:
        """A digest of the papers most upvoted lately (the preview pool's), for someone deciding to sign up."""
        top = sorted(pool.papers, key=lambda p: -(p.upvotes or 0))[:SAMPLE_PAPERS]
        if not top:
            return None
        reader = Subscriber("you@example.org", profile=Profile(max_papers=SAMPLE_PAPERS))
        return web.services.renderer.sample(Digest(reader, tuple(Match(p, 0) for p in top), today))

    made: list[tuple[weakref.ref[PaperIndex], date, str | None]] = []  # the sample of a pool and a day

    async def sample(request: Request) -> Response:
        """The sample digest: made again only when the preview pool or the day changes, so a public page
        costs a stranger's request no query and no render."""
        pool, today = await pools.get(), datetime.now(UTC).date()
        if not made or made[0][0]() is not pool or made[0][1] != today:
            made[:] = [(weakref.ref(pool), today, await run_in_threadpool(sample_html, pool, today))]
        html = made[0][2]
        if html is None:
            return web.pages.page(request, 404, "No sample yet", "The first listing has not been read yet.")
        return HTMLResponse(html, headers={"Content-Security-Policy": VIEW_CSP})

    return [
        Route(links.SAMPLE, sample, methods=["GET"]),
        Route(links.MANAGE_ARCHIVE, archive, methods=["GET"]),
        Route(links.VIEW_ALL, all_matches, methods=["GET"]),
    ]
