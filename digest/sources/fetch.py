"""Getting a source's bytes: files and globs from disk, URLs over HTTP with conditional GET.

The only I/O in ``sources``. Library errors (httpx, OSError) become FetchError naming the source.

A URL fetch is bounded whatever the server does:

- in time: ``timeout`` is the deadline of the whole fetch, from connecting to the last byte. httpx's own
  timeouts bound each socket operation, so a server that trickles a byte a second would never trip them;
  the fetch therefore runs in a helper thread that the caller waits for until the deadline, and which
  stops itself at its next read once the deadline has passed.
- in memory: at most ``max_bytes`` of body, counted after decompression and read as a stream. httpx
  decodes gzip in whole network chunks (one 64 KB chunk of a "zip bomb" inflates to 64 MB), so the body
  is read raw and inflated here with zlib's ``max_length``, never more than the budget at once.
- in redirects: at most ``MAX_REDIRECTS``.

Credentials never print: ``redact_url`` hides a URL's password and secret-looking query values in every
message, and ``headers_from_env`` lets a source send a token it reads from the environment.
"""

from __future__ import annotations

import glob
import os
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from digest import __version__
from digest.errors import FetchError
from digest.models import Validators
from digest.redact import redact_text, redact_url

if TYPE_CHECKING:  # httpx is imported where a URL is fetched: a run of files and the store never load it
    import httpx

USER_AGENT = f"digest/{__version__} (research-paper email digest)"
MAX_REDIRECTS = 10
DEFAULT_MAX_BYTES = 50_000_000


@dataclass(frozen=True, slots=True)
class HttpResult:
    body: bytes
    validators: Validators
    not_modified: bool = False


def headers_from_env(names: Mapping[str, str], *, source: str) -> dict[str, str]:
    """Request headers whose values come from environment variables: ``{"Authorization": "HF_AUTH"}``.

    A variable that is not set is the operator's to fix, so it fails the source by name.
    """
    out: dict[str, str] = {}
    for header, variable in names.items():
        value = os.environ.get(variable)
        if not value:
            raise FetchError(
                source,
                f"the environment variable {variable} (for the {header} header) is not set",
                hint=f"export {variable}=... or put it in .env",
            )
        out[header] = value
    return out


class _Body:
    """Accumulates a response body after decompression, refusing to grow past ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self.inflater = None
        elif encoding in ("gzip", "x-gzip"):
            self.inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self.inflater = zlib.decompressobj()
        else:
            raise ValueError(f"the server sent Content-Encoding {encoding!r}, which was not asked for")

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise OverflowError
        self.parts.append(data)

    def feed(self, chunk: bytes) -> None:
        if self.inflater is None:
            self._keep(chunk)
            return
        data = chunk
        while data:
            # Never more than the budget allows (plus one byte, to notice going over) at once.
            out = self.inflater.decompress(data, self.limit - self.size + 1)
            self._keep(out)
            data = self.inflater.unconsumed_tail

    def value(self) -> bytes:
        if self.inflater is not None:
            self._keep(self.inflater.flush())
        return b"".join(self.parts)


def _get(
    url: str,
    headers: dict[str, str],
    timeout: float,
    max_bytes: int,
    deadline: float,
    cancelled: threading.Event,
) -> tuple[httpx.Response, bytes]:
    """The GET itself, streamed; stops at the first read after the deadline or a cancel."""
    import httpx

    with (
        httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        if response.status_code >= 300:
            return response, b""
        body = _Body(response.headers.get("Content-Encoding", ""), max_bytes)
        for chunk in response.iter_raw():
            if cancelled.is_set() or time.monotonic() > deadline:
                raise TimeoutError
            body.feed(chunk)
        return response, body.value()


def fetch_url(
    url: str,
    *,
    source: str,
    timeout: float,
    validators: Validators | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    headers: Mapping[str, str] | None = None,
) -> HttpResult:
    """GET ``url`` within ``timeout`` seconds in all and ``max_bytes`` of body; with validators from last
    time, a 304 answer means nothing changed. Every failure is a FetchError naming the limit to raise."""
    import httpx

    shown = redact_url(url)
    request_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate", **(headers or {})}
    if validators and validators.etag:
        request_headers["If-None-Match"] = validators.etag
    if validators and validators.last_modified:
        request_headers["If-Modified-Since"] = validators.last_modified
    deadline = time.monotonic() + timeout
    cancelled = threading.Event()
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["result"] = _get(url, request_headers, timeout, max_bytes, deadline, cancelled)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"fetch {source}", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    too_slow = FetchError(
        source,
        f"no complete answer from {shown} within {timeout:g} s",
        hint="raise the source's timeout (seconds for the whole fetch) if the server is just slow",
    )
    if worker.is_alive():
        cancelled.set()  # the thread ends at its next read, or when its socket times out
        raise too_slow
    error = outcome.get("error")
    if error is not None:
        if isinstance(error, TimeoutError | httpx.TimeoutException):
            raise too_slow from error
        if isinstance(error, OverflowError):
            raise FetchError(
                source,
                f"the response from {shown} is larger than {max_bytes:,} bytes (after decompression)",
                hint="raise the source's max_bytes if the listing really is that large",
            ) from error
        if isinstance(error, httpx.TooManyRedirects):
            raise FetchError(source, f"more than {MAX_REDIRECTS} redirects from {shown}") from error
        if isinstance(error, ValueError | zlib.error):
            raise FetchError(source, f"unreadable response from {shown}: {error}") from error
        if isinstance(error, httpx.HTTPError):
            raise FetchError(source, f"could not fetch {shown}: {redact_text(str(error))}") from error
        raise error  # type: ignore[misc]
    result = outcome["result"]
    assert isinstance(result, tuple)
    response: httpx.Response = result[0]
    body: bytes = result[1]
    if response.status_code == 304:
        return HttpResult(b"", validators or Validators(), not_modified=True)
    if response.status_code >= 300:
        raise FetchError(source, f"HTTP {response.status_code} {response.reason_phrase} from {shown}")
    return HttpResult(body, Validators(response.headers.get("ETag"), response.headers.get("Last-Modified")))


def read_paths(pattern: str, *, source: str, max_bytes: int = DEFAULT_MAX_BYTES) -> list[tuple[Path, bytes]]:
    """Every file a path or glob names, sorted by name so listings replay in order."""
    names = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not names:
        raise FetchError(source, f"no file matches {pattern}", hint="check the source's path")
    out: list[tuple[Path, bytes]] = []
    for name in names:
        try:
            with open(name, "rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise FetchError(source, f"cannot read {name}: {exc.strerror}") from exc
        if len(data) > max_bytes:
            raise FetchError(
                source,
                f"{name} is larger than {max_bytes:,} bytes",
                hint="raise the source's max_bytes if the listing really is that large",
            )
        out.append((Path(name), data))
    return out
