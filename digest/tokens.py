"""Signed tokens for every link that acts for a reader: one subscriber, one purpose, unguessable.

A token is the subscriber's address signed with HMAC (itsdangerous) under a salt that names its purpose, so
an unsubscribe token cannot be used to manage a profile, and no token can be made or altered without the
secret key. Keys rotate: ``DIGEST_SECRET_KEY`` signs, and every key in ``DIGEST_OLD_SECRET_KEYS`` still
verifies, so links in mail sent before a rotation keep working until the old key is dropped.

Unsubscribe links carry no timestamp: a mail read months later must still unsubscribe, and a message's
bytes stay the same when it is sent again. A confirmation link is timed (48 hours by default) and carries
the profile the reader asked for, so nothing is stored until it is followed.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from digest.errors import ConfigError, TokenError

MIN_KEY_LENGTH = 32  # characters; e.g. python3 -c "import secrets; print(secrets.token_urlsafe(32))"


class Purpose(StrEnum):
    """What a token lets its bearer do, for one subscriber."""

    UNSUBSCRIBE = "unsubscribe"
    MANAGE = "manage"  # the reader's own profile page: edit, pause, preview
    VIEW = "view"  # one sent digest in a browser: the value is "address|YYYY-MM-DD"
    CONFIRM = "confirm"  # a subscription asked for on the web: timed, carries the profile asked for
    FEEDBACK = "feedback"  # "more / less like this" on one sent digest's papers: "address|YYYY-MM-DD"


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
        self._serializers: dict[Purpose, URLSafeSerializer] = {}

    def _serializer(self, purpose: Purpose) -> URLSafeSerializer:
        # One per purpose, made once: building one derives its keys, a tenth of a request's time.
        serializer = self._serializers.get(purpose)
        if serializer is None:
            serializer = self._serializers[purpose] = URLSafeSerializer(self.keys, salt=f"digest.{purpose}")
        return serializer

    def make(self, purpose: Purpose, email: str) -> str:
        """A token for ``email`` and ``purpose`` (the same inputs give the same token, untimed).

        >>> s = Signer(["a-long-enough-secret-key-for-the-doctest"])
        >>> s.read(Purpose.UNSUBSCRIBE, s.make(Purpose.UNSUBSCRIBE, "Ada@example.org"))
        'ada@example.org'
        """
        return str(self._serializer(purpose).dumps(email.casefold()))

    def read(self, purpose: Purpose, token: str) -> str:
        """The (casefolded) address a token was made for; TokenError if forged, altered or of another purpose."""
        try:
            value = self._serializer(purpose).loads(token)
        except BadSignature as exc:
            raise TokenError("this link is not valid") from exc
        if not isinstance(value, str):
            raise TokenError("this link is not valid")
        return value

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
