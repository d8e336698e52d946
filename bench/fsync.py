"""How a Maildir batch is made durable: what each way costs per message.

    .venv/bin/python bench/fsync.py [--batches 20] [--size 57000]

Writes batches of 256 messages (the run's batch) of ``--size`` bytes each into a fresh Maildir, the way
``MaildirTransport`` does (tmp/, then a rename into new/), and makes each batch durable:

- ``os.sync()``: one call per batch, but it flushes every file system of the machine (what digest did
  once; a side effect on the host);
- ``fsync`` of each file, one after another, then of ``new/``;
- ``fsync`` of each file from ``SYNC_THREADS`` threads, then of ``new/`` (the file system folds concurrent
  syncs into shared journal commits);
- ``[delivery] maildir_sync = "files"``: each file's ``fsync`` begun in the background as soon as it is
  written (so the syncs overlap the rest of the batch's writing), waited for at the batch's end, then
  ``new/``;
- ``maildir_sync = "filesystem"`` (the default, Linux): one ``syncfs`` of the Maildir's file system.

Prints milliseconds per batch and per message for each: writing, flushing, and both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from digest.email.transport import HAS_SYNCFS, SYNC_THREADS, fsync_path, syncfs_path

BATCH = 256


def write_batch(folder: str, batch: int, data: bytes, each: Callable[[str], None] | None = None) -> list[str]:
    names = []
    for i in range(BATCH):
        name = f"{batch:05d}-{i:03d}.digest"
        tmp = f"{folder}/tmp/{name}"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, f"{folder}/new/{name}")
        names.append(f"{folder}/new/{name}")
        if each:
            each(names[-1])
    return names


def machine_sync(folder: str, files: list[str]) -> None:
    os.sync()


def filesystem_sync(folder: str, files: list[str]) -> None:
    syncfs_path(f"{folder}/new")


def serial_fsync(folder: str, files: list[str]) -> None:
    for f in files:
        fsync_path(f)
    fsync_path(f"{folder}/new")


POOL = ThreadPoolExecutor(SYNC_THREADS)


def threaded_fsync(folder: str, files: list[str]) -> None:
    list(POOL.map(fsync_path, files))
    fsync_path(f"{folder}/new")


PENDING: list[Future[None]] = []


def begin_fsync(path: str) -> None:
    PENDING.append(POOL.submit(fsync_path, path))


def wait_fsyncs(folder: str, files: list[str]) -> None:
    for done in PENDING:
        done.result()
    PENDING.clear()
    fsync_path(f"{folder}/new")


def measure(
    flush: Callable[[str, list[str]], None],
    batches: int,
    data: bytes,
    each: Callable[[str], None] | None = None,
) -> tuple[float, float]:
    """(ms flushing per batch, ms writing per batch), on a fresh Maildir."""
    root = tempfile.mkdtemp(prefix="digest-fsync-", dir=os.environ.get("BENCH_DIR"))
    try:
        for sub in ("tmp", "new", "cur"):
            os.makedirs(f"{root}/{sub}")
        os.sync()
        flushing = writing = 0.0
        for b in range(batches):
            started = time.perf_counter()
            files = write_batch(root, b, data, each)
            written = time.perf_counter()
            flush(root, files)
            writing += written - started
            flushing += time.perf_counter() - written
        return 1000 * flushing / batches, 1000 * writing / batches
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--size", type=int, default=57_000, help="bytes per message (a digest is ~57 KB)")
    args = parser.parse_args()
    data = (b"x" * 75 + b"\n") * (args.size // 76)
    print(f"{args.batches} batches of {BATCH} messages of {len(data):,} bytes\n")
    print("| way | write ms per batch | flush ms per batch | both, ms per message |")
    print("| --- | ---: | ---: | ---: |")
    ways: list[tuple[str, Callable[[str, list[str]], None], Callable[[str], None] | None]] = [
        ("os.sync() once per batch", machine_sync, None),
        ("fsync each file in turn, then the folder", serial_fsync, None),
        (f"fsync each file from {SYNC_THREADS} threads at the end, then the folder", threaded_fsync, None),
        (
            "fsync each file in the background as written, wait at the end (maildir_sync = files)",
            wait_fsyncs,
            begin_fsync,
        ),
    ]
    if HAS_SYNCFS:
        ways.append(
            (
                "syncfs of the Maildir's file system once per batch (maildir_sync = filesystem)",
                filesystem_sync,
                None,
            )
        )
    for name, flush, each in ways:
        flushing, writing = measure(flush, args.batches, data, each)
        print(f"| {name} | {writing:.1f} | {flushing:.1f} | {(writing + flushing) / BATCH:.3f} |")


if __name__ == "__main__":
    main()
