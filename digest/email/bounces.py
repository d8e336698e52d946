"""Returned mail: a per-subscriber VERP return path, and reading what comes back to it.

Relays report most failures later, as bounce messages, not as SMTP replies. With ``[bounces] address`` set,
every digest's envelope sender (its Return-Path) is ``bounces+TAG@domain``, where TAG names the
subscriber without showing the address and cannot be forged: 10 hex digits of the SHA-256 of their mailbox
key and 10 of an HMAC over them with the secret key (``verp_tag``).

``read_report`` sorts one returned message:

- a feedback-loop complaint (ARF, RFC 5965: ``multipart/report; report-type=feedback-report``): the reader
  pressed "spam";
- a delivery status notification (RFC 3464) or one of the many non-standard bounce formats (Exim's
  ``X-Failed-Recipients``, Postfix's, qmail's…): flufl.bounce says whether the failure is permanent or
  temporary;
- anything else (an auto-reply, spam to the bounce address): nothing to act on.

Whom it is about is never taken from what the message says (anyone can write a bounce or a complaint that
names an address): only from proof that it is about mail we sent. A report counts for a subscriber when it
carries their signed VERP tag (the address the bounce was returned to, or the original's Return-Path), or
one of our Message-IDs (in the returned original, which DSNs and ARF reports attach); ``subscriber_of``
checks the first, the store the second (a digest's Message-ID is an HMAC under the secret key, so it can
not be guessed either). Anything else is ignored.

What to do about it (suspend, count) is the store's; moving files aside is the pipeline's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message

from digest.identity import fingerprint, mailbox_key

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
_TAG = re.compile(r"\+([0-9a-f]{10}-[0-9a-f]{10})@", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"^message-id:[ \t]*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
PARTS_MAX = 200  # parts of one returned message looked into
TEXT_MAX = 1_000_000  # characters of its text looked into


def address_key(email: str) -> str:
    """The public half of a subscriber's tag: 10 hex digits of the SHA-256 of their mailbox key.

    >>> address_key("Ada@Example.org")
    'cfe00dde46'
    """
    return fingerprint(mailbox_key(email))[:10]


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
    """What one returned message says: its kind (hard, soft, complaint, or None: not a bounce), the VERP
    tags it carries and the Message-IDs it quotes (the proof of whom it is about, checked by the caller)."""

    kind: str | None
    tags: frozenset[str]
    message_ids: frozenset[str] = frozenset()


def _texts(msg: Message) -> list[str]:
    """The message's header blocks and text parts, the attached original's included, within bounds."""
    out: list[str] = []
    size = 0
    for number, part in enumerate(msg.walk()):
        if number >= PARTS_MAX or size >= TEXT_MAX:
            break
        out.append("".join(f"{k}: {v}\n" for k, v in part.items()))
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                out.append(payload[: TEXT_MAX - size].decode("utf-8", "replace"))
        size += len(out[-1])
    return out


def _complaint(msg: Message) -> bool:
    return msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "feedback-report"


def subscriber_of(report: BounceReport, keys: list[str], by_key: dict[str, str]) -> set[str]:
    """The subscribers (``by_key``: address_key -> mailbox key) whose signed VERP tags ``report`` carries;
    none without ``keys`` (VERP is off). The caller adds those whose Message-IDs it quotes."""
    return (
        {by_key[t[:10]] for t in report.tags if t[:10] in by_key and tag_matches(t, keys)} if keys else set()
    )


def read_report(msg: EmailMessage) -> BounceReport:
    """Sort one message from the bounce mailbox (see the module's docstring)."""
    texts = _texts(msg)
    tags = frozenset(t.lower() for text in texts for t in _TAG.findall(text))
    ids = frozenset(m for text in texts for m in _MESSAGE_ID.findall(text)) - {str(msg.get("message-id", ""))}
    if _complaint(msg):
        return BounceReport(COMPLAINT, tags, ids)
    from flufl.bounce import all_failures  # only where returned mail is read

    temporary, permanent = all_failures(msg)
    if permanent:
        return BounceReport(HARD, tags, ids)
    if temporary:
        return BounceReport(SOFT, tags, ids)
    return BounceReport(None, tags, ids)
