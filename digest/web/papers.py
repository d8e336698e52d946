"""The reader's papers in and out of their reference manager, on their page (all under the manage link):

- ``POST /m/{token}/saved``: take a saved paper out (papers are saved with "Save" in a digest, ``sent``);
- ``GET /m/{token}/saved.bib`` and ``/saved.ris``: the saved papers as BibTeX or RIS, to import in Zotero,
  Mendeley or JabRef;
- ``POST /m/{token}/import``: a BibTeX, RIS or Zotero CSV export (one file, at most ``FILE_MAX``) whose
  papers become seed papers of the profile, saying which entries were recognised (``references``).

The POSTs carry the page's CSRF token; a reader declared in the operator's config cannot change their
profile here (the import answers so).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import links
from digest.errors import ReferenceFileError
from digest.models import Paper
from digest.profiles import SEEDS_MAX
from digest.references import FILE_MAX, Recognised, read_references, to_bibtex, to_ris
from digest.tokens import Purpose
from digest.web.state import CONFIG_OWNED, Web, sentence


def merged_seeds(have: tuple[str, ...], found: list[str]) -> tuple[tuple[str, ...], int]:
    """The profile's seeds with ``found`` added (each once, the profile's first), at most ``SEEDS_MAX``;
    and how many of ``found`` were new.

    >>> merged_seeds(("2501.00001",), ["2501.00001", "A title"])
    (('2501.00001', 'A title'), 1)
    """
    folded = {s.casefold() for s in have}
    new = [s for s in dict.fromkeys(found) if s.casefold() not in folded]
    return (*have, *new)[:SEEDS_MAX], max(0, min(len(new), SEEDS_MAX - len(have)))


def papers_routes(web: Web) -> list[Route]:
    def page_of(request: Request) -> str:
        return links.MANAGE.format(token=request.path_params["token"])

    def unsave_now(key: str, ref: int) -> None:
        with web.stores.get() as store:
            store.library.save(key, ref, datetime.now(UTC), keep=False)

    async def unsave(request: Request) -> Response:
        refused = await web.ref_post(request, unsave_now)
        return refused or RedirectResponse(f"{page_of(request)}#saved", status_code=303)

    def exporter(writer: Callable[[list[Paper]], str], media_type: str, filename: str) -> Callable[..., Any]:
        async def export(request: Request) -> Response:
            key = web.key_of(request, Purpose.MANAGE)
            if key is None:
                return web.invalid(request)
            with web.stores.get() as store:
                papers = [paper for paper, _ in store.library.saved(key)]
            return Response(
                writer(papers),
                media_type=media_type,
                headers={"Content-Disposition": f'attachment; filename="{filename}"'},
            )

        return export

    def add_seeds(key: str, recognised: Recognised) -> int | None:
        """Add what the file gave to the reader's seeds (nothing else of theirs changes): how many were
        new; None if they left."""
        with web.stores.get() as store:
            subscriber = store.readers.get(key)
            if subscriber is None:
                return None
            seeds, added = merged_seeds(subscriber.profile.seeds, recognised.seeds)
            store.readers.set_seeds(key, seeds, datetime.now(UTC))
        return added

    async def read_upload(request: Request) -> tuple[str, bytes] | Response:
        """(file name, at most ``FILE_MAX`` + 1 bytes) of the import form's file; else the page to answer.
        The form's files are closed when it is read."""
        async with request.form(max_files=1, max_fields=5) as posted:
            refused = web.csrf_refused(request, {k: v for k, v in posted.items() if isinstance(v, str)})
            if refused:
                return refused
            upload = posted.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                return web.pages.page(
                    request, 400, "No file", "Choose a .bib, .ris or .csv file to import.", **back_to(request)
                )
            return upload.filename, await upload.read(FILE_MAX + 1)

    def back_to(request: Request) -> dict[str, str]:
        return {"link": page_of(request), "link_text": "Back to your page"}

    async def import_file(request: Request) -> Response:
        key = web.key_of(request, Purpose.MANAGE)
        if key is None:
            return web.invalid(request)
        read = await read_upload(request)
        if isinstance(read, Response):
            return read
        filename, data = read
        if key in web.declared:
            return web.pages.page(request, 400, "Not here", sentence(CONFIG_OWNED), **back_to(request))
        try:
            recognised = read_references(data, filename)
        except ReferenceFileError as exc:
            return web.pages.page(
                request, 400, "This file cannot be read", sentence(exc.message), **back_to(request)
            )
        added = await run_in_threadpool(add_seeds, key, recognised) if recognised.seeds else 0
        if added is None:
            return web.no_subscription(request, key)
        return web.pages.page(
            request,
            200,
            "Seed papers imported",
            f"From {filename}: {recognised.summary()}.",
            f"{added} new seed paper{'s' if added != 1 else ''} added to your profile"
            + (f" (a profile keeps {SEEDS_MAX})." if added < len(recognised.seeds) else "."),
            **back_to(request),
        )

    return [
        Route(links.MANAGE_SAVED, unsave, methods=["POST"]),
        Route(
            links.MANAGE_SAVED_BIB,
            exporter(to_bibtex, "application/x-bibtex; charset=utf-8", "saved-papers.bib"),
            methods=["GET"],
        ),
        Route(
            links.MANAGE_SAVED_RIS,
            exporter(to_ris, "application/x-research-info-systems; charset=utf-8", "saved-papers.ris"),
            methods=["GET"],
        ),
        Route(links.MANAGE_IMPORT, import_file, methods=["POST"]),
    ]
