"""Renders sample digests and the web app's pages and photographs them in headless Chromium:
``make screenshots``.

Three digests (a keyword digest, the trending digest, from the bundled seed captures, and a digest in
sections with an update), each at 390 px
(a phone) and 1200 px (a desktop), in light and dark colour schemes; and the pages a real ``digest serve``
on 127.0.0.1 shows (sign-up, a sample digest, a lost link, confirm, the manage page, past digests, a day's
matches, "save", unsubscribe) at both widths in both schemes; into docs/screenshots/. Chromium is
Debian's ``chromium`` package, started with the flags that keep it off the network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from digest.email.render import Renderer
from digest.links import Links
from digest.models import Digest, Paper, Profile, Subscriber
from digest.selection.index import PaperIndex
from digest.selection.sections import arranged
from digest.sources.feed import parse_feed
from digest.sources.snapshot import parse_snapshot
from digest.tokens import Signer

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "screenshots"
DAY = date(2025, 11, 22)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
SIZES = {"phone": (390, 2200), "desktop": (1200, 1700)}


def seed_papers() -> list[Paper]:
    papers: dict[str, Paper] = {}
    for f in sorted((REPO / "config" / "samples").glob("*.txt")):
        for p in parse_snapshot(f.read_text(encoding="utf-8"), source=f.name, today=DAY):
            papers.setdefault(p.key, p)
    return list(papers.values())


def sample_digests() -> dict[str, Digest]:
    papers = seed_papers()
    index = PaperIndex(papers)
    ada = Subscriber("ada@example.org", "Ada", Profile(("speculative decoding", "RAG", "quantiz*"), (), 4))
    matches, total = index.select(ada.profile, set(), 4)
    grace = Subscriber("grace@example.org", "Grace", Profile((), (), 3))
    trending, _ = index.select(grace.profile, set(), 3)
    return {
        "keywords": Digest(ada, tuple(matches), DAY, more=total - len(matches)),
        "trending": Digest(grace, tuple(trending), DAY, more=0),
        "sections": sections_digest(papers),
    }


def sections_digest(papers: list[Paper]) -> Digest:
    """A digest in sections: a reader who follows an author, keywords and a description, with caps and a
    trending paper, and a paper they were sent before told of as updated (the arXiv-shaped fixture's
    papers beside the seed papers: the seed captures name no authors)."""
    listing = (REPO / "tests" / "fixtures" / "arxiv_cs_CL.rss").read_bytes()
    found, _ = parse_feed(listing, source="arxiv")
    pool = [replace(p, ref=i) for i, p in enumerate([*(p for p in found if not p.revision), *papers], 1)]
    index = PaperIndex(pool)
    about = "efficient LLM inference: KV cache compression, quantization of large language models"
    profile = Profile(
        ("speculative decoding", "RAG"),
        max_papers=6,
        about=about,
        authors=("T. Kumar",),
        sections=(("keywords", 2), ("similar", 2), ("trending", 1)),
    )
    chosen = arranged(index, profile, (), index.taste(about, []))
    updated = replace(pool[-1], version=2)
    ada = Subscriber("ada@example.org", "Ada", profile)
    return Digest(ada, chosen.matches, DAY, more=chosen.more, updates=(updated,))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        sys.exit("chromium not found: `make screenshots` installs Debian's chromium package")
    return found


def shoot(browser: str, url: str, target: Path, width: int, height: int, scheme: str, profile: Path) -> None:
    extra = (
        ["--force-dark-mode", "--blink-settings=preferredColorScheme=0"]
        if scheme == "dark"
        else ["--blink-settings=preferredColorScheme=1"]
    )
    subprocess.run(
        [
            browser,
            *FLAGS,
            *extra,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={target}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"wrote {target.relative_to(REPO)}")


def web_pages(browser: str, tmp: Path) -> None:
    """The pages a reader sees on a real ``digest serve`` on 127.0.0.1, at both widths in light and dark:
    sign-up, the sample digest, a lost link, confirm, the manage page (a saved paper, the feed, a pause
    banner), past digests, all of a day's matches, "save" and unsubscribe."""
    import os
    import socket
    import time

    from digest.store import Store
    from digest.subscriptions import Request

    key = "screenshots-only-signing-key-0123456789abc"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    cfg = tmp / "web.toml"
    samples = REPO / "config" / "samples" / "*.txt"
    cfg.write_text(
        f'database = "web.sqlite3"\nbase_url = "{base}"\n[delivery]\nmaildir = "outbox"\n'
        f'[[sources]]\nkind = "snapshot"\nname = "samples"\npath = "{samples}"\n',
        encoding="utf-8",
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}, "DIGEST_SECRET_KEY": key}
    digest_cmd = str(Path(sys.executable).parent / "digest")
    ada = [
        "subscribe",
        "ada@example.org",
        "-k",
        "speculative decoding",
        "-k",
        "RAG",
        "-k",
        "model",
        "--max",
        "5",
    ]
    for command in (ada, ["run"]):
        subprocess.run([digest_cmd, *command, "--config", str(cfg)], env=env, check=True, capture_output=True)
    now = datetime.now(UTC)
    with Store.open(tmp / "web.sqlite3") as store:
        (sent,) = store.outbox.sent_digests("ada@example.org")
        store.library.save("ada@example.org", sent.refs[0], now)
        store.readers.pause("ada@example.org", (now + timedelta(days=10)).date(), now)
    server = subprocess.Popen([digest_cmd, "serve", "--port", str(port), "--config", str(cfg)], env=env)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        signer = Signer([key])
        links = Links(signer, base)
        asked = Request.from_form({"email": "zoe@example.org", "keywords": "speculative decoding, RAG"})
        manage = links.manage("ada@example.org")
        pages = {
            "web-subscribe": f"{base}/",
            "web-sample": f"{base}/sample",
            "web-lost": f"{base}/lost",
            "web-confirm": links.confirm(asked.token_data(now)),
            "web-manage": manage,
            "web-archive": f"{manage}/archive",
            "web-all-matches": f"{links.view('ada@example.org', sent.day)}/all",
            "web-save": f"{links.feedback('ada@example.org', sent.day)}/1/save",
            "web-unsubscribe": links.unsubscribe("ada@example.org"),
        }
        for name, url in pages.items():
            for size, width, height in (("phone", 390, 1600), ("desktop", 1200, 1300)):
                for scheme in ("light", "dark"):
                    target = OUT / f"{name}-{size}-{scheme}.png"
                    shoot(browser, url, target, width, height, scheme, tmp / f"p-{name}-{size}-{scheme}")
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    renderer = Renderer(
        sender="Paper Digest <digest@example.org>",
        links=Links(Signer(["screenshots-only-signing-key-0123456789abc"]), "https://digest.example.org"),
    )
    browser = chromium()
    with tempfile.TemporaryDirectory() as tmp:
        for name, digest in sample_digests().items():
            msg = renderer.render(digest, datetime(2025, 11, 22, 7, 0, tzinfo=UTC))
            body = msg.get_body(("html",))
            assert body is not None
            page = Path(tmp) / f"{name}.html"
            page.write_text(body.get_content(), encoding="utf-8")
            for size, (width, height) in SIZES.items():
                for scheme in ("light", "dark"):
                    target = OUT / f"{name}-{size}-{scheme}.png"
                    profile = Path(tmp) / f"profile-{name}-{size}-{scheme}"
                    shoot(browser, page.as_uri(), target, width, height, scheme, profile)
        web_pages(browser, Path(tmp))


if __name__ == "__main__":
    main()
