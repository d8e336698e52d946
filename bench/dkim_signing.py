"""What a DKIM signature costs per email: dkimpy signing real rendered digests, beside the rendering.

    .venv/bin/python bench/dkim_signing.py          # 300 digests
    .venv/bin/python bench/dkim_signing.py 1000

Renders digests of the seed papers (as render_email.py does), then signs each message with an RSA-2048
and an RSA-1024 key (relaxed/relaxed, the headers digest signs). Prints ms per email for rendering and for
signing, and what signing adds to a run of 100,000 subscribers on one core. dkimpy does its RSA in pure
Python: if this cost matters, sign at the relay (OpenDKIM, rspamd) instead and leave [dkim] unset.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from render_email import digests

from digest.email.dkim import DkimKey
from digest.email.render import Renderer


def pem(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    renderer = Renderer(sender="Paper Digest <digest@example.org>")
    items = digests(n)
    started = time.perf_counter()
    messages = [renderer.compose(d, now).outgoing.data for d in items]
    render_ms = (time.perf_counter() - started) * 1000 / n
    size = sum(len(m) for m in messages) / n
    print(f"\n{n} digests, {size / 1024:.0f} KiB each on average\n")
    print("| step | ms per email | added to 100,000 emails, one core |")
    print("| --- | ---: | ---: |")
    print(f"| render (text + HTML + MIME) | {render_ms:.2f} | |")
    for bits in (2048, 1024):
        key = DkimKey.load("bench", "example.org", pem(bits))
        started = time.perf_counter()
        for m in messages:
            key.sign(m)
        ms = (time.perf_counter() - started) * 1000 / n
        print(f"| DKIM sign, RSA-{bits} (dkimpy) | {ms:.2f} | {ms * 100:,.0f} s |")


if __name__ == "__main__":
    main()
