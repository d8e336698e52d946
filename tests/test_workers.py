"""Deliveries in worker processes; progress reporting.

Real processes (spawned), a real SQLite file and a real Maildir: every subscriber gets exactly one
message, the ledger agrees, a second run sends nothing, and a run killed with ``kill -9`` while its workers
deliver is finished by the next run with no subscriber left out and none served twice.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import read_maildir, samples_source, write_config

from digest.models import Profile, Status, Subscriber
from digest.run import pipeline, workers
from digest.run.courier import RetryBudget
from digest.run.progress import LogLines
from digest.settings import Settings, load_settings
from digest.store import Store
from digest.wiring import Services

DIGEST = str(Path(sys.executable).parent / "digest")
NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
TOPICS = ["RAG", "reasoning", "diffusion", "agents", "LLM", "benchmark", "multimodal", "quantiz*"]


def _subscribers(n: int) -> list[Subscriber]:
    return [
        Subscriber(
            f"w{i:05d}@example.org", "", Profile((TOPICS[i % len(TOPICS)], TOPICS[(i * 3 + 1) % len(TOPICS)]))
        )
        for i in range(n)
    ]


def _sent_per_subscriber(db: Path | str) -> Counter[str]:
    with Store.open(db) as store:
        rows = store.conn.execute("SELECT email FROM messages WHERE status = 'sent'").fetchall()
    return Counter(r[0] for r in rows)


@pytest.mark.processes
def test_workers_deliver_each_subscriber_exactly_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()])
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        store.readers.add_many(_subscribers(300), NOW)
        steps: list[int] = []
        report = pipeline.run_once(
            Services(settings), store, NOW, workers=2, progress=steps.append, range_size=40
        )
        assert report.status_counts == {Status.SENT: 300}
        latest = store.runs.latest()
        assert latest is not None and len(store.runs.ranges(latest)) == 8  # 300 readers, 40 a range
        assert sum(steps) == 300  # the workers' counters, read while they work
        assert report.ok and report.subscribers == ()  # workers send back problems only
        again = pipeline.run_once(Services(settings), store, NOW, workers=2)
        assert Status.SENT not in again.status_counts
    messages = read_maildir(settings.delivery.maildir)
    assert sorted(str(m["To"]) for m in messages) == [f"w{i:05d}@example.org" for i in range(300)]
    assert _sent_per_subscriber(settings.database) == Counter(
        {f"w{i:05d}@example.org": 1 for i in range(300)}
    )


@pytest.mark.processes
def test_workers_give_the_same_messages_as_one_process(tmp_path: Path) -> None:
    bodies = {}
    for mode in (1, 2):
        (tmp_path / str(mode)).mkdir()
        cfg = write_config(tmp_path / str(mode), sources=[samples_source()])
        settings = load_settings(cfg)
        with Store.open(settings.database) as store:
            store.readers.add_many(_subscribers(100), NOW)
            pipeline.run_once(Services(settings), store, NOW, workers=mode, range_size=25)
        bodies[mode] = {
            f.name: f.read_bytes().split(b"\n\n", 1)[1] for f in (settings.delivery.maildir / "new").iterdir()
        }
    assert bodies[1] == bodies[2] and len(bodies[1]) == 100


def _parallel_run(tmp_path: Path, n: int) -> tuple[Settings, list[str], dict[str, str]]:
    """A state with ``n`` subscribers and two workers: the settings, the ``digest run`` command, its env."""
    cfg = write_config(tmp_path, sources=[samples_source()], tables={"delivery": {"workers": 2}})
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        store.readers.add_many(_subscribers(n), NOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    return settings, [DIGEST, "run", "--config", str(cfg)], env


def _wait_for_files(proc: subprocess.Popen[Any], new: Path, count: int) -> None:
    """Until the run has written ``count`` messages: the kill point."""
    deadline = time.monotonic() + 120
    while not (new.is_dir() and len(os.listdir(new)) >= count):
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _rerun_leaves_everyone_one_message(
    settings: Settings, run: list[str], env: dict[str, str], n: int
) -> None:
    again = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    messages = read_maildir(settings.delivery.maildir)
    to = Counter(str(m["To"]) for m in messages)
    assert len(messages) == n == len(to) and set(to.values()) == {
        1
    }  # everyone once: none left out, none twice
    assert _sent_per_subscriber(settings.database) == Counter({s.email: 1 for s in _subscribers(n)})


@pytest.mark.processes
def test_a_killed_parallel_run_is_finished_by_the_next_run_once(tmp_path: Path) -> None:
    n = 2600  # three ranges of store.CHUNK
    settings, run, env = _parallel_run(tmp_path, n)
    new = settings.delivery.maildir / "new"
    with subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        _wait_for_files(proc, new, 300)
        proc.send_signal(signal.SIGKILL)  # the parent; its workers stop after the batch in hand
    partial = len(os.listdir(new))
    assert 300 <= partial < n
    _rerun_leaves_everyone_one_message(settings, run, env, n)


def _workers_of(pid: int) -> list[int]:
    """The run's worker processes (spawned interpreters), not multiprocessing's resource tracker."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children += [int(c) for c in f.read().split()]
    out = []
    for child in children:
        with open(f"/proc/{child}/cmdline", "rb") as f:
            if b"spawn_main" in f.read():
                out.append(child)
    return out


@pytest.mark.processes
def test_a_worker_killed_mid_run_stops_the_run_and_the_next_run_finishes_once(tmp_path: Path) -> None:
    n = 2600
    settings, run, env = _parallel_run(tmp_path, n)
    with subprocess.Popen(run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        _wait_for_files(proc, settings.delivery.maildir / "new", 300)
        os.kill(_workers_of(proc.pid)[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "a worker process died during the run" in stderr and "Traceback" not in stderr
    _rerun_leaves_everyone_one_message(settings, run, env, n)


@pytest.mark.processes
def test_a_first_run_of_readers_declared_in_the_config_uses_the_workers(tmp_path: Path) -> None:
    n = workers.AUTO_MIN
    readers = [{"email": s.email, "keywords": list(s.profile.keywords)} for s in _subscribers(n)]
    cfg = write_config(tmp_path, sources=[samples_source()], subscribers=readers)
    services = Services(load_settings(cfg))
    with services.open_store() as store:
        assert store.readers.count() == 0  # a fresh database: the config's readers are not stored yet
        report = pipeline.run_configured(services, store, NOW)
    assert report.processes == max(1, os.cpu_count() or 1)  # one per core, as for stored readers
    assert report.status_counts[Status.SENT] + report.status_counts.get(Status.NOTHING_NEW, 0) == n


def test_worker_count() -> None:
    assert workers.worker_count(0, 100, "maildir") == 1  # small runs stay in one process
    assert workers.worker_count(0, 100_000, "maildir") == max(1, os.cpu_count() or 1)
    assert workers.worker_count(0, 100_000, "smtp") == 4
    assert workers.worker_count(3, 100_000, "smtp") == 3


def test_progress_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    clock = iter([0.0, 1.0, 12.0, 13.0, 25.0, 25.0]).__next__
    lines = LogLines(1000, every=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="digest.run.progress"):
        lines.advance(100)  # t=1: too soon for a line
        lines.advance(400)  # t=12
        lines.advance(100)  # t=13: too soon again
        lines.advance(400)  # t=25
        lines.finish()
    assert [r.getMessage() for r in caplog.records] == [
        "500/1,000 subscribers (50%), 42/s, about 12 s left",
        "1,000/1,000 subscribers (100%), 40/s, about 0 s left",
        "1,000/1,000 subscribers (100%), 40/s in all",
    ]


def test_tally_counts_everyone_and_keeps_details_bounded() -> None:
    from digest.reports import SubscriberReport
    from digest.run.delivery import Tally

    FAILED, NOTHING_NEW = Status.FAILED, Status.NOTHING_NEW

    part = Tally(limit=2, keep_first=0)  # a worker's: problems only
    part.add([SubscriberReport(f"s{i}", Status.SENT) for i in range(5)])
    part.add([SubscriberReport(f"f{i}", FAILED, error="550") for i in range(3)])
    assert part.counts == {Status.SENT: 5, FAILED: 3} and part.problems == 3
    assert [r.email for r in part.kept] == ["f0", "f1"] and part.omitted == 6
    whole = Tally(limit=2)
    whole.add([SubscriberReport("n0", NOTHING_NEW)])
    whole.merge(part)
    assert (
        whole.counts == {NOTHING_NEW: 1, Status.SENT: 5, FAILED: 3}
        and whole.problems == 3
        and whole.total == 9
    )
    report = whole.report(NOW, (), "memory", False)
    assert not report.ok and report.status_counts[FAILED] == 3
    assert report.omitted == 6 and {r.email for r in report.subscribers} == {"n0", "f0", "f1"}


def test_workers_share_the_rate_limit(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, tables={"delivery": {"method": "smtp"}, "smtp": {"rate_limit": 10}})
    settings = load_settings(cfg)
    transport = Services(settings).transport()
    assert Services(settings).courier(transport).interval == pytest.approx(0.1)
    assert Services(settings).courier(transport, share=4).interval == pytest.approx(0.4)  # 4 x 2.5/s = 10/s


def test_workers_share_one_retry_budget() -> None:
    """The retry budget is per run: what one worker spends, the others no longer have."""
    import multiprocessing

    shared = multiprocessing.get_context("spawn").Value("d", 10.0)
    first, second = RetryBudget(shared), RetryBudget(shared)
    first.spend(6.0)
    assert second.allows(3.0) and not first.allows(2.0)  # 10 - 6 - 3 = 1 left for either
