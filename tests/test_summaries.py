"""The optional TL;DR: asked of a local HTTP server that speaks the chat-completions API, once per paper and
language, bounded in time, in each reader's language, with the key sentence whenever there is none."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import FIXTURES, free_port, read_maildir, serving, write_config
from running import cli, digest_env, web

NOW = datetime(2024, 11, 18, 6, 0, tzinfo=UTC)
READERS = [
    {"email": "ada@example.org", "keywords": ["speculative decoding", "precision"]},
    {"email": "hans@example.org", "keywords": ["speculative decoding", "precision"], "language": "German"},
]


@dataclass
class Model:
    """A chat-completions server: answers "[language] <title> works." for each paper; for titles in
    ``slow`` after 3 s, in ``broken`` with a 500, in ``huge`` at 100 KB, in ``trickle`` a byte every half
    second; keeps what it was asked."""

    base: str = ""
    asked: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    slow: tuple[str, ...] = ()
    broken: tuple[str, ...] = ()
    huge: tuple[str, ...] = ()
    trickle: tuple[str, ...] = ()
    linky: tuple[str, ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def model() -> Iterator[Model]:
    state = Model()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.asked.append(body)
                state.keys.append(self.headers.get("Authorization", ""))
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            system, user = (m["content"] for m in body["messages"])
            language = re.search(r"Write it in (\w+)\.", system).group(1)
            title = re.search(r"Title: (.*)", user).group(1)
            if any(s in title for s in state.slow):
                time.sleep(3)
            if any(s in title for s in state.broken):
                self.send_error(500)
                return
            if any(s in title for s in state.trickle):  # each byte well within a read timeout, never done
                self.send_response(200)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(12):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.5)
                return
            content = (
                "x" * 100_000
                if any(s in title for s in state.huge)
                else f"**TL;DR:** [{language}] {title} works."
            )
            if any(
                s in title for s in state.linky
            ):  # as an abstract written to steer the model might make it
                content += " Log in at https://evil.example/login or evil.com to read it."
            answer = json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": content}}]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    with serving(Handler) as base:
        state.base = base
        yield state


def _config(tmp_path: Path, model: Model | None, port: int | None = None, **summaries: Any) -> Path:
    tables = {}
    if model is not None:
        tables["summaries"] = {"url": f"{model.base}/v1", "model": "tiny", "timeout": 1.0, **summaries}
    source = {"kind": "feed", "name": "arxiv", "path": str(FIXTURES / "arxiv_cs_CL.rss")}
    top = {"base_url": f"http://127.0.0.1:{port}"} if port else None
    return write_config(tmp_path, sources=[source], subscribers=READERS, tables=tables, top=top)


def _texts(tmp_path: Path) -> dict[str, str]:
    return {
        str(m["To"]): m.get_body(("plain",)).get_content() for m in read_maildir(tmp_path / "var" / "outbox")
    }


def test_each_reader_gets_tldrs_in_their_language_asked_once_per_paper(tmp_path: Path, model: Model) -> None:
    model.linky = ("Scaling Laws",)
    cfg = _config(tmp_path, model)
    env = digest_env(DIGEST_SUMMARIES__API_KEY="sk-test-key")
    ran = cli("run", "--config", str(cfg), env=env).check()
    assert "sk-test-key" not in ran.stdout + ran.stderr
    texts = _texts(tmp_path)
    ada, hans = texts["ada@example.org"], texts["hans@example.org"]
    assert "TL;DR: [english] DySpec: Faster Speculative Decoding" in ada
    assert "TL;DR: [german] DySpec: Faster Speculative Decoding" in hans and "[english]" not in hans
    assert "**" not in ada  # markdown and the "TL;DR:" the model wrote are dropped
    assert "TL;DR: [english] Scaling Laws for Precision works. Log in at or to read it." in " ".join(
        ada.split()
    )
    assert "evil" not in ada  # a link the model wrote never reaches the email
    # Three new papers in two languages: six requests, each with the key and the model named.
    assert len(model.asked) == 6 and set(model.keys) == {"Bearer sk-test-key"}
    assert {a["model"] for a in model.asked} == {"tiny"}
    again = cli("run", "--config", str(cfg), env=env).check()
    assert again.returncode == 0 and len(model.asked) == 6  # kept: never asked twice


def test_the_pages_show_the_readers_tldrs_too(tmp_path: Path, model: Model) -> None:
    port = free_port()
    cfg = _config(tmp_path, model, port)
    cli("run", "--config", str(cfg)).check()
    view = re.search(r"View in a browser:\s+\S+?(/v/\S+)", _texts(tmp_path)["hans@example.org"])
    assert view
    with web(cfg, port, digest_env()) as base:
        matches = httpx.get(f"{base}{view.group(1)}/all").text
        sent = httpx.get(f"{base}{view.group(1)}").text
    assert "TL;DR: [german] DySpec" in matches and "[german] DySpec" in sent and "[english]" not in matches


def test_a_slow_or_failing_model_never_holds_a_digest_back(tmp_path: Path, model: Model) -> None:
    model.slow, model.trickle, model.huge = ("Scaling Laws",), ("Markup",), ("DySpec",)
    cfg = _config(tmp_path, model, budget=2.0, concurrency=3)
    started = time.monotonic()
    cli("run", "--config", str(cfg), env=digest_env()).check()
    assert time.monotonic() - started < 5  # the budget, not the trickling answer (6 s), bounds the run
    ada = _texts(tmp_path)["ada@example.org"]
    assert "TL;DR" not in ada
    assert "Found: " in ada  # the key sentence, as without a model
    assert "Scaling Laws for Precision" in ada and "DySpec" in ada


def test_off_by_default(tmp_path: Path, model: Model) -> None:
    cli("run", "--config", str(_config(tmp_path, None)), env=digest_env()).check()
    assert model.asked == [] and "TL;DR" not in _texts(tmp_path)["ada@example.org"]


def test_an_api_key_in_the_config_file_is_refused(tmp_path: Path, model: Model) -> None:
    cfg = _config(tmp_path, model, api_key="sk-in-the-file")
    ran = cli("run", "--config", str(cfg))
    assert (
        ran.returncode == 2
        and "DIGEST_SUMMARIES__API_KEY" in ran.stderr
        and "sk-in-the-file" not in ran.stderr
    )


def test_a_new_version_is_summarised_again(tmp_path: Path, model: Model) -> None:
    from digest.config_tables import SummariesConfig
    from digest.models import Paper
    from digest.run.summaries import summarise
    from digest.store import Store

    config = SummariesConfig(url=f"{model.base}/v1", timeout=2.0)
    with Store.open(tmp_path / "d.sqlite3") as store:
        from digest.models import Subscriber

        store.readers.add(Subscriber("ada@example.org"), NOW)
        store.papers.ingest([Paper("Old", "It works.", arxiv_id="2411.00001", version=1)], NOW)
        assert summarise(config, store, NOW, lookback_days=7).made == 1
        assert summarise(config, store, NOW, lookback_days=7).made == 0
        new = Paper("Old", "It works better.", arxiv_id="2411.00001", version=2, revision=True)
        store.papers.ingest([new], NOW + timedelta(hours=1))
        assert summarise(config, store, NOW + timedelta(hours=1), lookback_days=7).made == 1
        (paper,) = store.papers.recent(NOW - timedelta(days=1))
        assert paper.tldr("English") == "[english] Old works."
