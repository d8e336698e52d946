"""The ``digest`` command: thin. It parses, calls the library, prints, and picks the exit code.

Exit status: 0 all well; 1 the run finished but something failed and will be retried; 2 it could not run
(bad config, another run holds the lock, an unknown subscriber).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from digest import __version__, pipeline
from digest.errors import DigestError, ProfileError
from digest.models import (
    BOUNCED,
    DRY_RUN,
    FAILED,
    NOTHING_NEW,
    RETRY_LATER,
    SENT,
    Profile,
    RunReport,
    Subscriber,
    is_problem,
)
from digest.runlock import lock_path, run_lock
from digest.select import check_profile
from digest.settings import load_settings, normalise_email
from digest.store import RUN_SYNC, Store

F = TypeVar("F", bound=Callable[..., Any])
EXIT_OK, EXIT_RETRY, EXIT_CANNOT_RUN = 0, 1, 2


def _now() -> datetime:
    return datetime.now(UTC)


def config_option(func: F) -> F:
    """``--config FILE`` on every command (also ``DIGEST_CONFIG``; default ``config/digest.toml``)."""
    return click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False),
        default=None,
        help="Config file. Default: $DIGEST_CONFIG, else config/digest.toml.",
    )(func)


def handles_errors(func: F) -> F:
    """Print a DigestError as one clear line on stderr and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DigestError as exc:
            click.echo(f"digest: error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
def main(verbose: int) -> None:
    """A daily research-paper email digest: listings in, one email per subscriber out, never a paper twice."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Fetch, select and render, but send and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as one JSON object on stdout.")
@handles_errors
def run(config: str | None, dry_run: bool, as_json: bool) -> None:
    """Run the daily job once: read sources, send each subscriber their digest, record it.

    Exit 0 when all went well, 1 when the run finished but a source or a delivery failed (it is retried
    next run), 2 when it could not run at all.
    """
    settings = load_settings(config)
    now = _now()
    with run_lock(lock_path(settings.database), now), Store.open(settings.database, sync=RUN_SYNC) as store:
        report = pipeline.run_configured(settings, store, now, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print_summary(report)
    sys.exit(report.exit_code)


TABLE_ROWS = 50  # a run with more subscribers lists only its problems

SUMMARY_LABELS = [
    (RETRY_LATER, "to retry next run"),
    (FAILED, "failed"),
    (BOUNCED, "bouncing (re-enable with digest subscribe)"),
    (NOTHING_NEW, "with nothing new"),
]


def print_summary(report: RunReport, console: Console | None = None) -> None:
    """The run as two readable tables and a closing line."""
    console = console or Console(soft_wrap=False)
    sources = Table(title="Sources", title_justify="left")
    for col in ("source", "kind", "papers", "new", "status"):
        sources.add_column(col, justify="right" if col in ("papers", "new") else "left")
    for s in report.sources:
        status = f"[red]failed: {s.error}[/red]" if s.error else ("not modified" if s.not_modified else "ok")
        sources.add_row(s.name, s.kind, str(s.papers), str(s.new), status)
    console.print(sources)
    rows = list(report.subscribers)
    shown_all = len(rows) <= TABLE_ROWS and not report.omitted
    if not shown_all:  # a large run: only the problems, and not all of those
        rows = [r for r in rows if is_problem(r)][:TABLE_ROWS]
    title = (
        "Subscribers" if shown_all else f"Subscribers with problems (first {TABLE_ROWS}; --json for details)"
    )
    subs = Table(title=title, title_justify="left")
    for col in ("subscriber", "status", "papers", "top match / note"):
        subs.add_column(col, justify="right" if col == "papers" else "left", overflow="fold")
    for r in rows:
        note = r.error or r.note or (r.matches[0].paper.title if r.matches else "")
        colour = {SENT: "green", FAILED: "red", RETRY_LATER: "yellow", BOUNCED: "red"}.get(r.status, "")
        status = f"[{colour}]{r.status}[/{colour}]" if colour else r.status
        subs.add_row(r.email, status, str(len(r.matches)), note)
    if rows:
        console.print(subs)
    counts = Counter(report.status_counts)
    source_failures = sum(1 for s in report.sources if s.error)
    if report.dry_run:
        console.print(f"would send {counts[DRY_RUN]} message(s) via {report.delivered_to}")
        return
    took = f" in {sum(report.timings.values()):.1f} s" if report.timings else ""
    parts = [f"sent {counts[SENT]} message(s) via {report.delivered_to}{took}"]
    parts += [f"{counts[k]} {label}" for k, label in SUMMARY_LABELS if counts[k]]
    if source_failures:
        parts.append(f"{source_failures} source(s) failed")
    if not report.ok:
        parts.append("the next run retries what failed")
    console.print("; ".join(parts))


@main.command()
@config_option
@click.argument("email")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "text", "json"]),
    default="text",
    show_default=True,
    help="html: the HTML part; text: the plain-text part; json: papers with score and reasons.",
)
@handles_errors
def preview(config: str | None, email: str, fmt: str) -> None:
    """Show the digest EMAIL would get if the job ran now. Changes nothing: nothing is stored or sent."""
    settings = load_settings(config)
    now = _now()
    with Store.open(settings.database) as store:
        result = pipeline.preview(settings, store, normalise_email(email), now)
    planned = result.planned
    if fmt == "json":
        digest = planned.digest
        out = {
            "email": planned.subscriber.email,
            "error": planned.error,
            "subject": result.message["Subject"] if result.message else None,
            "papers": [
                {
                    "id": m.paper.key,
                    "title": m.paper.title,
                    "score": m.score,
                    "upvotes": m.paper.upvotes,
                    "matched": [{"keyword": r.keyword, "where": r.where} for r in m.reasons],
                }
                for m in (digest.matches if digest else ())
            ],
            "more": digest.more if digest else 0,
        }
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if planned.error:
        raise DigestError(planned.error)
    if result.message is None:
        click.echo(f"nothing new for {planned.subscriber.email}")
        return
    part = result.message.get_body(preferencelist=("html",) if fmt == "html" else ("plain",))
    assert part is not None
    click.echo(part.get_content())


@main.command()
@config_option
@click.argument("email")
@click.option("--keyword", "-k", "keywords", multiple=True, help="A word or phrase to follow (repeatable).")
@click.option("--exclude", "-x", "exclude", multiple=True, help="Drop papers that match this (repeatable).")
@click.option(
    "--max",
    "max_papers",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="At most this many papers per email.",
)
@click.option("--name", default="", help="The subscriber's display name.")
@handles_errors
def subscribe(
    config: str | None,
    email: str,
    keywords: tuple[str, ...],
    exclude: tuple[str, ...],
    max_papers: int,
    name: str,
) -> None:
    """Add EMAIL, or replace their profile and re-enable them. No --keyword: the trending digest."""
    settings = load_settings(config)
    address = normalise_email(email)
    profile = Profile(tuple(keywords), tuple(exclude), max_papers)
    problems = check_profile(profile)
    if problems:
        kw, why = problems[0]
        raise ProfileError(why, subscriber=address, keyword=kw)
    with Store.open(settings.database) as store:
        before = store.subscriber(address)
        new = store.add_subscriber(Subscriber(address, name, profile), _now())
    what = ", ".join(keywords) if keywords else "trending papers"
    click.echo(f"{'subscribed' if new else 'updated'} {address}: {what}")
    if before is not None and before.bouncing:
        click.echo(f"re-enabled {address}: it was skipped as bouncing after repeated refusals")
    if any(s.email == address for s in settings.subscribers):
        click.echo(f"note: {address} is declared in {settings.config_path}; the config's profile applies")


@main.command()
@config_option
@click.argument("email")
@handles_errors
def unsubscribe(config: str | None, email: str) -> None:
    """Stop sending to EMAIL (their history is kept; `digest subscribe` re-enables)."""
    settings = load_settings(config)
    address = normalise_email(email)
    with Store.open(settings.database) as store:
        store.sync_config_subscribers(settings.config_subscribers(), _now())
        if not store.unsubscribe(address, _now()):
            raise DigestError(f"no subscriber {address}")
    click.echo(f"unsubscribed {address}")


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the subscribers as JSON.")
@click.option("--all", "include_inactive", is_flag=True, help="Include unsubscribed addresses.")
@handles_errors
def subscribers(config: str | None, as_json: bool, include_inactive: bool) -> None:
    """List subscribers and their profiles (config-declared and added with `digest subscribe`)."""
    settings = load_settings(config)
    with Store.open(settings.database) as store:
        store.sync_config_subscribers(settings.config_subscribers(), _now())
        subs = store.subscribers(include_inactive=include_inactive)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "email": s.email,
                        "name": s.name,
                        "keywords": list(s.profile.keywords),
                        "exclude": list(s.profile.exclude),
                        "max_papers": s.profile.max_papers,
                        "active": s.active,
                        "bouncing": s.bouncing,
                    }
                    for s in subs
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table(title=f"{len(subs)} subscriber(s)", title_justify="left")
    for col in ("email", "name", "keywords", "exclude", "max", "active"):
        table.add_column(col, overflow="fold")
    for s in subs:
        p = s.profile
        table.add_row(
            s.email,
            s.name,
            ", ".join(p.keywords) or "(trending)",
            ", ".join(p.exclude),
            str(p.max_papers),
            ("bouncing" if s.bouncing else "yes") if s.active else "no",
        )
    Console().print(table)


@main.command()
@config_option
@handles_errors
def schedule(config: str | None) -> None:
    """Run the daily job at `send_at` in `timezone`, until stopped (SIGINT/SIGTERM).

    The config is read again before each run, so edits apply without a restart.
    """
    from digest.scheduler import run_forever

    run_forever(config)


if __name__ == "__main__":  # pragma: no cover
    main()
