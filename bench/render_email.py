"""Render + inline time per email: CSS inlined once per run, papers rendered once per run, beside premailer.

    .venv/bin/python bench/render_email.py          # 500 digests
    .venv/bin/python bench/render_email.py 2000

Digests come from the seed papers and profiles of 1-6 keywords (seeded), capped at 20 papers. Prints ms
per email for: the HTML from the pre-inlined template rendered whole; the HTML spliced from paper blocks
cached across emails, quoted-printable encoded (what a run does); the HTML with premailer run on each
email (what the template would cost without inlining once); the whole message (text part, HTML,
headers, MIME, as bytes); and the text part's wrapping of the distinct texts those emails wrap, by
``textwrap.fill`` and by the renderer's own packing (the same lines: tests/test_email.py), which is why
the renderer packs them itself.
"""

from __future__ import annotations

import random
import sys
import textwrap
import time
from datetime import UTC, datetime

from synthetic import VOCABULARY, seed_papers

from digest.email.render import TEXT_WIDTH, Renderer, inline_css
from digest.models import Digest, Profile, Subscriber
from digest.redact import one_line
from digest.selection.index import PaperIndex


def digests(n: int, seed: int = 11) -> list[Digest]:
    rng = random.Random(seed)
    index = PaperIndex(seed_papers())
    out = []
    while len(out) < n:
        profile = Profile(tuple(rng.sample(VOCABULARY, rng.randint(1, 6))), (), 20)
        matches, total = index.select(profile, (), 20)
        if matches:
            sub = Subscriber(f"user{len(out):06d}@example.org", "", profile)
            out.append(Digest(sub, tuple(matches), datetime(2026, 11, 23).date(), total - len(matches)))
    return out


def per_email(label: str, seconds: float, n: int) -> None:
    print(f"{label:<44} {seconds / n * 1000:8.2f} ms/email")


def main(n: int) -> None:
    batch = digests(n)
    renderer = Renderer(sender="Paper Digest <digest@example.org>")
    contexts = [renderer.context(d) for d in batch]
    papers = sum(len(d.matches) for d in batch) / n
    print(f"{n} digests, {papers:.1f} papers each on average")

    t = time.perf_counter()
    sizes = [len(renderer.html(c)) for c in contexts]
    per_email("HTML, CSS inlined once, rendered whole", time.perf_counter() - t, n)

    light = [renderer.context(d, full=False) for d in batch]
    t = time.perf_counter()
    for c in light:
        renderer.html_body(c)
    per_email("HTML, paper blocks cached, encoded (a run)", time.perf_counter() - t, n)

    template = renderer.env.get_template("digest.html")
    sample = contexts[: max(1, n // 5)]  # premailer is slow; a fifth of the digests is plenty
    t = time.perf_counter()
    for c in sample:
        inline_css(template.render(c))
    per_email("HTML, premailer per email", time.perf_counter() - t, len(sample))

    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    t = time.perf_counter()
    total = sum(len(renderer.compose(d, now).outgoing.data) for d in batch)
    per_email("whole message (text + HTML + MIME, as bytes)", time.perf_counter() - t, n)
    print(f"message size: {total / n / 1000:.1f} KB on average")
    print(f"HTML size: median {sorted(sizes)[n // 2] / 1000:.1f} KB, max {max(sizes) / 1000:.1f} KB")
    wrapping(batch)


def wrapping(batch: list[Digest]) -> None:
    """The text part's wrapping of the texts ``batch``'s text parts wrap (each distinct one once, no
    cache): textwrap against the renderer's packing."""
    renderer = Renderer(sender="Paper Digest <digest@example.org>")
    packed = renderer.env.filters["wrap"].__wrapped__  # the filter without its cache
    asked: dict[tuple[str, int], None] = {}  # each text wrapped, in order, once

    def recording(text: str, indent: int = 0) -> str:
        asked[(text, indent)] = None
        return str(packed(text, indent))

    renderer.env.filters["wrap"] = recording
    for d in batch:
        renderer.text(renderer.context(d))

    def by_textwrap(text: str, indent: int) -> str:
        pad, line = " " * indent, one_line(text)
        if len(pad) + len(line) <= TEXT_WIDTH:
            return pad + line if line else ""
        return textwrap.fill(
            line,
            TEXT_WIDTH,
            initial_indent=pad,
            subsequent_indent=pad,
            break_long_words=False,
            break_on_hyphens=False,
        )

    for label, wrap in (
        ("text part wrapped by textwrap", by_textwrap),
        ("text part wrapped by packing", packed),
    ):
        t = time.perf_counter()
        for text, indent in asked:
            wrap(text, indent)
        seconds = time.perf_counter() - t
        print(f"{label + f' ({len(asked)} texts)':<44} {seconds / len(batch) * 1e6:8.1f} us/email")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
