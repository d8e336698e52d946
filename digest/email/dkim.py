"""DKIM signatures (RFC 6376) on every email digest sends, with dkimpy.

Most relays sign what they pass on; when yours does not (or you send straight to the recipients' servers),
set ``[dkim] selector`` and ``DIGEST_DKIM__PRIVATE_KEY`` and each message gets a ``DKIM-Signature``
header over its final bytes, so the signed bytes are exactly the bytes sent and stored: the signature is
made after the message is assembled and nothing changes it afterwards (the SMTP transport only turns LF
into CRLF, which both canonicalizations ignore). ``relaxed/relaxed`` canonicalization survives the
re-folding and re-encoding relays do. The signed headers include ``List-Unsubscribe`` and
``List-Unsubscribe-Post``, as RFC 8058 asks of one-click unsubscribe; headers in ``SIGNED`` that a message
lacks are signed as absent, so nobody can add them on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from digest.email.mime import Outgoing
from digest.errors import ConfigError

SIGNED = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-id",
)
KEY_VARIABLE = "DIGEST_DKIM__PRIVATE_KEY"
MIN_BITS = 1024  # RFC 8301: verifiers must not accept signatures with shorter RSA keys


def pem(text: str) -> bytes:
    """The private key as PEM bytes; a key given on one line with ``\\n`` escapes (as in .env) is unfolded.

    >>> pem("-----BEGIN PRIVATE KEY-----\\\\nMIIE\\\\n-----END PRIVATE KEY-----")
    b'-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n'
    """
    return text.strip().replace("\\n", "\n").encode("ascii", "replace") + b"\n"


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A signing key: the DNS selector, the signing domain (``d=``) and the private key (PEM)."""

    selector: str
    domain: str
    private_key: bytes

    @classmethod
    def load(cls, selector: str, domain: str, private_key: str) -> DkimKey:
        """A key checked now, so that a bad one stops the run before anything is sent (ConfigError)."""
        from dkim.crypto import UnparsableKeyError, parse_pem_private_key  # dkimpy only when a key is set

        key = pem(private_key)
        try:
            bits = int(parse_pem_private_key(key)["modulus"]).bit_length()
        except (UnparsableKeyError, ValueError, IndexError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"the DKIM private key cannot be read: {exc}",
                key="dkim.private_key",
                hint=f"set {KEY_VARIABLE} to an RSA private key in PEM form (openssl genrsa 2048)",
            ) from exc
        if bits < MIN_BITS:
            raise ConfigError(
                f"the DKIM private key has {bits} bits; RFC 8301 asks for at least {MIN_BITS} (receivers"
                " ignore signatures made with shorter keys)",
                key="dkim.private_key",
                hint=f"make a 2048-bit key (openssl genrsa 2048), set {KEY_VARIABLE} and publish its public key",
            )
        return cls(selector, domain, key)

    def sign(self, data: bytes) -> bytes:
        """``data`` (a whole message, LF line ends) with its ``DKIM-Signature`` header in front."""
        import dkim

        header = dkim.sign(
            data,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            include_headers=list(SIGNED),
            canonicalize=(b"relaxed", b"relaxed"),
            linesep=b"\n",
        )
        return bytes(header) + data


def signed(key: DkimKey | None, message: Outgoing) -> Outgoing:
    """``message`` with its DKIM signature when a key is configured, else as it is."""
    return message if key is None else replace(message, data=key.sign(message.data))
