"""The manage page in a real browser (Debian's chromium, driven by Selenium through chromium-driver)
against a real `digest serve`: the preview follows what the reader types, without a reload, under the CSP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TEST_SECRET_KEY, free_port, mails_to, read_maildir, samples_source, write_config
from running import cli, serve_process

from digest.tokens import Purpose, Signer

REFERENCES = Path(__file__).resolve().parent / "fixtures" / "references"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# Under CI the browser and its driver are part of the set-up (.ci/run installs them): there, missing fails.
if (CHROMIUM is None or CHROMEDRIVER is None) and os.environ.get("CI") == "true":
    raise RuntimeError(
        "chromium or chromium-driver is not installed; .ci/run installs both (Debian's packages)"
    )
pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None, reason="chromium and chromium-driver are not installed"
    ),
]


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never look for drivers on the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def type_topics_and_see_the_preview_follow(browser: Any) -> None:
    """Replace the topics with "diffusion" and wait until the preview shows diffusion papers only."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    keywords = browser.find_element(By.ID, "keywords")
    keywords.clear()
    keywords.send_keys("diffusion")
    WebDriverWait(browser, 10).until(
        lambda d: (
            "matched: diffusion" in d.find_element(By.ID, "preview").text
            and "Speculative Decoding" not in d.find_element(By.ID, "preview").text
        )
    )


def test_the_preview_follows_typing_and_saving_works(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, sources=[samples_source()])
    for command in (["subscribe", "ada@example.org", "-k", "speculative decoding", "--max", "5"], ["ingest"]):
        assert cli(*command, "--config", str(cfg)).returncode == 0
    url = f"http://127.0.0.1:{port}/m/{Signer([TEST_SECRET_KEY]).make(Purpose.MANAGE, 'ada@example.org')}"
    with serve_process(cfg, port):
        browser.set_window_size(390, 1000)
        browser.get(url)
        preview = browser.find_element(By.ID, "preview").text
        assert "Speculative Decoding" in preview and "5 papers" in preview
        assert (
            browser.execute_script("return document.documentElement.scrollWidth") <= 390
        )  # no sideways scroll

        type_topics_and_see_the_preview_follow(browser)
        assert browser.current_url == url  # updated in place, not by a reload
        blocked = [
            e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]
        ]
        assert blocked == []

        browser.find_element(By.CSS_SELECTOR, "button[value=save]").click()
        WebDriverWait(browser, 10).until(lambda d: "Saved." in d.page_source)
    listed = cli("subscribers", "--json", "--config", str(cfg))
    assert '"diffusion"' in listed.stdout


def test_a_reader_subscribes_tunes_and_leaves_in_a_real_browser(tmp_path: Path, browser: Any) -> None:
    """The whole reader's journey: sign up in the browser, the confirmation email arrives in the
    Maildir, follow it, change the topics and watch the preview follow, `digest run` sends those topics,
    a mailbox provider's one-click POST (no browser, no cookie) unsubscribes, the next run sends nothing."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, sources=[samples_source()])
    digest = ["--config", str(cfg)]
    assert cli(*digest, "ingest").returncode == 0
    outbox = tmp_path / "var" / "outbox"
    with serve_process(cfg, port) as (base, _):
        browser.get(f"{base}/")
        browser.find_element(By.ID, "email").send_keys("zoe@example.org")
        browser.find_element(By.ID, "keywords").send_keys("speculative decoding")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(browser, 10).until(lambda d: "Check your inbox" in d.page_source)

        (confirmation,) = mails_to(tmp_path, "zoe@example.org", expect=1)
        link = re.search(r"(http://127\.0\.0\.1:\d+/c/\S+)", confirmation.get_body(("plain",)).get_content())
        assert link
        browser.get(link.group(1))
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        WebDriverWait(browser, 10).until(lambda d: "You are subscribed" in d.page_source)

        browser.find_element(By.LINK_TEXT, "Tune your topics and preview your digest").click()
        WebDriverWait(browser, 10).until(
            lambda d: "Speculative Decoding" in d.find_element(By.ID, "preview").text
        )
        type_topics_and_see_the_preview_follow(browser)
        browser.find_element(By.CSS_SELECTOR, "button[value=save]").click()
        WebDriverWait(browser, 10).until(lambda d: "Saved." in d.page_source)

        run = cli(*digest, "run", "--json")
        assert run.returncode == 0, run.stderr
        (zoe,) = json.loads(run.stdout)["subscribers"]
        assert zoe["status"] == "sent" and zoe["papers"]
        assert all(p["matched"] == ["diffusion"] for p in zoe["papers"])
        (mail,) = [m for m in read_maildir(outbox) if "Confirm" not in str(m["Subject"])]
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        one_click = re.search(r"<(http[^>]+/u/[^>]+)>", str(mail["List-Unsubscribe"]))
        assert one_click

        # As Gmail or Yahoo send it: a bare POST, no cookie, no CSRF token, no browser.
        left = httpx.post(one_click.group(1), data={"List-Unsubscribe": "One-Click"})
        assert left.status_code == 200 and "unsubscribed" in left.text

    again = cli(*digest, "run", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["subscribers"] == []
    assert len(read_maildir(outbox)) == 2  # the confirmation and one digest, nothing more


def test_a_reader_signs_up_again_recovers_the_link_pauses_and_comes_back(
    tmp_path: Path, browser: Any
) -> None:
    """In a real browser against `digest serve`: signing up again with an address that has a digest keeps
    its profile (the email links to the page instead), a lost link is mailed on request, a pause until a
    date shows a banner whose Resume ends it, and the unsubscribe page's Resubscribe brings the digest back."""
    from datetime import UTC, datetime, timedelta

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, sources=[samples_source()])
    digest = ["--config", str(cfg)]
    cli(
        *digest, "subscribe", "ada@example.org", "-k", "speculative decoding", "--cadence", "weekdays"
    ).check()
    cli(*digest, "ingest").check()

    def page_link(expect: int) -> str:
        mail = mails_to(tmp_path, "ada@example.org", expect=expect)[-1]
        found = re.search(r"(http://127\.0\.0\.1:\d+/m/\S+)", mail.get_body(("plain",)).get_content())
        assert found and "/c/" not in mail.get_body(("plain",)).get_content()
        return found.group(1)

    with serve_process(cfg, port) as (base, _):
        browser.get(f"{base}/")
        browser.find_element(By.ID, "email").send_keys("ada@example.org")
        browser.find_element(By.ID, "keywords").send_keys("diffusion")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(browser, 10).until(lambda d: "Check your inbox" in d.page_source)
        browser.get(page_link(1))
        assert browser.find_element(By.ID, "keywords").get_attribute("value") == "speculative decoding"

        browser.get(f"{base}/")
        browser.find_element(By.LINK_TEXT, "Get the link to your page").click()
        browser.find_element(By.ID, "email").send_keys("ada@example.org")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(browser, 10).until(lambda d: "Check your inbox" in d.page_source)
        browser.get(page_link(2))

        until = (datetime.now(UTC) + timedelta(days=10)).date()
        browser.find_element(By.NAME, "paused").click()
        browser.execute_script(
            "document.getElementById('paused_until').value = arguments[0]", until.isoformat()
        )
        browser.find_element(By.CSS_SELECTOR, "button[value=save]").click()
        WebDriverWait(browser, 10).until(lambda d: "Saved." in d.page_source)
        assert f"paused until {until:%A %d %B %Y}" in browser.find_element(By.CSS_SELECTOR, ".banner").text
        browser.find_element(By.XPATH, "//button[text()='Resume my digest']").click()
        WebDriverWait(browser, 10).until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".banner"))

        browser.get(f"{base}/u/{Signer([TEST_SECRET_KEY]).make(Purpose.UNSUBSCRIBE, 'ada@example.org')}")
        browser.find_element(By.XPATH, "//button[text()='Unsubscribe']").click()
        WebDriverWait(browser, 10).until(lambda d: "You are unsubscribed" in d.page_source)
        browser.find_element(By.XPATH, "//button[text()='Resubscribe']").click()
        WebDriverWait(browser, 10).until(lambda d: "Your digest is on" in d.page_source)
    (ada,) = json.loads(cli(*digest, "subscribers", "--json").stdout)
    assert ada["active"] and ada["keywords"] == ["speculative decoding"] and ada["cadence"] == "weekdays"
    assert "paused_until" not in ada


def test_a_reader_saves_a_paper_downloads_bibtex_imports_zotero_and_opens_archive_and_feed(
    tmp_path: Path, browser: Any
) -> None:
    """In chromium against `digest serve`: "Save" from the email, the BibTeX download from the manage page,
    a Zotero export uploaded as seed papers, the past digests and all of a day's matches, and the feed."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, sources=[samples_source()])
    digest = ["--config", str(cfg)]
    cli(*digest, "subscribe", "ada@example.org", "-k", "model", "--max", "3").check()
    cli(*digest, "run").check()
    (mail,) = read_maildir(tmp_path / "var" / "outbox")
    text = mail.get_body(("plain",)).get_content()
    save = re.search(r"Save: (http\S+/1/save)", text)
    archive = re.search(r"Past digests:\s+(http\S+)", text)
    assert save and archive
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    with serve_process(cfg, port):
        browser.get(save.group(1))
        browser.find_element(By.XPATH, "//button[text()='Save this paper']").click()
        WebDriverWait(browser, 10).until(lambda d: "among your saved papers" in d.page_source)
        browser.find_element(By.PARTIAL_LINK_TEXT, "download them as BibTeX").click()
        WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "saved"))
        browser.find_element(By.LINK_TEXT, "BibTeX").click()
        deadline = time.monotonic() + 10
        while not (downloads / "saved-papers.bib").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        bib = (downloads / "saved-papers.bib").read_text(encoding="utf-8")
        assert bib.startswith("@misc{") and "title = {" in bib

        browser.find_element(By.ID, "import-file").send_keys(str(REFERENCES / "zotero.csv"))
        browser.find_element(By.XPATH, "//button[text()='Import']").click()
        WebDriverWait(browser, 10).until(lambda d: "Seed papers imported" in d.page_source)
        assert (
            "2 papers recognised (1 by arXiv id, 1 by title); not recognised: line 4" in browser.page_source
        )

        browser.get(archive.group(1))
        browser.find_element(By.PARTIAL_LINK_TEXT, "matched").click()
        WebDriverWait(browser, 10).until(lambda d: "All " in d.title and "matches of" in d.title)
        assert len(browser.find_elements(By.CSS_SELECTOR, "ol.papers > li")) > 3

        browser.get(archive.group(1).removesuffix("/archive"))
        feed = browser.find_element(By.LINK_TEXT, "Atom feed").get_attribute("href")
        assert feed and httpx.get(feed).headers["content-type"].startswith("application/atom+xml")
        browser.get(feed)
        assert "Atom" not in browser.title and "model" in browser.page_source  # the feed's XML, shown
    (ada,) = json.loads(cli(*digest, "subscribers", "--json").stdout)
    assert ada["seeds"] == [
        "1706.03762",
        "Mixture of Tunable Experts -- Behavior Modification of DeepSeek-R1 at Inference Time",
    ]
