"""What every area of the web app shares, built once per process: the settings, the signer, the store
connections, the pages, and the few checks every acting route makes (whose link this is, the CSRF token).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from digest import links
from digest.errors import TokenError
from digest.identity import legacy_variants, mailbox_key, shown
from digest.links import Links
from digest.settings import Settings
from digest.tokens import Bearer, Purpose, Signer
from digest.web.pages import CSRF_COOKIE, Pages
from digest.web.stores import ThreadStores
from digest.wiring import Services

FORM_FIELDS_MAX = 100  # fields one form may carry (the manage form has 14)
CONFIG_OWNED = "your digest is set up in the operator's configuration: reply to a digest to change it"


_REF = re.compile(r"[0-9]{1,18}")  # a paper's ref as the pages' buttons send it


def ref_of(form: dict[str, str]) -> int | None:
    """The paper ref a form's button sent (``ref``), or None when it is not one.

    >>> ref_of({"ref": "42"}), ref_of({"ref": "²"}), ref_of({})
    (42, None, None)
    """
    given = form.get("ref", "")
    return int(given) if _REF.fullmatch(given) else None


def sentence(text: str) -> str:
    """``text`` as a sentence on a page: its first letter upper-case, a full stop at its end.

    >>> sentence("the file is not UTF-8 text; export it as UTF-8")
    'The file is not UTF-8 text; export it as UTF-8.'
    """
    text = text.strip()
    return f"{text[:1].upper()}{text[1:]}{'' if text.endswith(('.', '!', '?')) else '.'}"


@dataclass
class Web:
    """The app's state: see the module's docstring."""

    services: Services
    signer: Signer
    stores: ThreadStores
    pages: Pages
    declared: frozenset[str] = field(default_factory=frozenset)  # config readers' keys: the config owns them

    @classmethod
    def build(cls, services: Services) -> Web:
        """The state over this process's ``services``; ConfigError if the signing keys are missing or weak."""
        settings = services.settings
        pages = Pages(settings.sender.split("<")[0].strip().strip('"') or "Paper Digest")
        return cls(
            services,
            services.signer,
            ThreadStores(settings.database),
            pages,
            frozenset(mailbox_key(s.email) for s in settings.subscribers),
        )

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @cached_property
    def links(self) -> Links:
        """The reader's links as paths, for the app's own pages."""
        return Links(self.signer)

    @property
    def secure_cookie(self) -> bool:
        return (self.settings.base_url or "").startswith("https://")

    def bearer(self, purpose: Purpose, token: str) -> Bearer | None:
        """Whom ``token`` acts for, or None for a forged, altered or other-purpose one. A link signed before
        mailbox keys (``Bearer.legacy``) counts only when no other subscriber could be meant by it."""
        try:
            found = self.signer.read(purpose, token)
        except TokenError:
            return None
        if found.legacy:
            variants = legacy_variants(found.key)
            if variants:
                with self.stores.get() as store:
                    if any(store.readers.get(v) is not None for v in variants):
                        return None
        return found

    def key_of(self, request: Request, purpose: Purpose) -> str | None:
        """The mailbox the request's ``{token}`` was made for with ``purpose``; None for a forged, altered or
        other-purpose one."""
        found = self.bearer(purpose, request.path_params["token"])
        return found.key if found is not None else None

    async def acting_post(self, request: Request, purpose: Purpose) -> tuple[str, dict[str, str]] | Response:
        """(mailbox key, form) of a POST under a ``purpose`` link that carries the page's CSRF token; else
        the page to answer (the invalid link's, or the expired form's)."""
        key = self.key_of(request, purpose)
        if key is None:
            return self.invalid(request)
        form = await self.form(request)
        return self.csrf_refused(request, form) or (key, form)

    async def ref_post(self, request: Request, act: Callable[[str, int], None]) -> Response | None:
        """A manage-page POST about one paper (the form's ``ref``), CSRF-checked under the signed link:
        ``act(mailbox key, ref)`` done in a worker thread (a write may wait for a run's transaction) and
        None; else the answer to give (the invalid link's, the expired form's, or 400 for a bad ref)."""
        posted = await self.acting_post(request, Purpose.MANAGE)
        if isinstance(posted, Response):
            return posted
        key, form = posted
        ref = ref_of(form)
        if ref is None:
            return PlainTextResponse("ref must be a paper's number", status_code=400)
        await run_in_threadpool(act, key, ref)
        return None

    async def form(self, request: Request) -> dict[str, str]:
        """The posted form's fields (no files; ``guards.BodyLimit`` has bounded its size already)."""
        posted = await request.form(max_files=0, max_fields=FORM_FIELDS_MAX)
        return {k: v for k, v in posted.items() if isinstance(v, str)}

    def csrf_refused(self, request: Request, form: dict[str, str]) -> Response | None:
        """None when the form's CSRF token matches its cookie (both present), else the 403 page."""
        cookie, given = request.cookies.get(CSRF_COOKIE, ""), form.get("csrf", "")
        if cookie and given and secrets.compare_digest(cookie.encode(), given.encode()):
            return None
        return self.pages.page(request, 403, "This form has expired", "Reload the page and send it again.")

    def with_csrf_cookie(self, response: Response, csrf: str) -> Response:
        """The response carrying the form's CSRF token in a cookie scripts and other sites cannot read."""
        response.set_cookie(
            CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=self.secure_cookie, path="/"
        )
        return response

    def no_subscription(self, request: Request, key: str) -> HTMLResponse:
        """The page for a valid link whose mailbox has no digest (any more)."""
        return self.pages.page(
            request,
            404,
            "No subscription here",
            f"{shown(key)} is not subscribed.",
            link=links.SIGNUP,
            link_text="Subscribe again from the form",
        )

    def invalid(self, request: Request) -> HTMLResponse:
        return self.pages.page(
            request,
            400,
            "This link is not valid",
            "It may have been changed or cut short. Use the link in a recent digest email.",
            link=links.LOST,
            link_text="Or have the link to your page emailed to you",
        )
