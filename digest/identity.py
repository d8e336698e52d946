"""The one canonical key of a mailbox: what the store, the tokens, the rate limits, feedback, the sent
history and every lookup compare, on SQLite and PostgreSQL alike.

The rule (``mailbox_key``):

- the domain as its IDNA A-label, lower-cased (IDNA 2008 with UTS #46 mapping, non-transitional):
  ``Straße.de`` and ``xn--strae-oqa.de`` are one domain; ``strasse.de`` is another, as it is in DNS;
- the local part in Unicode NFC (RFC 6532), with ASCII letters folded to lower case and nothing else.

Why ASCII-only folding: every mailbox provider of note treats ``Ada`` and ``ada`` as one mailbox, and
readers type either, so those must share a key (the store always merged them). Beyond ASCII, no standard
says what a case-insensitive local part is (RFC 6531 leaves it to the receiving server), and Unicode case
folding merges what may be different mailboxes (``ß`` folds to ``ss``; Turkish dotted and dotless ``i``).
Of the two possible mistakes, treating two mailboxes as one would let one person act for another; treating
one mailbox written with different non-ASCII capitals as two costs at most a second digest. So ``JOSÉ`` and
``josé`` are two keys.

An address is checked once where it enters (``normalise_email``: syntax, the domain's IDNA, the local
part's NFC) and keyed wherever it is compared. The key is never shown: pages and emails show the address
as the reader wrote it (or ``shown`` of a key).
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata

import idna
from email_validator import EmailNotValidError, validate_email

from digest.errors import SubscriberError

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
LEGACY_VARIANTS_MAX = 4  # "ss" pairs tried as "ß" in a link made before keys (2^4 addresses at most)


def normalise_email(address: str) -> str:
    """A subscriber address checked for syntax and normalised (domain lower-cased, IDNA handled, the local
    part in NFC): the address as it is shown and mailed. Compare addresses with ``mailbox_key``.

    >>> normalise_email("Ada@Example.ORG")
    'Ada@example.org'
    >>> normalise_email("ada@xn--strae-oqa.de")
    'ada@straße.de'
    """
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise SubscriberError(f"{address!r} is not a usable email address: {exc}") from exc


@functools.lru_cache(maxsize=1 << 14)
def _domain_key(domain: str) -> str:
    """A domain as its lower-cased IDNA A-label (a domain IDNA refuses: NFC, ASCII letters lowered)."""
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        return unicodedata.normalize("NFC", domain).translate(_ASCII_LOWER)


def mailbox_key(address: str) -> str:
    """The canonical key of the mailbox ``address`` names (see the module's docstring).

    >>> mailbox_key("Ada@Example.ORG"), mailbox_key("ada@STRASSE.de")
    ('ada@example.org', 'ada@strasse.de')
    >>> mailbox_key("ada@straße.de") == mailbox_key("ada@xn--strae-oqa.de") != mailbox_key("ada@strasse.de")
    True
    >>> mailbox_key("JOSÉ@example.org"), mailbox_key("josé@example.org")
    ('josÉ@example.org', 'josé@example.org')
    """
    if address.isascii():  # nearly every address: no IDNA, no NFC to do
        return address.translate(_ASCII_LOWER)
    local, at, domain = address.rpartition("@")
    if not at:
        return unicodedata.normalize("NFC", address).translate(_ASCII_LOWER)
    return f"{unicodedata.normalize('NFC', local).translate(_ASCII_LOWER)}@{_domain_key(domain)}"


def fingerprint(key: str) -> str:
    """A one-way SHA-256 of a mailbox key: what is kept of an address that must not be kept in the clear
    (a rate limit's count, an erased reader's floor).

    >>> fingerprint("ada@example.org")[:12]
    'cfe00dde46ef'
    """
    return hashlib.sha256(key.encode()).hexdigest()


def shown(key: str) -> str:
    """A key as a page may show it: the domain back in Unicode where it is an A-label.

    >>> shown("ada@xn--strae-oqa.de"), shown("ada@example.org")
    ('ada@straße.de', 'ada@example.org')
    """
    local, at, domain = key.rpartition("@")
    if not at or "xn--" not in domain:
        return key
    try:
        return f"{local}@{idna.decode(domain)}"
    except (idna.IDNAError, UnicodeError):
        return key


def legacy_variants(value: str) -> set[str]:
    """The keys, other than ``mailbox_key(value)``, of the addresses whose ``str.casefold()`` could be
    ``value``: what a link signed before keys (over the casefolded address) might have been made for.

    Casefolding maps non-ASCII letters to ASCII only rarely in real addresses; the case that matters is
    ``ß`` to ``ss``, so each ``ss`` is tried as ``ß`` (at most ``LEGACY_VARIANTS_MAX`` of them). A link
    whose value has a variant that is a subscriber is ambiguous and is refused.

    >>> sorted(legacy_variants("ada@strasse.de"))
    ['ada@xn--strae-oqa.de']
    >>> legacy_variants("ada@example.org")
    set()
    """
    spots: list[int] = []
    at = 0
    while (at := value.find("ss", at)) != -1 and len(spots) < LEGACY_VARIANTS_MAX:
        spots.append(at)
        at += 2
    own = mailbox_key(value)
    out: set[str] = set()
    for mask in range(1, 1 << len(spots)):
        chars, last = [], 0
        for i, spot in enumerate(spots):
            if mask >> i & 1:
                chars += [value[last:spot], "ß"]
                last = spot + 2
        variant = mailbox_key("".join([*chars, value[last:]]))
        if variant != own:
            out.add(variant)
    return out
