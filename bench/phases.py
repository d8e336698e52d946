"""Where a day's run spends its time, phase by phase, and the same day on another commit, alternately.

    cd bench && ../.venv/bin/python phases.py                          # 20,000 and 100,000 readers
    cd bench && ../.venv/bin/python phases.py --against a58f126 --rounds 3 --sizes 20000

Each run is a real ``digest run --json`` on a fresh state of N synthetic keyword readers (``synthetic.py``)
stored in the database, the 375 seed papers into a Maildir, ``[delivery] workers`` automatic. The run's
report gives the wall seconds of its stages (sync of the config's readers, ingest, deliver) and, inside the
delivery, the seconds of each phase summed over the run's processes (so with 2 workers they add up to
about twice the delivery's wall time): plan (who is due and what each gets: planning and selection),
compose (render, MIME, DKIM when configured), write (the transport's send), fsync (a batch made durable),
record (the outbox's rows). "other" is what the processes spent outside those phases (start-up, claims,
waiting).

With ``--against REF`` the same runs are made on REF too (a detached git worktree, run with this venv's
Python), alternating the two commits round by round so that the machine's drift falls on both alike. An
older commit that reports no phases shows its totals only. Each commit makes its own state with its own
code, since the schema may differ.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from run_day import _config as run_day_config
from synthetic import SAMPLES, subscribers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = ("plan", "compose", "write", "fsync", "record")

# Run inside the commit's code (PYTHONPATH): N readers stored by its own store, whatever its API's name.
MAKE_STATE = """
import sys
from datetime import UTC, datetime
sys.path.insert(0, {bench!r})
from synthetic import subscribers
from digest.store import Store
store = Store.open({db!r})
readers = getattr(store, "readers", None)
add = readers.add_many if readers is not None else store.add_subscribers
add(subscribers({n}, hybrid={hybrid}), datetime(2025, 11, 22, 6, 0, tzinfo=UTC))
store.close()
"""
RUN = "import sys; from digest.cli import main; sys.argv = ['digest', *sys.argv[1:]]; main()"


@dataclass
class Run:
    commit: str
    n: int
    seconds: float
    timings: dict[str, float]
    phases: dict[str, float] = field(default_factory=dict)
    processes: int = 1


def _config(folder: Path, declared: int = 0) -> Path:
    """The run's config (``run_day``'s: the seed papers into a Maildir, workers automatic); with
    ``declared``, that many synthetic readers added as ``[[subscribers]]`` tables."""
    cfg = run_day_config(folder, str(SAMPLES / "*.txt"))
    lines = []
    for s in subscribers(declared):  # this commit's models; the config's text is the same for every commit
        lines += [
            "[[subscribers]]",
            f'email = "{s.email}"',
            f"keywords = {json.dumps(list(s.profile.keywords))}",
        ]
        if s.profile.exclude:
            lines.append(f"exclude = {json.dumps(list(s.profile.exclude))}")
    if lines:
        with cfg.open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
    return cfg


def run_once(commit: str, tree: Path, n: int, declared: bool = False, hybrid: bool = False) -> Run:
    """One fresh state of ``n`` readers made by ``tree``'s code (``declared``: in the config instead, on
    a fresh database), then one timed ``digest run`` of it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["PYTHONPATH"] = str(tree)
    with tempfile.TemporaryDirectory(prefix="digest-phases-") as tmp:
        folder = Path(tmp)
        cfg = _config(folder, n if declared else 0)
        if not declared:
            code = MAKE_STATE.format(bench=str(HERE), db=str(folder / "state.sqlite3"), n=n, hybrid=hybrid)
            subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp)
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", RUN, "run", "--config", str(cfg), "--json"],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"{commit}: digest run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout)
        sent = report["counts"].get("sent", 0)
        assert sent > 0.99 * n, f"{commit}: only {sent} of {n} readers were sent a digest"
        return Run(
            commit + (" (config)" if declared else "") + (" (hybrid)" if hybrid else ""),
            n,
            seconds,
            report["timings"],
            report.get("phases", {}),
            report.get("processes", 0),
        )


def worktree(ref: str) -> Path:
    """A detached worktree of ``ref`` (made once, kept beside the system's temporary files)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"digest-at-{sha}"
    if not (path / "digest").is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), sha], cwd=ROOT, check=True)
    return path


def table(runs: list[Run]) -> str:
    head = "| commit | readers | processes | total s | sync s | ingest s | deliver s | " + " | ".join(
        f"{p} s" for p in PHASES
    )
    lines = [head + " | other s |", "|" + " --- |" * 2 + " ---: |" * (6 + len(PHASES))]
    for r in runs:
        t = r.timings
        deliver = t.get("deliver", 0.0)
        if r.phases:
            phases = [f"{r.phases.get(p, 0.0):.1f}" for p in PHASES]
            other = f"{max(0.0, r.processes * deliver - sum(r.phases.values())):.1f}"
        else:
            phases, other = ["–"] * len(PHASES), "–"
        cells = [
            r.commit,
            f"{r.n:,}",
            str(r.processes or "?"),
            f"{r.seconds:.1f}",
            f"{t.get('sync', 0.0):.2f}",
        ]
        cells += [f"{t.get('ingest', 0.0):.2f}", f"{deliver:.1f}", *phases, other]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[20_000, 100_000])
    ap.add_argument("--against", help="another commit to run alternately with this one")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each commit per size")
    ap.add_argument(
        "--hybrid", action="store_true", help="readers with a description and seed papers besides keywords"
    )
    ap.add_argument(
        "--declared",
        action="store_true",
        help="also the same readers declared in the config, on a fresh database",
    )
    args = ap.parse_args(argv)
    if args.declared and args.hybrid:
        ap.error("--declared writes keyword readers into the config: run --hybrid on its own")
    trees = [("this", ROOT)]
    if args.against:
        trees.append((args.against, worktree(args.against)))
    runs: list[Run] = []
    for n in args.sizes:
        for _ in range(args.rounds):
            for commit, tree in trees:
                for declared in (False, True) if args.declared else (False,):
                    run = run_once(commit, tree, n, declared, args.hybrid)
                    runs.append(run)
                    print(f"  {run.commit}, {n:,} readers: {run.seconds:.1f} s", flush=True)
    print("\n" + table(runs))
    for n in args.sizes if args.declared else ():
        stored = statistics.median(
            r.seconds for r in runs if r.commit.startswith("this") and "config" not in r.commit and r.n == n
        )
        declared = statistics.median(r.seconds for r in runs if r.commit == "this (config)" and r.n == n)
        print(f"{n:,} readers declared in the config: {declared / stored:.2f}x the same readers stored")
    if args.against:
        print()
        for n in args.sizes:
            medians = {
                commit: statistics.median(
                    r.seconds
                    for r in runs
                    if r.commit.split(" (")[0] == commit and "config" not in r.commit and r.n == n
                )
                for commit, _ in trees
            }
            ratio = medians["this"] / medians[args.against]
            print(
                f"{n:,} readers: this {medians['this']:.1f} s, {args.against} {medians[args.against]:.1f} s"
                f" (medians of {args.rounds}): {ratio:.2f}x"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
