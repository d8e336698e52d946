"""Returned mail (#17): a per-subscriber VERP return path, and reading what comes back to it.

Relays report most failures later, as bounce messages, not as SMTP replies. With ``[bounces] address`` set,
every digest's envelope sender (its Return-Path) is ``bounces+TAG@domain``, where TAG names the
subscriber without showing the address and cannot be forged: 10 hex digits of the address's SHA-256 and
10 of an HMAC over them with the secret key (``verp_tag``). A bounce then says whom it is about by the
address it was sent to, whatever the remote server wrote in its text.

``read_report`` sorts one returned message:

- a feedback-loop complaint (ARF, RFC 5965: ``multipart/report; report-type=feedback-report``): the reader
  pressed "spam";
- a delivery status notification (RFC 3464) or one of the many non-standard bounce formats (Exim's
  ``X-Failed-Recipients``, Postfix's, qmail's…): flufl.bounce finds the permanently and temporarily failed
  recipients;
- anything else (an auto-reply, spam to the bounce address): nothing to act on.

What to do about it (suspend, count) is the store's; moving files aside is the CLI's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from email import message_from_string
from email.message import EmailMessage, Message
from email.utils import getaddresses

from flufl.bounce import all_failures

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
_TAG = re.compile(r"\+([0-9a-f]{10}-[0-9a-f]{10})@", re.IGNORECASE)
# Where a returned message shows the address it was sent to: the local delivery agent's headers first.
_DELIVERED = ("delivered-to", "x-original-to", "envelope-to", "to")


def address_key(email: str) -> str:
    """The public half of a subscriber's tag: 10 hex digits of the casefolded address's SHA-256.

    >>> address_key("Ada@Example.org")
    'cfe00dde46'
    """
    return hashlib.sha256(email.casefold().encode()).hexdigest()[:10]


def verp_tag(email: str, key: str) -> str:
    """``address_key`` and an HMAC of it under ``key`` (the secret key), so only we can make one.

    >>> verp_tag("ada@example.org", "k" * 32)
    'cfe00dde46-b709bcc549'
    """
    public = address_key(email)
    mac = hmac.new(key.encode(), f"bounce:{public}".encode(), hashlib.sha256).hexdigest()[:10]
    return f"{public}-{mac}"


def verp_address(bounce_address: str, email: str, key: str) -> str:
    """The envelope sender of ``email``'s digests.

    >>> verp_address("bounces@example.org", "ada@example.org", "k" * 32)
    'bounces+cfe00dde46-b709bcc549@example.org'
    """
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{verp_tag(email, key)}@{domain}"


def tag_matches(tag: str, keys: list[str]) -> bool:
    """Whether ``tag``'s HMAC was made with one of ``keys`` (the current one, or one rotated out)."""
    public, _, mac = tag.lower().partition("-")
    return any(
        hmac.compare_digest(
            mac, hmac.new(k.encode(), f"bounce:{public}".encode(), hashlib.sha256).hexdigest()[:10]
        )
        for k in keys
    )


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What one returned message says: its kind (hard, soft, complaint, or None: not a bounce), the tags
    of the VERP addresses it was delivered to, and the recipients it names as failed."""

    kind: str | None
    tags: frozenset[str]
    recipients: frozenset[str]


def _tags(msg: Message) -> frozenset[str]:
    found: set[str] = set()
    for name in _DELIVERED:
        for value in msg.get_all(name, []):
            found.update(m.lower() for m in _TAG.findall(str(value)))
    return frozenset(found)


def _complaint(msg: Message) -> frozenset[str] | None:
    """The complained-about recipients of an ARF report (its Original-Rcpt-To, else the original message's
    To), or None when ``msg`` is not one."""
    if msg.get_content_type() != "multipart/report" or msg.get_param("report-type") != "feedback-report":
        return None
    found: set[str] = set()
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            # The report's fields are a header block; the email package keeps them as the part's payload.
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else []
            for block in blocks:
                if isinstance(block, Message):
                    found.update(a for _, a in getaddresses(block.get_all("original-rcpt-to", [])))
        elif part.get_content_type() in ("message/rfc822", "text/rfc822-headers") and not found:
            inner = part.get_payload()
            original = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(inner, str):  # text/rfc822-headers: the original's header block as text
                original = message_from_string(inner)
            if isinstance(original, Message):
                found.update(a for _, a in getaddresses(original.get_all("to", [])))
    return frozenset(a.lower() for a in found if "@" in a)


def subscriber_of(
    report: BounceReport, keys: list[str], by_key: dict[str, str], known: dict[str, str]
) -> set[str]:
    """The subscribers ``report`` is about: by its signed VERP tags (``by_key``: address_key -> address).
    Without VERP (no ``keys``), and for complaints (a feedback loop writes to its own address), by the
    recipients it names that are subscribers (``known``: casefolded -> address). With VERP a bounce must
    carry a valid tag: anyone can write a bounce that names an address, nobody else can sign one."""
    tagged = {by_key[t[:10]] for t in report.tags if t[:10] in by_key and tag_matches(t, keys)}
    if tagged or (keys and report.kind != COMPLAINT):
        return tagged
    return {known[r] for r in report.recipients if r in known}


def read_report(msg: EmailMessage) -> BounceReport:
    """Sort one message from the bounce mailbox (see the module's docstring)."""
    tags = _tags(msg)
    complained = _complaint(msg)
    if complained is not None:
        return BounceReport(COMPLAINT, tags, complained)
    temporary, permanent = all_failures(msg)
    if permanent:
        return BounceReport(HARD, tags, frozenset(a.decode("ascii", "replace").lower() for a in permanent))
    if temporary:
        return BounceReport(SOFT, tags, frozenset(a.decode("ascii", "replace").lower() for a in temporary))
    return BounceReport(None, tags, frozenset())
