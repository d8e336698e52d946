"""The seam between a run's plan and its deliveries: a channel composes a reader's digest, addresses it and
sends it; the outbox loop (``delivery``) around it is the same for every channel.

- **compose**: the digest's content for this reader (an email's parts; a feed entry; a webhook's JSON),
  cut to what fits, with a Message-ID: the outbox records it before the send, and a resend after a crash
  carries the same one;
- **address**: where it goes (the email's To and its VERP envelope sender; a URL), fixed in the piece;
- **send**: hand the piece over; return when it was accepted, or raise a ``DeliveryError`` that says
  whether to retry (``TransientDeliveryError``), give up on this reader (``PermanentDeliveryError``) or
  stop the run (``DeliveryAbortedError``).

``idempotent``: sending one piece twice leaves one copy (a Maildir), so a batch may be sent, made durable
(``flush``) and recorded in one transaction; otherwise each acceptance is recorded at once.

The email channel is ``EmailChannel`` (the renderer, and a courier over a transport). Another channel is
one module with a class of this shape and one line in ``wiring.CHANNELS`` (or ``wiring.register_channel``,
or the entry-point group ``digest.channels``), named by ``[delivery] method``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from digest.email.render import Composed, Renderer
from digest.models import Digest
from digest.run.courier import Courier


class Piece(Protocol):
    """One composed digest, addressed: what the outbox records and the channel sends."""

    @property
    def digest(self) -> Digest:
        """The digest as it goes out (papers that did not fit are counted in ``more``)."""

    @property
    def message_id(self) -> str: ...


class Channel(Protocol):
    """Where a run's digests go (see the module's docstring)."""

    @property
    def idempotent(self) -> bool: ...

    def __enter__(self) -> Channel: ...
    def __exit__(self, *exc: object) -> None: ...
    def compose(self, digest: Digest, now: datetime, *, message_id: str | None = None) -> Piece: ...
    def send(self, piece: Piece) -> None: ...
    def flush(self) -> None:
        """Make what ``send`` accepted durable (before the run records it as sent)."""

    def describe(self) -> str: ...


class EmailChannel:
    """Digests as emails: rendered (``email.render``), addressed to the reader (To, and the VERP envelope
    sender when bounces are read), sent through a courier's retries over a transport (Maildir or SMTP)."""

    def __init__(self, renderer: Renderer, courier: Courier) -> None:
        self.renderer, self.courier = renderer, courier

    @property
    def idempotent(self) -> bool:
        return self.courier.transport.idempotent

    def __enter__(self) -> EmailChannel:
        self.courier.transport.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.courier.transport.__exit__(*exc)

    def compose(self, digest: Digest, now: datetime, *, message_id: str | None = None) -> Composed:
        return self.renderer.compose(digest, now, message_id=message_id)

    def send(self, piece: Piece) -> None:
        assert isinstance(piece, Composed)
        self.courier.send(piece.outgoing)

    def flush(self) -> None:
        self.courier.transport.flush()

    def describe(self) -> str:
        return self.courier.transport.describe()
