"""The email looked at in a real headless Chromium (Debian's package; `.ci/run` installs it).

Chromium loads the HTML part as a mail client's web view would. A small probe script, added to a copy of
the page by the test (never by digest), records what the browser saw: how wide the page is, whether any
script from the feed ran, and the colours in light and dark mode.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import escape, unescape
from pathlib import Path

import pytest
from test_email import NOW, SENDER, SIGNER, golden_cases, hostile_digest

from digest.email.render import Renderer
from digest.links import Links

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Under CI the browser is part of the test set-up (.ci/run installs it): there, a missing Chromium fails.
if CHROMIUM is None and os.environ.get("CI") == "true":
    raise RuntimeError("chromium is not installed; .ci/run installs it (Debian's chromium package)")
pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)"),
]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--hide-scrollbars",
]
PROBE = """<script>
window.addEventListener('load', () => {
  const doc = document.getElementById('mail').contentDocument;
  const win = document.getElementById('mail').contentWindow;
  const column = doc.querySelector('.column');
  const out = {
    viewport: win.innerWidth,
    scrollWidth: doc.documentElement.scrollWidth,
    columnWidth: column ? column.getBoundingClientRect().width : null,
    bodyBackground: win.getComputedStyle(doc.body).backgroundColor,
    columnBackground: column ? win.getComputedStyle(column).backgroundColor : null,
    pwned: win.pwned || false,
    footer: !!doc.querySelector('.footer a'),
    images: doc.images.length,
    forms: doc.forms.length,
  };
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def look(tmp_path: Path, mail: str, width: int, dark: bool = False) -> dict[str, object]:
    """Load ``mail`` in a ``width``-px frame (as a phone or a mail client's pane would) and report."""
    page = tmp_path / f"page-{width}-{dark}.html"
    frame = (
        f'<iframe id="mail" style="width:{width}px;height:900px;border:0" srcdoc="{escape(mail)}"></iframe>'
    )
    page.write_text(f"<html><head>{PROBE}</head><body>{frame}</body></html>", encoding="utf-8")
    scheme = "0" if dark else "1"  # Blink's preferredColorScheme: 0 dark, 1 light
    result = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / f'profile-{width}-{dark}'}",
            "--window-size=1400,1000",
            f"--blink-settings=preferredColorScheme={scheme}",
            *(["--force-dark-mode"] if dark else []),
            "--virtual-time-budget=2000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.DOTALL)
    assert found, result.stdout[-2000:]
    return dict(json.loads(unescape(found.group(1))))


def html_of(name: str) -> str:
    digest, base_url = golden_cases()[name]
    body = (
        Renderer(sender=SENDER, links=Links(SIGNER, base_url) if base_url else None)
        .render(digest, NOW)
        .get_body(("html",))
    )
    assert body is not None
    return str(body.get_content())


def test_on_a_phone_the_email_fits_the_screen_without_sideways_scrolling(tmp_path: Path) -> None:
    seen = look(tmp_path, html_of("normal"), 390)
    assert seen["viewport"] == 390
    assert seen["scrollWidth"] == 390
    assert seen["columnWidth"] == 390
    assert seen["footer"] is True


def test_on_a_desktop_the_column_is_at_most_640_px(tmp_path: Path) -> None:
    seen = look(tmp_path, html_of("trending"), 1200)
    assert seen["columnWidth"] == 640
    assert seen["scrollWidth"] == seen["viewport"]


def test_dark_mode_switches_to_the_dark_palette(tmp_path: Path) -> None:
    light = look(tmp_path, html_of("one-paper"), 800)
    dark = look(tmp_path, html_of("one-paper"), 800, dark=True)
    assert light["columnBackground"] == "rgb(255, 255, 255)"
    assert dark["columnBackground"] == "rgb(39, 39, 42)"  # #27272a from the @media rule
    assert dark["bodyBackground"] == "rgb(24, 24, 27)"


def test_hostile_feed_text_does_not_run_or_render_in_a_browser(tmp_path: Path) -> None:
    digest = hostile_digest()
    body = Renderer(sender=SENDER).render(digest, NOW).get_body(("html",))
    assert body is not None
    html = str(body.get_content()).replace("alert(", "window.pwned=true;alert(")
    seen = look(tmp_path, html, 800)
    assert seen["pwned"] is False
    assert seen["images"] == 0 and seen["forms"] == 0
