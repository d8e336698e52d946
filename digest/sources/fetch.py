"""Getting a source's bytes: files and globs from disk, URLs over HTTP with conditional GET.

The only I/O in ``sources``. Library errors (httpx, OSError) become FetchError naming the source.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import httpx

from digest import __version__
from digest.errors import FetchError

USER_AGENT = f"digest/{__version__} (research-paper email digest)"


@dataclass(frozen=True, slots=True)
class Validators:
    """What the server said last time, for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class HttpResult:
    body: bytes
    validators: Validators
    not_modified: bool = False


def fetch_url(url: str, *, source: str, timeout: float, validators: Validators | None = None) -> HttpResult:
    """GET ``url``; with validators from last time, a 304 answer means nothing changed.

    Timeouts apply to connect, read, write and pool waits alike. Redirects are followed.
    """
    headers = {"User-Agent": USER_AGENT}
    if validators and validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators and validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            response = client.get(url, headers=headers)
    except httpx.TimeoutException as exc:
        raise FetchError(
            source, f"timed out after {timeout:g} s fetching {url}", hint="raise the source's timeout"
        ) from exc
    except httpx.HTTPError as exc:
        raise FetchError(source, f"could not fetch {url}: {exc}") from exc
    if response.status_code == 304:
        return HttpResult(b"", validators or Validators(), not_modified=True)
    if response.status_code >= 400:
        raise FetchError(source, f"HTTP {response.status_code} {response.reason_phrase} from {url}")
    return HttpResult(
        response.content,
        Validators(response.headers.get("ETag"), response.headers.get("Last-Modified")),
    )


def read_paths(pattern: str, *, source: str) -> list[tuple[Path, bytes]]:
    """Every file a path or glob names, sorted by name so listings replay in order."""
    names = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not names:
        raise FetchError(source, f"no file matches {pattern}", hint="check the source's path")
    out: list[tuple[Path, bytes]] = []
    for name in names:
        try:
            out.append((Path(name), Path(name).read_bytes()))
        except OSError as exc:
            raise FetchError(source, f"cannot read {name}: {exc.strerror}") from exc
    return out
