"""Every error digest raises on purpose, in one tree.

Callers catch the branch they can act on; the CLI catches ``DigestError`` and prints its message (never a
traceback) and picks the exit code. Each error says *where* (the config key, the source name, the recipient)
and, where there is one, *how to fix it*.

    DigestError
    ├── ConfigError            bad or missing configuration: names the key and the fix (exit 2)
    ├── LockedError            another run holds the lock: names the holder (exit 2)
    ├── ProfileError           an invalid keyword profile: names the subscriber and the keyword
    ├── KeywordError           one keyword that can never match (no subscriber known yet)
    ├── SubscriberError        unknown subscriber, bad address
    ├── SourceError            one listing source failed; the others still run
    │   ├── FetchError         unreachable, timed out, HTTP error status
    │   └── ParseError         malformed XML/JSON, empty body, an HTML error page
    ├── DeliveryError          one message was not accepted
    │   ├── TransientDeliveryError   4xx, dropped connection, timeout: retried next run
    │   │   └── ServerUnavailableError   no connection or no greeting: the rest waits for the next run
    │   ├── PermanentDeliveryError   5xx: not retried this run; counts towards bouncing only when
    │   │                            the recipient was at fault (not when our message was refused)
    │   └── DeliveryAbortedError     AUTH or TLS failure: delivery stops for the whole run
    ├── StoreError             the database is unusable: damaged, not writable, another app's, newer
    ├── RenderError            a digest cannot be made into a message (no paper in it, a bad header)
    ├── TokenError             a link's token is forged, altered, or for another purpose: refused, nothing done
    └── WorkerError            a worker process died mid-run (killed, out of memory); the next run goes on
"""

from __future__ import annotations

# How every command (and `digest serve`) exits: all went well; a later run retries something; it could not
# run (one line naming the setting or file and the fix); interrupted (Ctrl-C, as shells report SIGINT).
EXIT_OK, EXIT_RETRY, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 130


class DigestError(Exception):
    """Base of every error digest raises on purpose.

    ``hint`` is the sentence that tells the user how to fix it; ``str()`` includes it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(DigestError):
    """The configuration cannot be used. ``key`` is the dotted setting name, when one is at fault."""

    def __init__(self, message: str, *, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message, hint=hint)
        self.key = key


class LockedError(DigestError):
    """Another ``digest run`` holds the run lock."""


class ProfileError(DigestError):
    """A keyword profile is invalid; names the subscriber and the keyword."""

    def __init__(
        self, message: str, *, subscriber: str, keyword: str | None = None, field: str | None = None
    ) -> None:
        where = f"subscriber {subscriber}" + (f", keyword {keyword!r}" if keyword is not None else "")
        super().__init__(f"{where}: {message}")
        self.subscriber = subscriber
        self.keyword = keyword
        self.why = message  # the rule broken, without whose or which: what a form shows beside the field
        self.field = field  # the profile's field at fault (keywords, exclude, about, seeds…), when known


class KeywordError(DigestError):
    """A keyword that can never match; the message says why."""


class SubscriberError(DigestError):
    """A subscriber is unknown or its address is unusable."""


class SourceError(DigestError):
    """One listing source failed. ``source`` is its configured name."""

    def __init__(self, source: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"source {source!r}: {message}", hint=hint)
        self.source = source
        self.reason = message


class FetchError(SourceError):
    """The source's bytes could not be fetched (network, HTTP status, missing file)."""


class ParseError(SourceError):
    """The source's bytes are not a listing of the declared kind."""


class DeliveryError(DigestError):
    """One message was not accepted for ``recipient``."""

    def __init__(self, recipient: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{recipient}: {message}", hint=hint)
        self.recipient = recipient
        self.reason = message


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: a 4xx reply, a dropped connection, a timeout."""


class ServerUnavailableError(TransientDeliveryError):
    """The server cannot be reached or does not answer; no point trying the other recipients this run."""


class PermanentDeliveryError(DeliveryError):
    """The server refused the message for good (5xx).

    ``recipient_at_fault`` is False when the refusal was about our message or our sender (a size or
    content refusal, a refused MAIL FROM, a missing SMTPUTF8): then it must not count towards marking the
    subscriber as bouncing.
    """

    def __init__(
        self, recipient: str, message: str, *, hint: str | None = None, recipient_at_fault: bool = True
    ) -> None:
        super().__init__(recipient, message, hint=hint)
        self.recipient_at_fault = recipient_at_fault


class DeliveryAbortedError(DeliveryError):
    """Nothing more can be delivered this run (authentication or TLS failure); no retry within the run."""


class StoreError(DigestError):
    """The state database cannot be used."""


class RenderError(DigestError):
    """A digest cannot be made into a message: it has no paper, or a header cannot be made valid."""


class ReferenceFileError(DigestError):
    """A reference file (BibTeX, RIS, a Zotero CSV export) that cannot be read as one; the message says why."""


class TokenError(DigestError):
    """A signed token did not verify: forged, altered, or made for another purpose. Nothing is done."""


class WorkerError(DigestError):
    """A worker process died while delivering. The outbox makes this a crash like any other: what it had
    begun and not recorded is resent by the next run, with the same Message-IDs."""
