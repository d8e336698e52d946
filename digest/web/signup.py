"""Signing up on the web: the form (``/``), the confirmation link (``/c/{token}``), and the thread that mails
the confirmations.

The form is CSRF-protected (a random token in a SameSite=Strict cookie and in the form); the request is
checked like ``digest subscribe`` and mailed as a confirmation link (double opt-in, see ``subscriptions``);
the answer is the same whether the address is known or not. Limits, counted in the store so every process
and host shares them: 3 confirmation emails per address an hour, 20 requests per client an hour (the
client is the connection's address, or what a proxy named in ``[web] trusted_proxies`` says), and
``[web] confirmations_per_hour`` emails in all, so no header a stranger sends can turn the form into a relay.

Confirmation emails are handed to a ``ConfirmationMailer``: one thread of its own sends them, so a relay
that stalls delays only confirmations, never a reader's page, an unsubscribe or another sign-up (they
used to be sent on the request's thread pool, which a stalled relay could fill).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import links
from digest.cadence import CADENCES, cadence_label
from digest.email.mime import Outgoing
from digest.email.transport import Transport
from digest.errors import DeliveryError, ProfileError, SubscriberError, TokenError, TransientDeliveryError
from digest.identity import mailbox_key, normalise_email
from digest.models import DEFAULT_MAX_PAPERS
from digest.run.planning import reader_when
from digest.subscriptions import (
    ASK_WINDOW,
    ASKS_PER_ADDRESS,
    ASKS_PER_CLIENT,
    confirmation_message,
    page_link_message,
    read_confirmation,
    unknown_seeds,
)
from digest.subscriptions import Request as SignupRequest
from digest.web.forms import FormError, form_error
from digest.web.pages import CSRF_COOKIE
from digest.web.state import Web

log = logging.getLogger("digest.web")


class ConfirmationMailer:
    """Sends queued messages from one thread of its own (see the module's docstring).

    ``submit`` never waits: it answers False when ``capacity`` messages are already waiting (the relay is
    down or slow), and the page says to try again later. A transient failure is tried ``attempts`` times,
    ``backoff`` seconds apart; what is still queued at shutdown is given ``close``'s grace, then dropped
    with a log line (a confirmation is asked for again from the form; nothing of a reader's is lost).
    """

    def __init__(
        self,
        transport: Callable[[], Transport],
        capacity: int = 500,
        attempts: int = 3,
        backoff: float = 5.0,
    ) -> None:
        self.transport, self.attempts, self.backoff = transport, attempts, backoff
        self.waiting: queue.Queue[Outgoing | None] = queue.Queue(capacity)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="digest-confirmations", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, message: Outgoing) -> bool:
        try:
            self.waiting.put_nowait(message)
        except queue.Full:
            return False
        return True

    def close(self, grace: float = 5.0) -> None:
        """Stop after sending what is queued, waiting at most ``grace`` seconds."""
        if not self.thread.is_alive():
            return
        deadline = time.monotonic() + grace
        while self.waiting.qsize() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stopping.set()
        left = self.waiting.qsize()
        if left:
            log.warning(
                "%d confirmation email(s) not sent before shutdown; their readers can ask again", left
            )
        with contextlib.suppress(queue.Full):
            self.waiting.put_nowait(None)
        self.thread.join(max(0.0, deadline - time.monotonic()) + 0.1)

    def _run(self) -> None:
        while not self.stopping.is_set():
            message = self.waiting.get()
            if message is None:
                return
            batch = [message]
            while len(batch) < 50:  # what else is waiting goes over the same connection
                try:
                    more = self.waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.stopping.set()
                    break
                batch.append(more)
            self._send(batch)

    def _send(self, batch: list[Outgoing]) -> None:
        failures = 0
        while batch:
            try:
                with self.transport() as transport:
                    while batch:
                        transport.send(batch[0])
                        batch.pop(0)
                    transport.flush()
            except TransientDeliveryError as exc:
                failures += 1
                if failures == self.attempts or self.stopping.wait(self.backoff):
                    log.warning("%d confirmation email(s) not sent: %s", len(batch), exc.reason)
                    return
            except DeliveryError as exc:  # refused for good (that address): the others go on
                log.warning("a confirmation email was refused: %s", exc.reason)
                batch.pop(0)
            except Exception:
                log.exception("sending %d confirmation email(s) failed", len(batch))
                return


def signup_routes(web: Web, mailer: ConfirmationMailer) -> list[Route]:
    settings = web.settings
    default_when = settings.default_when()

    def allowed(what: str, limit: int) -> bool:
        with web.stores.get() as store:
            return store.limits.allow(what, limit, ASK_WINDOW, time.time())

    def form_page(
        request: Request, status: int, csrf: str, form: dict[str, str], error: FormError | None = None
    ) -> Response:
        response = web.pages.page(
            request,
            status,
            "Get new papers on your topics by email",
            "One email with the new research papers that match your topics, at the hour and as often as you"
            " choose, never the same paper twice.",
            template="subscribe.html",
            csrf=csrf,
            form=form,
            error=error.text if error else "",
            error_field=error.field if error else "",
            when=default_when.every(),
            sources=[s.name for s in settings.sources] or ["none configured yet"],
            cadences=[("", f"As the digest: {default_when.every()}")]
            + [(c, cadence_label(c)) for c in CADENCES],
            default_papers=DEFAULT_MAX_PAPERS,
        )
        return web.with_csrf_cookie(response, csrf)

    async def show_form(request: Request) -> Response:
        return form_page(request, 200, secrets.token_urlsafe(24), {})

    def within_limits(email: str) -> str:
        """ "ok", or why no mail may go to ``email`` now: "limited" (the address asked too often: answered
        as "sent", so nobody learns of it) or "capped" (``[web] confirmations_per_hour`` in all)."""
        if not allowed(f"address:{mailbox_key(email)}", ASKS_PER_ADDRESS):
            return "limited"
        if not allowed("confirmations", settings.web.confirmations_per_hour):
            log.warning(
                "sign-up: [web] confirmations_per_hour (%d) reached; confirmations wait for the next hour",
                settings.web.confirmations_per_hour,
            )
            return "capped"
        return "ok"

    def known(email: str) -> bool:
        with web.stores.get() as store:
            return store.readers.get(email) is not None

    def page_link(email: str, *, signing_up: bool) -> Outgoing:
        assert web.services.links is not None  # there is a base_url
        link = web.services.links.manage(email)
        return page_link_message(
            settings.sender, web.services.dkim, email, link, datetime.now(UTC), signing_up=signing_up
        )

    def ask(asked: SignupRequest) -> str:
        """Mail ``asked`` their confirmation link, or the link to their page when the address already has a
        digest (a sign-up never replaces a profile), within the limits: "sent", "limited", "capped" or
        "busy"."""
        outcome = within_limits(asked.email)
        if outcome != "ok":
            return outcome
        if known(asked.email):
            message = page_link(asked.email, signing_up=True)
        else:
            assert web.services.links is not None  # there is a base_url
            now = datetime.now(UTC)
            link = web.services.links.confirm(asked.token_data(now))
            message = confirmation_message(settings.sender, web.services.dkim, asked, link, now)
        return "sent" if mailer.submit(message) else "busy"

    def remind(email: str) -> str:
        """Mail ``email`` the link to their page if they have a digest: the same outcomes as ``ask``, and the
        same for an unknown address."""
        outcome = within_limits(email)
        if outcome != "ok":
            return outcome
        if not known(email):
            return "sent"  # what an address with a digest is answered
        return "sent" if mailer.submit(page_link(email, signing_up=False)) else "busy"

    async def mail_and_answer(request: Request, work: Callable[[], str], said: str) -> Response:
        """Run ``work`` (it mails someone) off the event loop, and answer alike for every address."""
        # The mailed link is built from base_url only, never from the Host header a client sends.
        if not settings.base_url:
            return web.pages.page(
                request, 503, "Sign-up is not set up here", "The operator has to set base_url."
            )
        outcome = await run_in_threadpool(work)
        if outcome in ("capped", "busy"):
            return web.pages.page(
                request, 503, "We could not send the email now", "Please try again in an hour."
            )
        return web.pages.page(
            request,
            200,
            "Check your inbox",
            said,
            footnote="Nothing arrives? Look in the spam folder, or send the form again in a while.",
        )

    async def client_refused(request: Request, form: dict[str, str]) -> Response | None:
        """The answer to a form without its CSRF token, or from a client that asked too often; else None."""
        refused = web.csrf_refused(request, form)
        if refused:
            return refused
        client = request.client.host if request.client else "unknown"
        if not await run_in_threadpool(allowed, f"client:{client}", ASKS_PER_CLIENT):
            return web.pages.page(request, 429, "Too many requests", "Please try again in an hour.")
        return None

    async def subscribe(request: Request) -> Response:
        form = await web.form(request)
        refused = await client_refused(request, form)
        if refused:
            return refused
        try:
            asked = SignupRequest.from_form(form)
        except (ProfileError, SubscriberError) as exc:
            return form_page(request, 400, request.cookies[CSRF_COOKIE], form, error=form_error(exc))
        # The same answer whether the address is new, known, or has asked too often: no enumeration.
        said = (
            f"We sent an email to {asked.email}. Follow its link within 48 hours to start your digest"
            " (if the address has a digest already, the email links to its page instead)."
        )
        return await mail_and_answer(request, lambda: ask(asked), said)

    def lost_page(request: Request, status: int, csrf: str, email: str = "", error: str = "") -> Response:
        response = web.pages.page(
            request,
            status,
            "Lost the link to your page?",
            "Give the address your digest goes to: we email it the link to your page, where you change your"
            " topics, pause, resume or leave.",
            template="lost.html",
            csrf=csrf,
            email=email,
            error=error,
        )
        return web.with_csrf_cookie(response, csrf)

    async def show_lost(request: Request) -> Response:
        return lost_page(request, 200, secrets.token_urlsafe(24))

    async def lost(request: Request) -> Response:
        form = await web.form(request)
        refused = await client_refused(request, form)
        if refused:
            return refused
        try:
            email = normalise_email(form.get("email", ""))
        except SubscriberError as exc:
            return lost_page(
                request, 400, request.cookies[CSRF_COOKIE], form.get("email", ""), form_error(exc).text
            )
        said = f"If {email} gets a digest here, we sent it the link to its page."
        return await mail_and_answer(request, lambda: remind(email), said)

    def confirmed(request: Request) -> SignupRequest | Response:
        try:
            return read_confirmation(web.signer, request.path_params["token"])
        except TokenError as exc:
            return web.pages.page(
                request,
                400,
                f"This link {exc.message.removeprefix('this link ')}",
                link=links.SIGNUP,
                link_text="Subscribe again from the form",
            )

    def what_of(asked: SignupRequest) -> str:
        """``"a digest daily at 07:00 (UTC) on: RAG, agents"``: the schedule and topics asked for."""
        what = "the trending papers" if asked.profile.trending else ", ".join(asked.profile.topics)
        return f"a digest {reader_when(asked.subscriber(), default_when).describe()} on: {what}"

    async def confirm_page(request: Request) -> Response:
        """GET and HEAD: one button, nothing changes (mail scanners and link previews fetch links)."""
        asked = confirmed(request)
        if isinstance(asked, Response):
            return asked
        return web.pages.page(
            request,
            200,
            "Confirm your subscription",
            f"{asked.email} will get {what_of(asked)}.",
            action=request.url.path,
            button="Confirm",
            positive=True,
        )

    def add_now(asked: SignupRequest) -> list[str] | None:
        """Store the reader asked for, unless their mailbox has a profile already (then None: it stays as
        its owner left it); the seeds no stored paper answers to yet."""
        with web.stores.get() as store:
            if not store.readers.add_new(asked.subscriber(), datetime.now(UTC), asked=asked.asked):
                return None
            return unknown_seeds(store, asked.profile.seeds)

    async def confirm(request: Request) -> Response:
        asked = confirmed(request)
        if isinstance(asked, Response):
            return asked
        unknown = await run_in_threadpool(add_now, asked)
        if unknown is None:
            return web.pages.page(
                request,
                200,
                "You already have a digest",
                f"{asked.email} has a digest here already, so nothing changed: your topics and schedule are as"
                " you left them.",
                link=web.links.manage(asked.email),
                link_text="Open your page to change them, or to resume your digest",
            )
        notes = [
            f"Not among the papers we know yet: {', '.join(unknown)}. They count once a listing brings them."
        ]
        return web.pages.page(
            request,
            200,
            "You are subscribed",
            f"{asked.email} gets {what_of(asked)}.",
            *(notes if unknown else []),
            link=web.links.manage(asked.email),
            link_text="Tune your topics and preview your digest",
            footnote="Every digest links to this page, and to unsubscribe in one click.",
        )

    return [
        Route(links.SIGNUP, show_form, methods=["GET"]),
        Route(links.SIGNUP, subscribe, methods=["POST"]),
        Route(links.CONFIRM, confirm_page, methods=["GET"]),
        Route(links.CONFIRM, confirm, methods=["POST"]),
        Route(links.LOST, show_lost, methods=["GET"]),
        Route(links.LOST, lost, methods=["POST"]),
    ]
