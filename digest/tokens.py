"""Signed tokens for every link that acts for a reader: one subscriber, one purpose, unguessable.

A token is the subscriber's address signed with HMAC (itsdangerous) under a salt that names its purpose, so
an unsubscribe token cannot be used to manage a profile, and no token can be made or altered without the
secret key. Keys rotate: ``DIGEST_SECRET_KEY`` signs, and every key in ``DIGEST_OLD_SECRET_KEYS`` still
verifies, so links in mail sent before a rotation keep working until the old key is dropped.

A token names a mailbox by its canonical key (``identity.mailbox_key``), never by the address as typed, so
one token acts for one mailbox whatever case or domain form the address was written in, and two mailboxes
never share a token. Links signed before keys existed carried ``str.casefold()`` of the address under the
older salt; ``read`` still accepts them (mail already sent keeps working) and says so (``Bearer.legacy``),
and the web app honours one only when no other subscriber could be meant (``identity.legacy_variants``).

Unsubscribe links carry no timestamp: a mail read months later must still unsubscribe, and a message's
bytes stay the same when it is sent again. A confirmation link is timed (48 hours by default) and carries
the profile the reader asked for, so nothing is stored until it is followed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from digest.errors import ConfigError, TokenError
from digest.identity import mailbox_key

MIN_KEY_LENGTH = 32  # characters; e.g. python3 -c "import secrets; print(secrets.token_urlsafe(32))"


class Purpose(StrEnum):
    """What a token lets its bearer do, for one subscriber."""

    UNSUBSCRIBE = "unsubscribe"
    MANAGE = "manage"  # the reader's own profile page: edit, pause, preview
    VIEW = "view"  # one sent digest in a browser: the token also names its day
    CONFIRM = "confirm"  # a subscription asked for on the web: timed, carries the profile asked for
    FEEDBACK = "feedback"  # "more / less like this" on one sent digest's papers: also names its day
    FEED = "feed"  # the reader's Atom feed: also carries their feed's nonce, which a reset changes


@dataclass(frozen=True, slots=True)
class Bearer:
    """Whom a token acts for: a mailbox key, the digest's day for ``VIEW`` and ``FEEDBACK`` tokens, the
    feed's nonce for ``FEED`` ones, and whether it is a link signed before keys (its key is then the
    casefolded address it carried)."""

    key: str
    day: date | None = None
    legacy: bool = False
    nonce: str | None = None


def check_keys(current: str | None, old: Sequence[str] = ()) -> list[str]:
    """The keys, oldest first and the signing key last, or a ConfigError saying how to make a good one.

    >>> check_keys("new-0123456789abcdefghijklmnopqrstuv", ["old-0123456789abcdefghijklmnopqrstuv"])[-1][:4]
    'new-'
    >>> check_keys("k" * 40)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    digest.errors.ConfigError: DIGEST_SECRET_KEY is too weak (fewer than 32 characters, or repetitive) (...)
    """
    fix = 'set it to a random string of 32 characters or more: python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
    if not current:
        raise ConfigError(
            "DIGEST_SECRET_KEY is not set; links that act for a reader are signed with it", hint=fix
        )
    for name, key in (("DIGEST_SECRET_KEY", current), *(("DIGEST_OLD_SECRET_KEYS", k) for k in old)):
        if len(key) < MIN_KEY_LENGTH or len(set(key)) < 8:
            raise ConfigError(
                f"{name} is too weak (fewer than {MIN_KEY_LENGTH} characters, or repetitive)", hint=fix
            )
    return [*old, current]


class Signer:
    """Makes and reads tokens with the given keys (oldest first, the signing key last)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)
        self._serializers: dict[str, URLSafeSerializer] = {}

    def _serializer(self, salt: str) -> URLSafeSerializer:
        # One per salt, made once: building one derives its keys, a tenth of a request's time.
        serializer = self._serializers.get(salt)
        if serializer is None:
            serializer = self._serializers[salt] = URLSafeSerializer(self.keys, salt=salt)
        return serializer

    def make(self, purpose: Purpose, email: str, day: date | None = None, *, nonce: str | None = None) -> str:
        """A token for the mailbox of ``email``, ``purpose`` and (a sent digest's) ``day``, or (a feed's)
        ``nonce``; the same inputs give the same token, untimed, and so do two spellings of one mailbox.

        >>> s = Signer(["a-long-enough-secret-key-for-the-doctest"])
        >>> s.read(Purpose.UNSUBSCRIBE, s.make(Purpose.UNSUBSCRIBE, "Ada@Example.org"))
        Bearer(key='ada@example.org', day=None, legacy=False, nonce=None)
        >>> s.make(Purpose.MANAGE, "Ada@example.org") == s.make(Purpose.MANAGE, "ada@EXAMPLE.org")
        True
        """
        key = mailbox_key(email)
        value = key if day is None else f"{key}|{day.isoformat()}"
        value = value if nonce is None else f"{key}|{nonce}"
        return str(self._serializer(f"digest.v2.{purpose}").dumps(value))

    def read(self, purpose: Purpose, token: str) -> Bearer:
        """Whom a token acts for; TokenError if forged, altered or of another purpose."""
        legacy = False
        try:
            value = self._serializer(f"digest.v2.{purpose}").loads(token)
        except BadSignature:
            try:
                value = self._serializer(f"digest.{purpose}").loads(token)
            except BadSignature as exc:
                raise TokenError("this link is not valid") from exc
            legacy = True
        if not isinstance(value, str):
            raise TokenError("this link is not valid")
        email, day, nonce = value, None, None
        if purpose == Purpose.FEED:
            email, _, nonce = value.rpartition("|")
            if not email or not nonce:
                raise TokenError("this link is not valid")
        if purpose in (Purpose.VIEW, Purpose.FEEDBACK):
            email, _, stamp = value.rpartition("|")
            try:
                day = date.fromisoformat(stamp)
            except ValueError as exc:
                raise TokenError("this link is not valid") from exc
        if legacy and not email.isascii():  # casefolded beyond ASCII: which mailbox is lost
            raise TokenError("this link is from an older version of this service: use a recent digest's link")
        return Bearer(mailbox_key(email), day, legacy, nonce)

    def make_timed(self, purpose: Purpose, data: dict[str, Any]) -> str:
        """A token carrying ``data`` (JSON), signed with the time it was made: see ``read_timed``."""
        return str(URLSafeTimedSerializer(self.keys, salt=f"digest.{purpose}").dumps(data))

    def read_timed(self, purpose: Purpose, token: str, max_age: int) -> dict[str, Any]:
        """The data of a timed token no older than ``max_age`` seconds; TokenError if forged or expired.

        >>> s = Signer(["a-long-enough-secret-key-for-the-doctest"])
        >>> s.read_timed(Purpose.CONFIRM, s.make_timed(Purpose.CONFIRM, {"email": "a@b.org"}), 60)
        {'email': 'a@b.org'}
        """
        try:
            value = URLSafeTimedSerializer(self.keys, salt=f"digest.{purpose}").loads(token, max_age=max_age)
        except SignatureExpired as exc:
            raise TokenError("this link has expired") from exc
        except BadSignature as exc:
            raise TokenError("this link is not valid") from exc
        if not isinstance(value, dict):
            raise TokenError("this link is not valid")
        return value
