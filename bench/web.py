"""`digest serve` under load: manage pages with their live preview, and one-click unsubscribes,
alone and beside a 100,000-subscriber `digest run` on the same database.

    .venv/bin/python bench/web.py [--subscribers 20000] [--seconds 8] [--clients 50] [--workers 2]
                                  [--run-subscribers 100000]

A fresh database with the 375 seed papers and N synthetic subscribers, a real `digest serve --workers W` on
127.0.0.1, and wrk (Debian's package; `make bench` installs it) as the load generator: C, so on these two
shared cores it takes little from the server (a Python generator of httpx threads topped out near 350
requests/s here and took a core to do it). ``--clients`` keep-alive connections send requests back to back
(a closed loop, no pause between requests: the heaviest load that many clients can make), after 2 s of
warm-up. Each request goes to a different subscriber (a Lua script walks through their signed links):

1. the manage page (GET): the reader's settings and the preview of their digest on the stored papers;
2. the live preview (POST, as the page's script sends it while the reader types): keywords drawn from the
   benchmark vocabulary, a different set per request;
3. the same live preview from ``--clients`` readers who each type without stopping: a request 250 ms after
   each answer (the page's debounce), the load that many readers on their manage pages really make;
4. one-click unsubscribe (POST ``List-Unsubscribe=One-Click``, as a mailbox provider sends it);
5. the reader's library, for ``--library`` readers given a week of sent digests: the Atom feed and the past
   digests page, each asked again with its ETag (``If-None-Match``, what a feed reader polling every hour
   sends: answered 304), and the feed in full (200) for comparison.

Then 1, 3 and 4 again, in turn, while `digest run` sends the day to ``--run-subscribers`` more subscribers (into
a Maildir) on the same database: the run's time and exit status, and whether either side met "database is
locked".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
from synthetic import SAMPLES, VOCABULARY, subscribers

from digest.models import Subscriber
from digest.store import NewMessage, Store
from digest.tokens import Purpose, Signer

DIGEST = str(Path(sys.executable).parent / "digest")
KEY = "bench-signing-key-0123456789abcdefghijkl"
WARM_UP = 2.0
TYPING_MS = 250  # the manage page's script sends a preview 250 ms after the last keystroke

# wrk's script: requests from a file of "METHOD PATH BODY" lines, one after another; at the end one line of
# figures (requests, non-2xx answers, socket errors, latency percentiles in ms) for this script to read.
LUA = r"""
local requests = {}
for line in io.lines(os.getenv("BENCH_REQUESTS")) do
  local method, path, body = line:match("^(%S+) (%S+) ?(.*)$")
  local headers = {}
  if method == "GET" and body ~= "" then
    headers["If-None-Match"] = body
    body = ""
  end
  if method == "POST" then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers["Cookie"] = "digest_csrf=bench"
  end
  requests[#requests + 1] = wrk.format(method, path, headers, body ~= "" and body or nil)
end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  delay = function() return pause end
end
local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format("FIGURES %d %d %d %.2f %.2f %.2f %.2f\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def give_history(store: Store, people: list[Subscriber], days: int = 7) -> None:
    """A week of sent digests (5 papers each) for each of ``people``: what their feed and archive show."""
    refs = [p.ref for p in store.papers.recent(datetime(2000, 1, 1, tzinfo=UTC)) if p.ref is not None]
    now = datetime.now(UTC)
    for day in range(days):
        at = now - timedelta(days=days - day)
        made = store.outbox.begin(
            [
                NewMessage(
                    s.email,
                    at.date(),
                    f"<bench.{day}.{i}@example.org>",
                    tuple(refs[(i + 5 * day) % 300 :][:5]),
                )
                for i, s in enumerate(people)
            ],
            at,
        )
        store.outbox.mark_sent_many([m for m in made if m is not None], at)


def library_lines(base: str, people: list[Subscriber], kind: str) -> list[str]:
    """One "GET PATH ETAG" line per reader: the feed or past digests, asked again with the ETag of a first
    GET (``feed-full``: without, so every answer is the whole feed)."""
    signer = Signer([KEY])
    lines = []
    with httpx.Client(base_url=base) as client:
        for s in people:
            manage = signer.make(Purpose.MANAGE, s.email)
            path = (
                f"/m/{manage}/archive"
                if kind == "archive"
                else f"/feed/{signer.make(Purpose.FEED, s.email, nonce='0')}"
            )
            if kind == "feed-full":
                lines.append(f"GET {path}")
                continue
            first = client.get(path)
            assert first.status_code == 200, (path, first.status_code)
            lines.append(f"GET {path} {first.headers['etag']}")
    return lines


def request_lines(people: list[Subscriber], kind: str, rng: random.Random) -> list[str]:
    """One "METHOD PATH BODY" line per subscriber for ``kind`` (manage, preview, unsubscribe)."""
    signer = Signer([KEY])
    lines = []
    for s in people:
        if kind == "unsubscribe":
            body = urlencode({"List-Unsubscribe": "One-Click"})
            lines.append(f"POST /u/{signer.make(Purpose.UNSUBSCRIBE, s.email)} {body}")
        elif kind == "preview":
            keywords = ", ".join(rng.sample(VOCABULARY, rng.randint(1, 4)))
            body = urlencode({"csrf": "bench", "keywords": keywords, "max_papers": "20", "action": "preview"})
            lines.append(f"POST /m/{signer.make(Purpose.MANAGE, s.email)}/preview {body}")
        else:
            lines.append(f"GET /m/{signer.make(Purpose.MANAGE, s.email)}")
    return lines


def wrk(
    base: str, script: Path, requests: Path, clients: int, seconds: float, pause_ms: int = 0
) -> list[float]:
    """[requests, non-2xx, socket errors, p50, p95, p99, max] of one wrk run; ``pause_ms`` between one
    answer and a connection's next request (0: back to back)."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), base],
        env={**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_DELAY_MS": str(pause_ms)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("FIGURES "))
    return [float(x) for x in line.split()[1:]]


def row(name: str, figures: list[float], seconds: float) -> str:
    done, status, sockets, p50, p95, p99, top = figures
    return (
        f"| {name} | {done:,.0f} | {done / seconds:,.0f} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {top:.0f} | "
        f"{status + sockets:.0f} |"
    )


def wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("digest serve did not start") from None
            time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2, help="digest serve --workers")
    ap.add_argument("--run-subscribers", type=int, default=100_000, help="0: no run beside")
    ap.add_argument(
        "--library", type=int, default=2_000, help="readers with a week of digests: feed, archive"
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/web.py needs wrk (Debian's package: apt-get install wrk; make bench does)")
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="digest-web-bench-") as tmp:
        folder = Path(tmp)
        port = free_port()
        cfg = folder / "digest.toml"
        cfg.write_text(
            f'database = "digest.sqlite3"\nbase_url = "http://127.0.0.1:{port}"\n'
            f'[[sources]]\nkind = "snapshot"\nname = "samples"\npath = "{SAMPLES}/*.txt"\n'
            f'[delivery]\nmethod = "maildir"\nmaildir = "{folder / "mail"}"\n',
            encoding="utf-8",
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
            "DIGEST_SECRET_KEY": KEY,
        }
        subprocess.run([DIGEST, "ingest", "--config", str(cfg)], env=env, check=True, capture_output=True)
        people = subscribers(args.subscribers + args.run_subscribers)
        with Store.open(folder / "digest.sqlite3") as store:
            store.readers.add_many(people, datetime.now(UTC))
            give_history(store, people[: args.library])
        # The web load goes to the first N; the run sends to everyone still subscribed.
        web_people = people[: args.subscribers]
        script = folder / "bench.lua"
        script.write_text(LUA, encoding="utf-8")
        files = {}
        for kind in ("manage", "preview", "unsubscribe"):
            files[kind] = folder / f"{kind}.txt"
            files[kind].write_text("\n".join(request_lines(web_people, kind, rng)) + "\n", encoding="utf-8")
        server = subprocess.Popen(
            [DIGEST, "serve", "--port", str(port), "--workers", str(args.workers), "--config", str(cfg)],
            env=env,
            stderr=subprocess.PIPE,
        )
        base = f"http://127.0.0.1:{port}"
        names = {
            "manage": "manage page with preview (GET)",
            "preview": "live preview as the reader types (POST)",
            "unsubscribe": "one-click unsubscribe (POST)",
        }
        try:
            wait_for(port, server)
            print(
                f"{args.subscribers:,} subscribers for the web load, 375 papers, `digest serve --workers "
                f"{args.workers}`, {args.clients} connections back to back, {args.seconds:g} s each\n"
            )
            print("| request | done | per second | p50 ms | p95 ms | p99 ms | max ms | errors |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for kind in ("manage", "preview"):  # unsubscribing last: it changes who the pages are for
                wrk(base, script, files[kind], args.clients, WARM_UP)
                figures = wrk(base, script, files[kind], args.clients, args.seconds)
                print(row(names[kind], figures, args.seconds))
            typing = wrk(base, script, files["preview"], args.clients, args.seconds, pause_ms=TYPING_MS)
            print(row(f"{args.clients} readers typing (a preview each {TYPING_MS} ms)", typing, args.seconds))
            library = {
                "feed": "Atom feed, asked again with its ETag (304)",
                "archive": "past digests, asked again with their ETag (304)",
                "feed-full": "Atom feed in full (200, 35 entries)",
            }
            for kind, name in library.items():
                files[kind] = folder / f"{kind}.txt"
                lines = library_lines(base, web_people[: args.library], kind)
                files[kind].write_text("\n".join(lines) + "\n", encoding="utf-8")
                wrk(base, script, files[kind], args.clients, WARM_UP)
                print(row(name, wrk(base, script, files[kind], args.clients, args.seconds), args.seconds))
            unsub = wrk(base, script, files["unsubscribe"], args.clients, args.seconds)
            print(row(names["unsubscribe"], unsub, args.seconds))
            if args.run_subscribers:
                beside_a_run(args, folder, cfg, env, base, script, files, names)
        finally:
            server.terminate()
            _, err = server.communicate(timeout=20)
        locked = err.decode(errors="replace").count("database is locked")
        print(f"\n`digest serve` logged 'database is locked' {locked} times")


def beside_a_run(
    args: argparse.Namespace,
    folder: Path,
    cfg: Path,
    env: dict[str, str],
    base: str,
    script: Path,
    files: dict[str, Path],
    names: dict[str, str],
) -> None:
    """The manage page, readers typing and one-click again, in turn for as long as a `digest run` of
    everyone goes on (at most 6 rounds)."""
    print(
        f"\nThe same, while `digest run` sends the day to {args.run_subscribers:,} subscribers beside it:\n"
    )
    print("| request | done | per second | p50 ms | p95 ms | p99 ms | max ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    started = time.perf_counter()
    run = subprocess.Popen(
        [DIGEST, "run", "--config", str(cfg), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    kinds = {"manage": 0, "preview": TYPING_MS, "unsubscribe": 0}
    seen: dict[str, list[list[float]]] = {kind: [] for kind in kinds}
    while run.poll() is None and len(seen["unsubscribe"]) < 6:
        for kind, pause in kinds.items():
            if run.poll() is None:
                seen[kind].append(wrk(base, script, files[kind], args.clients, args.seconds, pause))
    for kind, rounds in seen.items():
        if rounds:  # the rounds together; each percentile is the worst round's
            total = [sum(r[i] for r in rounds) for i in range(3)] + [
                max(r[i] for r in rounds) for i in range(3, 7)
            ]
            name = (
                names[kind]
                if kind != "preview"
                else f"{args.clients} readers typing (a preview each {TYPING_MS} ms)"
            )
            print(row(f"{name}, {len(rounds)} rounds", total, args.seconds * len(rounds)))
    out, err = run.communicate()
    took = time.perf_counter() - started
    counts = json.loads(out)["counts"] if out.strip() else {}
    locked = (out + err).decode(errors="replace").count("database is locked")
    print(
        f"\n`digest run`: exit {run.returncode} after {took:.1f} s, counts {counts}, "
        f"'database is locked' {locked} times"
    )


if __name__ == "__main__":
    main()
