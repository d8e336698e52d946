"""One-sentence TL;DRs from the operator's language model: optional, bounded, made once and kept.

With ``[summaries] url`` set, the run that reads the sources then asks a chat-completions endpoint (llama.cpp's
server, Ollama, vLLM or a hosted API: anything that speaks OpenAI's ``POST /chat/completions``) for a
TL;DR of each new paper, in each language its readers chose (the operator's ``language`` for the others).
Each is kept in the store (``summaries``): a paper is never asked for twice in one language, and a new
version of it is asked for again. The asking is bounded: at most ``per_run`` requests, ``concurrency`` at
a time, each within ``timeout`` seconds, all within ``budget`` seconds; a request that fails or is late
is given up and asked again by the next run. Nothing waits on it beyond the budget: a paper without a
TL;DR goes out with its key sentence (``selection.finding``), as it always did.

What comes back is untrusted text: read up to ``RESPONSE_MAX`` bytes, made one line, cut at ``TLDR_MAX``
characters, shown escaped like a title.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import SecretStr

from digest.models import Paper
from digest.redact import one_line
from digest.store import Store

TLDR_MAX = 300  # characters of a TL;DR kept
# A link in any form a mail client makes clickable: a scheme, "www.", a host with a path or a common
# top-level domain, a markdown link.
_LINK = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S*|\[[^\]]*\]\([^)]*\)|\b[\w-]+(?:\.[\w-]+)+/\S*"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|ai|co|dev|app|xyz|info|me|ly|link|site)\b\S*",
    re.IGNORECASE,
)
RESPONSE_MAX = 64_000  # bytes of an answer read
ABSTRACT_SENT = 4_000  # characters of an abstract sent
log = logging.getLogger("digest")


class SummariesConfig(Protocol):
    """What asking for TL;DRs reads of ``[summaries]`` (``config_tables.SummariesConfig``)."""

    @property
    def url(self) -> str | None: ...
    @property
    def model(self) -> str: ...
    @property
    def api_key(self) -> SecretStr | None: ...
    @property
    def language(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def budget(self) -> float: ...
    @property
    def per_run(self) -> int: ...
    @property
    def concurrency(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Summarised:
    """What a run's asking came to: TL;DRs made, requests that failed or ran late, and those not asked
    for (over ``per_run`` or the budget: the next run asks)."""

    made: int = 0
    failed: int = 0
    left: int = 0


def prompt(paper: Paper, language: str) -> list[dict[str, str]]:
    """The chat messages that ask for one paper's TL;DR in ``language``.

    >>> prompt(Paper("T", "A."), "German")[0]["content"].endswith("Write it in German.")
    True
    """
    system = (
        "You write the TL;DR of a research paper for a daily digest: one plain sentence of at most 30 words"
        " that says what the paper found or showed, from its title and abstract. No preamble, no quotes, no"
        f" markdown. Write it in {language}."
    )
    user = f"Title: {one_line(paper.title)}\n\nAbstract: {one_line(paper.abstract)[:ABSTRACT_SENT]}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def tldr_of(answer: Any) -> str:
    """The TL;DR in a chat-completions answer (parsed JSON): its first choice's text made one line, stripped
    of quotes, markdown emphasis and links (a TL;DR never needs one, and an abstract written to steer the
    model must not put one in our email), cut at ``TLDR_MAX``; "" when there is none.

    >>> tldr_of({"choices": [{"message": {"content": '  "**TL;DR:** It  works.\\n"'}}]})
    'It works.'
    >>> tldr_of({"choices": [{"message": {"content": "It works 3.5x faster; see https://a.b/x, evil.com or c.d/e"}}]})
    'It works 3.5x faster; see or'
    """
    try:
        text = str(answer["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        return ""
    text = " ".join(_LINK.sub(" ", one_line(text)).split())
    text = text.replace("**", "").replace("__", "").strip().strip("\"'“”").strip()
    for label in ("TL;DR:", "TLDR:", "TL;DR", "Summary:"):
        if text[: len(label)].casefold() == label.casefold():
            text = text[len(label) :].strip()
    if len(text) > TLDR_MAX:
        text = text[: TLDR_MAX - 1].rsplit(" ", 1)[0] + "…"
    return text


class Client:
    """A chat-completions endpoint, asked one paper at a time (``ask``), over one connection pool."""

    def __init__(self, config: SummariesConfig) -> None:
        import httpx  # only where summaries are set up

        assert config.url is not None
        self.config = config
        headers = {"Content-Type": "application/json"}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self.http = httpx.Client(base_url=config.url, headers=headers, follow_redirects=False)

    def ask(self, paper: Paper, language: str, timeout: float) -> str:
        """The TL;DR of ``paper`` in ``language`` ("" if the answer holds none); raises on an HTTP error, a
        timeout or an answer that is not JSON."""
        body = {
            "model": self.config.model,
            "messages": prompt(paper, language),
            "temperature": 0,
            "max_tokens": 120,
        }
        with self.http.stream("POST", "/chat/completions", json=body, timeout=timeout) as response:
            response.raise_for_status()
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > RESPONSE_MAX:
                    raise ValueError(f"the answer is longer than {RESPONSE_MAX} bytes")
        return tldr_of(json.loads(data))

    def close(self) -> None:
        self.http.close()


def summarise(
    config: SummariesConfig,
    store: Store,
    now: datetime,
    *,
    lookback_days: int,
    clock: Callable[[], float] = time.monotonic,
    client: Client | None = None,
) -> Summarised:
    """Ask for the TL;DRs the stored papers of the lookback window lack, in every language readers chose,
    within the bounds of ``config`` (see the module's docstring), and keep those that came."""
    if config.url is None:
        return Summarised()
    languages = sorted({lang or config.language.casefold() for lang in store.readers.languages()})
    wanted = store.papers.unsummarised(now - timedelta(days=lookback_days), languages, config.per_run + 1)
    left = max(len(wanted) - config.per_run, 0)
    wanted = wanted[: config.per_run]
    if not wanted:
        return Summarised()
    own = client is None
    client = client or Client(config)
    try:
        made, failed, unasked = _ask_all(client, config, wanted, clock)
    finally:
        if own:
            client.close()
    if made:
        store.papers.save_summaries(made, config.model, now)
    result = Summarised(len(made), failed, left + unasked)
    log.info("summaries: %d made, %d failed, %d left for the next run", *(result.made, failed, result.left))
    if failed:
        log.warning(
            "summaries: %d requests to %s failed or ran late; the next run asks again", failed, config.url
        )
    return result


def _ask_all(
    client: Client,
    config: SummariesConfig,
    wanted: Sequence[tuple[Paper, str]],
    clock: Callable[[], float],
) -> tuple[list[tuple[int, str, str]], int, int]:
    """(ref, language, text) of the TL;DRs that came, how many requests failed, how many were not sent."""
    deadline = clock() + config.budget
    made: list[tuple[int, str, str]] = []
    failed = 0
    queue = list(wanted)
    running: dict[Future[str], tuple[Paper, str]] = {}
    pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="summaries")
    try:
        while queue or running:
            while queue and len(running) < config.concurrency and (remaining := deadline - clock()) > 0:
                paper, language = queue.pop(0)
                timeout = min(config.timeout, remaining)
                running[pool.submit(client.ask, paper, language, timeout)] = (paper, language)
            if not running:
                break  # the budget is spent: the rest waits for the next run
            # A timeout bounds each read, not a whole answer a server trickles: the budget bounds the wait.
            done, _ = wait(running, timeout=max(deadline - clock(), 0.0), return_when=FIRST_COMPLETED)
            if not done:
                failed += len(running)  # late: given up (the client is closed after this, ending them)
                break
            for future in done:
                paper, language = running.pop(future)
                try:
                    text = future.result()
                except Exception as exc:  # a server's failure is this paper's, never the run's
                    failed += 1
                    log.info("summary of %s failed: %s", paper.key, exc)
                    continue
                if text and paper.ref is not None:
                    made.append((paper.ref, language, text))
                else:
                    failed += 1
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return made, failed, len(queue)
