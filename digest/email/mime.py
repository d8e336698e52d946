"""A digest's bytes on the wire: one fixed multipart/alternative shape, assembled directly.

The email package's generic ``EmailMessage`` is slow to build and serialise (header objects, policy folding, a
generator walking the tree): a large run spent much of its time there (docs/benchmarks.md). Every digest has
the same shape (headers, a text part, an HTML part), so this module writes it with the standard library's
encoders: ``email.header.Header`` for non-ASCII header words (RFC 2047), ``email.utils.formataddr`` for
addresses, ``binascii.b2a_qp`` for quoted-printable bodies. The tests parse every shape back with the email
package (golden files, headers, hostile input).

Lines end in LF, as a Maildir stores them (smtplib turns them into CRLF on the wire); headers are
folded at 998 and never turned into encoded-words unless they hold non-ASCII text; bodies are
quoted-printable, so the message is 7-bit clean and the boundary (which starts with "=_") cannot occur in them.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, parseaddr

from email_validator import EmailNotValidError, validate_email

from digest.errors import RenderError

# Parsing policy for reading our bytes back (previews, tests, the memory transport).
READ_POLICY = email.policy.default


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to deliver: envelope, id and the bytes (LF line ends)."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes

    @property
    def smtputf8(self) -> bool:
        """Whether an address is internationalised (RFC 6531): the server must offer SMTPUTF8."""
        return not (self.sender.isascii() and all(r.isascii() for r in self.recipients))

    def wire(self) -> bytes:
        """The bytes as SMTP sends them: CRLF line ends."""
        return self.data.replace(b"\n", b"\r\n")

    def message(self) -> EmailMessage:
        """The bytes parsed back with the email package (line ends as a Unix mailbox stores them)."""
        text = self.data.decode("utf-8")  # UTF-8 headers only with SMTPUTF8
        parsed = email.message_from_string(text, policy=READ_POLICY)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @classmethod
    def of(cls, message: EmailMessage, sender: str = "") -> Outgoing:
        """An ``EmailMessage`` built elsewhere, e.g. by a library user or a test."""
        recipients = tuple(addr for _, addr in getaddresses(message.get_all("To", [])))
        data = message.as_bytes(policy=email.policy.default.clone(max_line_length=998))
        return cls(sender, recipients, str(message.get("Message-ID", "")), data)


@functools.lru_cache(maxsize=1024)  # subjects repeat within a run (the same topics, the same day)
def encode_words(text: str) -> str:
    """Header text: ASCII words as written, runs of non-ASCII words as RFC 2047 encoded-words.

    >>> encode_words("5 papers on RAG")
    '5 papers on RAG'
    >>> encode_words("3 papers on φ-Decoding · Nov 22")
    '3 papers on =?utf-8?b?z4YtRGVjb2Rpbmcgwrc=?= Nov 22'
    """
    if text.isascii():
        return text
    out: list[str] = []
    run: list[str] = []  # consecutive non-ASCII words: one encoded-word, so the spaces between survive
    for word in text.split(" "):
        if word.isascii():
            if run:
                out.append(Header(" ".join(run), "utf-8", maxlinelen=76).encode(linesep="\n"))
                run = []
            out.append(word)
        else:
            run.append(word)
    if run:
        out.append(Header(" ".join(run), "utf-8", maxlinelen=76).encode(linesep="\n"))
    return " ".join(out)


def address(name: str, addr: str) -> str:
    """``Name <addr>``, the name quoted or encoded as needed.

    >>> address("Ada Lovelace", "ada@example.org")
    'Ada Lovelace <ada@example.org>'
    >>> address("Lovelace, Ada", "ada@example.org")
    '"Lovelace, Ada" <ada@example.org>'
    >>> address("Zoë", "zoë@example.org")
    '=?utf-8?q?Zo=C3=AB?= <zoë@example.org>'
    """
    if not name:
        return addr
    if name.isascii() and addr.isascii():
        return formataddr((name, addr))
    return f"{encode_words(name)} <{addr}>"


def qp(text: str) -> bytes:
    """Quoted-printable (RFC 2045), soft breaks at 76.

    >>> qp("café = 3\\n")
    b'caf=C3=A9 =3D 3\\n'
    """
    return binascii.b2a_qp(text.encode("utf-8"), istext=True)


LINE_MAX = 998  # octets in a header line, without its line end (RFC 5322 2.1.1)


def fold(name: str, value: str) -> str:
    """A header value folded (LF + space) at spaces so that no line of ``Name: value`` passes 998 octets.

    Only a line with no space to fold at is left long; ``assemble`` then refuses the message.

    >>> fold("X", "a " * 600).count(chr(10) + " ")
    1
    """
    if len(f"{name}: {value}".encode()) <= LINE_MAX:
        return value  # the usual case: short enough as it is
    lines: list[str] = []
    line = f"{name}:"
    for word in value.split(" "):
        if line != f"{name}:" and len((line + " " + word).encode("utf-8")) > LINE_MAX:
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\n".join(lines)[len(name) + 2 :]


@functools.lru_cache(maxsize=4096)
def ascii_address(addr: str) -> str:
    """The address with an internationalised domain as punycode, so it needs no SMTPUTF8; an address
    whose local part is not ASCII is returned as it is (only SMTPUTF8 can carry it).

    >>> ascii_address("ada@bücher.example")
    'ada@xn--bcher-kva.example'
    >>> ascii_address("zoë@example.org")
    'zoë@example.org'
    """
    if addr.isascii():
        return addr
    try:
        found = validate_email(addr, check_deliverability=False)
    except EmailNotValidError:
        return addr
    return found.ascii_email or addr


def assemble(headers: list[tuple[str, str]], text: bytes, html: bytes, *, utf8: bool = False) -> bytes:
    """The message bytes: ``headers`` (already encoded), then the text and HTML alternatives.

    ``text`` and ``html`` are the parts already quoted-printable encoded (``qp``).

    Headers must be ASCII unless ``utf8`` (an internationalised address, sent with SMTPUTF8, where
    RFC 6532 allows UTF-8 in headers). The boundary is derived from the headers, so the same message
    always gives the same bytes.
    """
    for name, value in headers:  # folding (LF + space) is the only line break a value may hold
        if any(c in value.replace("\n ", "") for c in "\r\n"):
            raise RenderError(f"the {name} header holds a line break")
    head = "".join(f"{name}: {value if chr(10) in value else fold(name, value)}\n" for name, value in headers)
    if not (utf8 or head.isascii()):
        raise RenderError("header values must be encoded to ASCII first")
    longest = max(head.encode("utf-8").split(b"\n"), key=len)
    if len(longest) > LINE_MAX:
        raise RenderError(
            f"a header line is longer than {LINE_MAX} octets and cannot be folded: {longest[:60]!r}…"
        )
    boundary = "=_digest_" + hashlib.sha256(head.encode()).hexdigest()[:32]
    part = (
        f'--{boundary}\nContent-Type: text/{{}}; charset="utf-8"\n'
        "Content-Transfer-Encoding: quoted-printable\n\n"
    )
    return b"".join(
        (
            head.encode("utf-8"),
            b"MIME-Version: 1.0\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'.encode(),
            part.format("plain").encode(),
            text,
            b"\n",
            part.format("html").encode(),
            html,
            b"\n",
            f"--{boundary}--\n".encode(),
        )
    )


def notice(
    sender: str, to: str, subject: str, text: str, html: str, mid_hash: str, now: datetime
) -> Outgoing:
    """A short automatic email that is not a digest (a sign-up confirmation, the operator's alert): From
    ``sender`` ("Name <address>") to ``to``, a Message-ID ``<mid_hash@sender's domain>``, marked
    ``Auto-Submitted`` so that nobody's auto-reply answers it."""
    name, from_address = parseaddr(sender)
    rcpt = ascii_address(to)
    mid = f"<{mid_hash}@{from_address.rpartition('@')[2] or 'localhost'}>"
    headers = [
        ("From", address(name, from_address)),
        ("To", rcpt),
        ("Subject", encode_words(subject)),
        ("Date", format_datetime(now)),
        ("Message-ID", mid),
        ("Auto-Submitted", "auto-generated"),
    ]
    return Outgoing(
        from_address, (rcpt,), mid, assemble(headers, qp(text), qp(html), utf8=not rcpt.isascii())
    )
