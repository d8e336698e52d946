"""Renders sample digests and the web app's pages and photographs them in headless Chromium:
``make screenshots``.

Two digests (a keyword digest and the trending digest, from the bundled seed captures), each at 390 px
(a phone) and 1200 px (a desktop), in light and dark colour schemes; and the pages a real ``digest serve``
on 127.0.0.1 shows (sign-up, confirm, unsubscribe) at both widths; into docs/screenshots/. Chromium is
Debian's ``chromium`` package, started with the flags that keep it off the network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

from digest.email.render import Renderer
from digest.models import Digest, Paper, Profile, Subscriber
from digest.selection.index import PaperIndex
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
    }


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
    """The sign-up, confirm and unsubscribe pages of a real ``digest serve`` on 127.0.0.1."""
    import os
    import socket
    import time

    from digest.subscriptions import Request, confirm_link
    from digest.tokens import Purpose

    key = "screenshots-only-signing-key-0123456789abc"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    cfg = tmp / "web.toml"
    samples = REPO / "config" / "samples" / "*.txt"
    cfg.write_text(
        f'database = "web.sqlite3"\nbase_url = "{base}"\n'
        f'[[sources]]\nkind = "snapshot"\nname = "samples"\npath = "{samples}"\n',
        encoding="utf-8",
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}, "DIGEST_SECRET_KEY": key}
    digest_cmd = str(Path(sys.executable).parent / "digest")
    ada = ["subscribe", "ada@example.org", "-k", "speculative decoding", "-k", "RAG", "--max", "5"]
    for command in (ada, ["ingest"]):
        subprocess.run([digest_cmd, *command, "--config", str(cfg)], env=env, check=True, capture_output=True)
    server = subprocess.Popen([digest_cmd, "serve", "--port", str(port), "--config", str(cfg)], env=env)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        signer = Signer([key])
        asked = Request.from_form({"email": "ada@example.org", "keywords": "speculative decoding, RAG"})
        pages = {
            "web-subscribe": f"{base}/",
            "web-confirm": confirm_link(signer, base, asked),
            "web-unsubscribe": f"{base}/u/{signer.make(Purpose.UNSUBSCRIBE, 'ada@example.org')}",
            "web-manage": f"{base}/m/{signer.make(Purpose.MANAGE, 'ada@example.org')}",
        }
        for name, url in pages.items():
            for size, width, height in (("phone", 390, 1400), ("desktop", 1200, 1100)):
                shoot(
                    browser, url, OUT / f"{name}-{size}.png", width, height, "light", tmp / f"p-{name}-{size}"
                )
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    renderer = Renderer(
        sender="Paper Digest <digest@example.org>",
        base_url="https://digest.example.org",
        signer=Signer(["screenshots-only-signing-key-0123456789abc"]),
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
