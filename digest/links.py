"""Every URL a reader is given, in one place: its path, the token's purpose, and how it is made.

The email (``email.render``) builds its links here, absolute under ``base_url``; the web app routes the
same paths (``ROUTES``) and links its own pages here, relative. So a path, or which purpose signs it,
changes in one place, and a link in a mail always lands on the route that reads it:

| path | what | token |
| --- | --- | --- |
| ``/`` | the sign-up form | none (CSRF) |
| ``/lost`` | mails a reader the link to their page | none (CSRF) |
| ``/sample`` | a sample digest of the papers most upvoted lately | none |
| ``/c/TOKEN`` | confirm a sign-up | ``CONFIRM``, timed, carries the profile asked for |
| ``/u/TOKEN`` (+ ``/resubscribe``, ``/weekly``) | one-click unsubscribe (RFC 8058), and undoing it or | ``UNSUBSCRIBE``: |
| | getting the digest weekly instead | on or off, never the profile |
| ``/m/TOKEN`` (+ ``/preview``, ``/feedback``, ``/resume``, ``/archive``, ``/feed``, ``/saved``, | the reader's | ``MANAGE`` |
| ``/saved.bib``, ``/saved.ris``, ``/import``, ``/data.json``, ``/delete``) | page and library | |
| ``/v/TOKEN`` (+ ``/all``) | a sent digest in a browser, and all that day's matches | ``VIEW``, with the day |
| ``/feed/TOKEN`` | the reader's Atom feed (``/m/TOKEN/feed``: a new address) | ``FEED``, with its epoch |
| ``/f/TOKEN/N/more``, ``/less``, ``/save`` | "more / less like this", "save" on paper N | ``FEEDBACK``, with the day |
"""

from __future__ import annotations

from datetime import date
from typing import Any

from digest.tokens import Purpose, Signer

SIGNUP = "/"
LOST = "/lost"
SAMPLE = "/sample"
CONFIRM = "/c/{token}"
UNSUBSCRIBE = "/u/{token}"
RESUBSCRIBE = "/u/{token}/resubscribe"
WEEKLY_INSTEAD = "/u/{token}/weekly"
MANAGE = "/m/{token}"
MANAGE_PREVIEW = "/m/{token}/preview"
MANAGE_UNDO = "/m/{token}/feedback"
MANAGE_RESUME = "/m/{token}/resume"
MANAGE_ARCHIVE = "/m/{token}/archive"
MANAGE_FEED = "/m/{token}/feed"
MANAGE_SAVED = "/m/{token}/saved"
MANAGE_SAVED_BIB = "/m/{token}/saved.bib"
MANAGE_SAVED_RIS = "/m/{token}/saved.ris"
MANAGE_IMPORT = "/m/{token}/import"
FEED = "/feed/{token}"
MANAGE_DATA = "/m/{token}/data.json"
MANAGE_DELETE = "/m/{token}/delete"
VIEW = "/v/{token}"
VIEW_ALL = "/v/{token}/all"
FEEDBACK = "/f/{token}/{number}/{kind}"


def prefix(pattern: str) -> str:
    """What every path of ``pattern`` starts with.

    >>> prefix(MANAGE)
    '/m/'
    """
    return pattern.split("{", 1)[0]


def beside(url: str, made_for: str, pattern: str) -> str:
    """The URL of ``pattern`` under the same token as ``url`` (made for ``made_for``): one signature serves
    a page and the pages beneath it.

    >>> beside("https://d.example/m/TOKEN", MANAGE, MANAGE_ARCHIVE)
    'https://d.example/m/TOKEN/archive'
    """
    assert pattern.startswith(made_for), (pattern, made_for)
    return url + pattern.removeprefix(made_for)


class Links:
    """The reader URLs signed with ``signer``, under ``base_url`` (``""``: paths, for the app's own pages).

    >>> links = Links(Signer(["a-long-enough-secret-key-for-the-doctest"]), "https://digest.example.org")
    >>> links.unsubscribe("Ada@example.org").startswith("https://digest.example.org/u/")
    True
    >>> links.relative().manage("ada@example.org").startswith("/m/")
    True
    """

    def __init__(self, signer: Signer, base_url: str = "") -> None:
        self.signer = signer
        self.base_url = base_url.rstrip("/")

    def relative(self) -> Links:
        """The same links as paths, for the app's own pages."""
        return Links(self.signer, "")

    def _url(self, pattern: str, purpose: Purpose, email: str, day: date | None = None) -> str:
        return self.base_url + pattern.format(token=self.signer.make(purpose, email, day))

    def unsubscribe(self, email: str) -> str:
        return self._url(UNSUBSCRIBE, Purpose.UNSUBSCRIBE, email)

    def manage(self, email: str) -> str:
        return self._url(MANAGE, Purpose.MANAGE, email)

    def view(self, email: str, day: date) -> str:
        """One sent digest (of ``day``) in a browser."""
        return self._url(VIEW, Purpose.VIEW, email, day)

    def feedback(self, email: str, day: date) -> str:
        """``/f/TOKEN``: the email adds ``/N/more`` or ``/N/less`` per paper. One signature per email, not
        per paper: the app checks N against the digest as it was sent."""
        return self._url(FEEDBACK.split("/{number}")[0], Purpose.FEEDBACK, email, day)

    def feed(self, email: str, epoch: int) -> str:
        """The reader's Atom feed; ``epoch`` counts their resets (``library.feed_epoch``): a reset makes a
        new URL and the old one answers 410."""
        return self.base_url + FEED.format(token=self.signer.make(Purpose.FEED, email, nonce=str(epoch)))

    def confirm(self, data: dict[str, Any]) -> str:
        """A timed link that carries what a reader asked for on the sign-up form."""
        return self.base_url + CONFIRM.format(token=self.signer.make_timed(Purpose.CONFIRM, data))
