"""Every page a reader sees, and the emails, checked by axe-core in Debian's chromium (axe-selenium-python
bundles axe-core) in light and dark mode, with no violation allowed; and the tap targets measured (every
button and field at least 24 px high, WCAG 2.5.8), which that axe-core predates.

The pages come from a real web app on a real socket over a real store: a reader who was sent a digest,
saved a paper and paused, so that every part of every page is there to be checked.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_SECRET_KEY, free_port, mails_to, samples_source, write_config
from running import cli, digest_env, web
from test_web_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401 (the fixture)

from digest.tokens import Purpose, Signer

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="chromium is not installed"),
]
SIGNER = Signer([TEST_SECRET_KEY])
INTERACTIVE = "button, input:not([type=hidden]), select, textarea"


def violations(driver: Any) -> list[str]:
    """axe-core's violations on the page shown, one line each (rule, impact, the elements)."""
    from axe_selenium_python import Axe

    axe = Axe(driver)
    axe.inject()
    found = axe.run()["violations"]
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]}" for v in found]


def small_targets(driver: Any) -> list[str]:
    """Buttons and fields shorter than 24 CSS pixels (WCAG 2.5.8, target size minimum)."""
    found = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(e => e.offsetParent !== null)"
        ".map(e => [e.outerHTML.slice(0, 80), e.getBoundingClientRect().height])",
        INTERACTIVE,
    )
    return [f"{html} ({height:.0f} px)" for html, height in found if height < 24]


def dark(driver: Any, on: bool) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]},
    )


@pytest.fixture
def reader_pages(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A served app and the paths of its pages, for a reader with a sent digest, a saved paper and a pause."""
    import httpx

    port = free_port()
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, sources=[samples_source()])
    digest = ["--config", str(cfg)]
    sections = ["--section", "keywords=2", "--section", "trending=1"]  # a digest in sections
    cli(
        *digest,
        "subscribe",
        "ada@example.org",
        "-k",
        "model",
        "--about",
        "reasoning",
        "--max",
        "4",
        *sections,
    ).check()
    cli(*digest, "run").check()
    (mail,) = mails_to(tmp_path, "ada@example.org")
    text = mail.get_body(("plain",)).get_content()
    assert "Your keywords\n-------------" in text and "Trending in your area" in text
    view = re.search(r"View in a browser:\s+\S+?(/v/\S+)", text)
    more = re.search(r"(/f/\S+)/1/more", text)
    assert view and more
    manage = f"/m/{SIGNER.make(Purpose.MANAGE, 'ada@example.org')}"
    leave = f"/u/{SIGNER.make(Purpose.UNSUBSCRIBE, 'ada@example.org')}"
    with web(cfg, port, digest_env()) as base, httpx.Client(base_url=base) as client:
        csrf = client.get(manage).cookies.get("digest_csrf") or ""
        client.post(f"{more.group(1)}/1/save", data={"csrf": csrf})
        client.post(
            manage,
            data={
                "csrf": csrf,
                "keywords": "model",
                "about": "reasoning",
                "max_papers": "4",
                "cap_keywords": "2",
                "cap_trending": "1",
                "action": "save",
                "paused": "yes",
            },
        )
        confirm = client.post(
            "/",
            data={"csrf": csrf, "email": "zoe@example.org", "keywords": "RAG"},
        )
        assert confirm.status_code == 200
        (zoe,) = mails_to(tmp_path, "zoe@example.org", expect=1)
        link = re.search(r"(/c/\S+)", zoe.get_body(("plain",)).get_content())
        assert link
        html = {
            "digest email": mail.get_body(("html",)).get_content(),
            "confirmation email": zoe.get_body(("html",)).get_content(),
        }
        yield (
            base,
            {
                "sign-up": "/",
                "sample digest": "/sample",
                "lost link": "/lost",
                "confirm": link.group(1),
                "manage (paused, saved paper)": manage,
                "past digests": f"{manage}/archive",
                "all matches": f"{view.group(1)}/all",
                "a sent digest": view.group(1),
                "more like this": f"{more.group(1)}/1/more",
                "unsubscribe": leave,
                "invalid link": "/m/forged",
                **{
                    name: "data:text/html;base64," + base64.b64encode(body.encode()).decode()
                    for name, body in html.items()
                },
            },
        )


def test_every_page_and_email_has_no_axe_violation_in_light_and_dark(reader_pages: Any, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    base, pages = reader_pages
    found: dict[str, list[str]] = {}

    def check(name: str) -> None:
        problems = violations(browser) + small_targets(browser)
        if problems:
            found[name] = problems

    for width in (1280, 390):  # desktop, and a phone
        browser.set_window_size(width, 1000)
        for mode in (False, True):
            dark(browser, mode)
            where = f"{width} px, {'dark' if mode else 'light'}"
            for name, path in pages.items():
                browser.get(path if path.startswith("data:") else base + path)
                check(f"{name} ({where})")
            browser.get(base + pages["unsubscribe"])
            browser.find_element(By.XPATH, "//button[text()='Unsubscribe']").click()
            check(f"unsubscribed ({where})")
            browser.find_element(By.XPATH, "//button[text()='Resubscribe']").click()
            check(f"resubscribed ({where})")
    assert found == {}, "\n".join(f"{page}: {p}" for page, ps in found.items() for p in ps)
