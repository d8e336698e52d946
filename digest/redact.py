"""Text made safe to show: credentials taken out of every text we show (URLs' passwords and secret-looking
query values, and libpq-style ``password=…`` words, in any scheme: a feed's ``https://``, a database's
``postgresql://``), and ``one_line`` for a header or a terminal line.

Used by every error message and every log line (``logs``, the CLI's one-line errors, the configuration's
messages, the store's), so a secret given in the wrong place is refused without being printed.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAM = re.compile(r"(key|token|secret|password|passwd|pwd|auth|signature|sig|credential)", re.I)
_URL_IN_TEXT = re.compile(r"\b[a-z][a-z0-9+.-]{1,20}://[^\s'\"<>]+", re.I)
_KEYWORD = re.compile(
    r"\b(password|passwd|pwd|sslpassword|secret|token)\s*=\s*('[^']*'|\"[^\"]*\"|[^\s&'\"),;]+)", re.I
)


def redact_url(url: str) -> str:
    """The URL with its password and secret-looking query values replaced by ``***``.

    >>> redact_url("https://ada:hunter2@example.org/feed?api_key=abc&cat=cs.CL")
    'https://ada:***@example.org/feed?api_key=***&cat=cs.CL'
    >>> redact_url("postgresql://digest@db/digest?password=s3cret")
    'postgresql://digest@db/digest?password=***'
    >>> redact_url("https://example.org/feed.xml")
    'https://example.org/feed.xml'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that cannot be parsed)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL in ``text`` redacted, and every ``password=…`` word (an exception's message may quote
    the URL or the connection string it was given).

    >>> redact_text("Client error for url 'https://u:p@h/x?token=1'")
    "Client error for url 'https://u:***@h/x?token=***'"
    >>> redact_text("cannot connect to postgresql://u:pw@db/d (host=db password=pw)")
    'cannot connect to postgresql://u:***@db/d (host=db password=***)'
    """
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _KEYWORD.sub(lambda m: f"{m.group(1)}=***", text)


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """Any whitespace, CR and LF included, folded to single spaces, control characters dropped.

    Safe for a header or a terminal line, and it keeps feed text from holding the NUL that marks a paper's
    slot (``email.fragments``).

    >>> one_line("A\\r\\nBcc: x\\x00 y")
    'A Bcc: x y'
    """
    return " ".join(_CONTROL.sub("", text).split())
