"""The whole daily run at scale: real ``digest run`` processes, timed end to end, beside the baseline.

    make bench                                   # the full table (a few minutes; ~12 GB of mail, deleted)
    .venv/bin/python bench/run_day.py --quick    # 1,000 and 10,000 subscribers only

For each day (the 375 seed papers; a 5,000-paper day made from them, see synthetic.py) and each N, it
makes a fresh state database with N synthetic subscribers, then times one ``digest run`` subprocess end
to end: ingest, select, render, inline, MIME, deliver into a Maildir, record. Peak memory is sampled from
/proc every 20 ms over the run's process tree (the parent and its workers): the largest single process
and the sum. Delivery over SMTP is timed the same way into a local sink: Postfix's ``smtp-sink`` when
installed (Debian's postfix package), else aiosmtpd's Sink handler. The straightforward pipeline
(baseline.py) is timed on a sample of subscribers on the same input; "x baseline" is its cost per
subscriber over ours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from baseline import time_baseline
from synthetic import SAMPLES, big_day, seed_papers, subscribers, write_day

from digest.models import Paper
from digest.store import Store

DIGEST = str(Path(sys.executable).parent / "digest")
NOW = datetime(2025, 11, 22, 6, 0, tzinfo=UTC)


class TreeMemory:
    """Peak RSS of a process and its descendants, sampled from /proc."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every = pid, every
        self.peak_sum = self.peak_one = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _children(pid: int) -> list[int]:
        out = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out += [int(c) for c in f.read().split()]
        except OSError:
            pass
        return out

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            pids, todo = [], [self.pid]
            while todo:
                pid = todo.pop()
                pids.append(pid)
                todo += self._children(pid)
            sizes = [self._rss(p) for p in pids]
            self.peak_sum = max(self.peak_sum, sum(sizes))
            self.peak_one = max(self.peak_one, max(sizes, default=0))
            time.sleep(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Result:
    stage: str
    day: str
    n: int
    sent: int
    seconds: float
    ingest: float
    deliver: float
    rss_one: int
    rss_sum: int

    @property
    def ms_per_subscriber(self) -> float:
        return 1000 * self.seconds / self.n


def _config(
    folder: Path, day_glob: str, smtp_port: int | None = None, workers: int = 0, database: str | None = None
) -> Path:
    lines = [
        f'database = "{database or folder / "state.sqlite3"}"',
        'timezone = "UTC"',
        "lookback_days = 3",
        "[delivery]",
        f'maildir = "{folder / "mail"}"',
        f"workers = {workers}",
    ]
    if smtp_port:
        lines += [
            'method = "smtp"',
            "[smtp]",
            'host = "127.0.0.1"',
            f"port = {smtp_port}",
            'security = "none"',
        ]
    lines += ["[[sources]]", 'kind = "snapshot"', 'name = "day"', f'path = "{day_glob}"']
    cfg = folder / "digest.toml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfg


def run_digest(
    stage: str,
    day: str,
    day_glob: str,
    n: int,
    smtp_port: int | None = None,
    workers: int = 0,
    hybrid: bool = False,
    database: str | None = None,
) -> Result:
    """One fresh state with ``n`` subscribers (``hybrid``: each with a description and seed papers too),
    then one timed ``digest run``."""
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        folder = Path(tmp)
        cfg = _config(folder, day_glob, smtp_port, workers, database)
        with Store.open(database or folder / "state.sqlite3") as store:
            store.readers.add_many(subscribers(n, hybrid=hybrid), NOW)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [DIGEST, "run", "--config", str(cfg), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        memory = TreeMemory(proc.pid)
        out, err = proc.communicate()
        seconds = time.perf_counter() - t0
        memory.stop()
        if proc.returncode != 0:
            raise SystemExit(f"digest run failed ({proc.returncode}):\n{err[-3000:]}")
        report = json.loads(out)
        sent = report["counts"].get("sent", 0)
        if smtp_port is None:
            delivered = len(os.listdir(folder / "mail" / "new"))
            assert delivered == sent, f"{delivered} files for {sent} sent"
        timings = report["timings"]
        return Result(
            stage,
            day,
            n,
            sent,
            seconds,
            timings["ingest"],
            timings["deliver"],
            memory.peak_one,
            memory.peak_sum,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(pipelining: bool = True) -> tuple[subprocess.Popen[bytes], int, str]:
    """An SMTP sink on 127.0.0.1: Postfix's smtp-sink (``-p``: without PIPELINING), else aiosmtpd's Sink."""
    port = _free_port()
    sink = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
    )
    if sink:
        user = ["-u", "postfix"] if os.geteuid() == 0 else []
        flags = [] if pipelining else ["-p"]
        proc = subprocess.Popen([sink, *user, *flags, f"127.0.0.1:{port}", "1024"])
        name = "Postfix smtp-sink"
    else:
        cmd = [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Sink",
            "-l",
            f"127.0.0.1:{port}",
        ]
        proc = subprocess.Popen(cmd)
        name = "aiosmtpd Sink"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    return proc, port, name


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()}"


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000 and 10,000 subscribers, a smaller SMTP run")
    ap.add_argument("--sizes", type=int, nargs="*", help="subscriber counts (default 1,000 10,000 100,000)")
    ap.add_argument("--smtp", type=int, help="subscribers for the SMTP run (default 20,000; 0 skips it)")
    ap.add_argument(
        "--smtp-workers", type=int, default=0, help="[delivery] workers for the SMTP run (0: auto)"
    )
    ap.add_argument("--days", nargs="*", choices=["seeds", "big"], default=["seeds", "big"])
    ap.add_argument("--no-baseline", action="store_true", help="skip timing the straightforward pipeline")
    ap.add_argument(
        "--hybrid",
        type=int,
        nargs="*",
        help="subscriber counts for the hybrid run (keywords + about + seeds, seed day; default: the largest size)",
    )
    args = ap.parse_args(argv)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    smtp_n = args.smtp if args.smtp is not None else (5_000 if args.quick else 20_000)
    print(f"machine: {machine()}\n", flush=True)
    results: list[Result] = []
    baselines: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="digest-bench-day-") as tmp:
        big_folder = write_day(Path(tmp) / "big", big_day(5_000))
        days = {"375 seed papers": str(SAMPLES / "*.txt"), "5,000 papers": str(big_folder / "*.txt")}
        seed = seed_papers()
        big = [
            Paper(title, abstract, upvotes=up, ref=len(seed) + i)
            for i, (title, abstract, up) in enumerate(big_day(5_000))
        ]
        for day, papers, sample in (("375 seed papers", seed, 101), ("5,000 papers", big, 21)):
            if args.no_baseline:
                baselines[day] = float("nan")
                continue
            with tempfile.TemporaryDirectory(prefix="digest-bench-base-") as base:
                baselines[day] = time_baseline(papers, subscribers(sample, seed=7), Path(base), NOW)
            print(
                f"baseline, {day}: {1000 * baselines[day]:.1f} ms per subscriber ({sample - 1} timed)",
                flush=True,
            )
        wanted = {"375 seed papers": "seeds" in args.days, "5,000 papers": "big" in args.days}
        for day, glob in days.items():
            for n in sizes if wanted[day] else []:
                r = run_digest("digest run → Maildir", day, glob, n)
                results.append(r)
                print(f"  {day}, {n:,} subscribers: {r.seconds:.1f} s", flush=True)
        for n in args.hybrid if args.hybrid is not None else sizes[-1:]:
            if "seeds" in args.days:
                r = run_digest(
                    "digest run → Maildir, hybrid profiles",
                    "375 seed papers",
                    days["375 seed papers"],
                    n,
                    hybrid=True,
                )
                results.append(r)
                print(f"  hybrid, 375 seed papers, {n:,} subscribers: {r.seconds:.1f} s", flush=True)
        if smtp_n:
            sink, port, sink_name = start_sink()
            try:
                stage = f"digest run → SMTP ({sink_name})"
                seeds = days["375 seed papers"]
                results.append(run_digest(stage, "375 seed papers", seeds, smtp_n, port, args.smtp_workers))
            finally:
                sink.terminate()
                sink.wait()
    print()
    head = (
        "| stage | day | subscribers | sent | total s | ingest s | deliver s | ms/subscriber | msg/s (deliver) "
        "| peak RSS MB (largest process) | peak RSS MB (all processes) | x baseline |"
    )
    print(head)
    print("| " + " | ".join(["---"] * 2 + ["---:"] * 10) + " |")
    for r in results:
        ratio = baselines[r.day] * 1000 / r.ms_per_subscriber
        print(
            f"| {r.stage} | {r.day} | {r.n:,} | {r.sent:,} | {r.seconds:.1f} | {r.ingest:.2f} | {r.deliver:.1f} "
            f"| {r.ms_per_subscriber:.2f} | {r.sent / r.deliver:,.0f} | {_mb(r.rss_one)} | {_mb(r.rss_sum)} | {ratio:.0f}x |"
        )
    for day, seconds in baselines.items():
        print(f"| baseline (straightforward) | {day} | sample | | | | | {1000 * seconds:.1f} | | | | 1x |")


if __name__ == "__main__":
    main(sys.argv[1:])
