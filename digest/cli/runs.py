"""The day's commands: run, ingest, preview, schedule, bounces; and the run's report as tables."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from digest.cli.base import REPORT_TO, config_option, handles_errors, main, plain, settings_for, utc_now
from digest.errors import DigestError
from digest.identity import normalise_email
from digest.models import Status
from digest.reports import RunReport, SourceReport, is_problem


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Fetch, select and render, but send and record nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as one JSON object on stdout.")
@click.option(
    "--now",
    "any_hour",
    is_flag=True,
    help="Treat every reader's hour as come (their cadence still holds): send all due today now.",
)
@handles_errors
def run(config: str | None, dry_run: bool, as_json: bool, any_hour: bool) -> None:
    """Run the job once: read sources, send each reader who is due their digest, record it.

    A reader is due at their send_at in their time zone, on the days of their cadence, once per period;
    readers whose hour has not come are reported as waiting. Run it from cron every few minutes, or once
    a day after the hour (or use digest schedule).

    Exit 0 when all went well, 1 when the run finished but a source or a delivery failed (it is retried
    next run), 2 when it could not run at all.
    """
    from digest.run import pipeline
    from digest.run.runlock import database_lock
    from digest.store import RUN_SYNC
    from digest.wiring import Services

    services = Services(settings_for(config))
    now = utc_now()
    with database_lock(services.database, now), services.open_store(sync=RUN_SYNC) as store:
        report = pipeline.run_configured(services, store, now, dry_run=dry_run, any_hour=any_hour)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print_summary(report)
    sys.exit(pipeline.exit_status(report))


TABLE_ROWS = 50  # a run with more subscribers lists only its problems

SUMMARY_LABELS = [
    (Status.RETRY_LATER, "to retry next run"),
    (Status.FAILED, "failed"),
    (Status.BOUNCED, "bouncing (re-enable with digest resume)"),
    (Status.NOTHING_NEW, "with nothing new"),
    (Status.WAITING, "waiting for their hour or day"),
]


def print_sources(sources: tuple[SourceReport, ...], console: Console) -> None:
    """The sources table: papers, new ones, and what happened (skipped and cut entries counted)."""
    table = Table(title="Sources", title_justify="left")
    for col in ("source", "kind", "papers", "new", "last new paper", "status"):
        table.add_column(col, justify="right" if col in ("papers", "new") else "left", overflow="fold")
    for s in sources:
        if s.error:
            status = Text("failed: ", style="red") + plain(s.error)
        else:
            counted = ((s.revisions, "revisions"), (s.skipped, "skipped"), (s.clamped, "cut"))
            extra = [f"{n} {what}" for n, what in counted if n]
            status = Text(s.status.replace("-", " ") + (f" ({', '.join(extra)})" if extra else ""))
        last = s.last_new[:16].replace("T", " ") if s.last_new else "never"
        table.add_row(plain(s.name), s.kind, str(s.papers), str(s.new), last, status)
    console.print(table)


def print_summary(report: RunReport, console: Console | None = None) -> None:
    """The run as two readable tables and a closing line."""
    console = console or Console(soft_wrap=False)
    print_sources(report.sources, console)
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
    colours = {
        Status.SENT: "green",
        Status.FAILED: "red",
        Status.RETRY_LATER: "yellow",
        Status.BOUNCED: "red",
    }
    for r in rows:
        note = r.error or r.note or (r.matches[0].paper.title if r.matches else "")
        status = Text(str(r.status), style=colours.get(r.status, ""))
        subs.add_row(plain(r.email), status, str(len(r.matches)), plain(note))
    if rows:
        console.print(subs)
    counts = Counter(report.status_counts)
    source_failures = sum(1 for s in report.sources if s.error)
    if report.dry_run:
        console.print(plain(f"would send {counts[Status.DRY_RUN]} message(s) via {report.delivered_to}"))
        return
    took = f" in {sum(report.timings.values()):.1f} s" if report.timings else ""
    parts = [f"sent {counts[Status.SENT]} message(s) via {report.delivered_to}{took}"]
    parts += [f"{counts[k]} {label}" for k, label in SUMMARY_LABELS if counts[k]]
    if source_failures:
        parts.append(f"{source_failures} source(s) failed")
    if report.internal:
        parts.append(f"{report.internal} internal error(s): {REPORT_TO}")
    elif not report.ok:
        parts.append("the next run retries what failed")
    console.print(plain("; ".join(parts)))


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
    """Show the digest EMAIL would get if the job ran now, from the papers already stored.

    Changes nothing and fetches nothing: the database is opened read-only (never created or upgraded) and no
    source is read. To refresh the stored papers first, without sending anything: digest ingest.
    """
    from digest.run import pipeline
    from digest.run.planning import Send, Skip
    from digest.wiring import Services

    services = Services(settings_for(config))
    now = utc_now()
    with services.open_store(read_only=True) as store:
        result = pipeline.preview(services, store, normalise_email(email), now)
    planned = result.planned
    digest = planned.digest if isinstance(planned, Send) else None
    error = planned.error if isinstance(planned, Skip) else None
    if fmt == "json":
        out = {
            "email": planned.subscriber.email,
            "status": str(planned.status) if isinstance(planned, Skip) else "would-send",
            "error": error,
            "subject": result.message["Subject"] if result.message else None,
            "papers": [
                {
                    "id": m.paper.key,
                    "title": m.paper.title,
                    "score": round(m.score, 4),
                    "upvotes": m.paper.upvotes,
                    "matched": [{"keyword": r.keyword, "where": r.where} for r in m.reasons],
                    "reasons": [r.text for r in m.reasons],
                }
                for m in (digest.matches if digest else ())
            ],
            "more": digest.more if digest else 0,
        }
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if error:
        raise DigestError(error)
    if result.message is None:
        note = planned.note if isinstance(planned, Skip) and planned.note else "nothing new"
        click.echo(f"{note} for {planned.subscriber.email}")
        return
    part = result.message.get_body(preferencelist=("html",) if fmt == "html" else ("plain",))
    assert part is not None
    click.echo(part.get_content())


@main.command()
@config_option
@handles_errors
def schedule(config: str | None) -> None:
    """Send each reader's digest at their hour, until stopped (SIGINT/SIGTERM).

    Wakes every [schedule] every minutes (5) and runs the job when a reader is due (their send_at in their
    time zone, on the days of their cadence). The config is read again at each wake.
    """
    from digest.scheduler import run_forever

    run_forever(config or click.get_current_context().find_root().params.get("config"))


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the sources report as JSON.")
@handles_errors
def ingest(config: str | None, as_json: bool) -> None:
    """Read every source into the database and send nothing: refreshes what `digest preview` shows.

    Exit 0 when every source was read, 1 when one failed (the next run or ingest tries it again).
    """
    from digest.run import pipeline
    from digest.run.runlock import database_lock
    from digest.wiring import Services

    services = Services(settings_for(config))
    now = utc_now()
    with database_lock(services.database, now), services.open_store() as store:
        reports = tuple(pipeline.ingest_once(services, store, now))
    if as_json:
        click.echo(json.dumps([r.to_json() for r in reports], ensure_ascii=False, indent=2))
    else:
        print_sources(reports, Console(soft_wrap=False))
    sys.exit(pipeline.exit_status(RunReport(now, reports)))


@main.command()
@config_option
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The Maildir the bounce address delivers into (default: [bounces] maildir).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each message's outcome as JSON.")
@handles_errors
def bounces(config: str | None, maildir: Path | None, as_json: bool) -> None:
    """Read returned mail: hard bounces and spam complaints suspend the subscriber at once, soft bounces
    count (3 within a week of each other suspend). Each message is then moved into the Maildir's
    .processed (or .unrecognised) folder, so it is never read twice. `digest resume EMAIL` undoes it."""
    from digest.run import pipeline
    from digest.wiring import Services

    settings = settings_for(config)
    folder = maildir or settings.bounces.maildir
    if not (folder / "new").is_dir():
        raise DigestError(
            f"{folder} is not a Maildir (it has no new/ folder)",
            hint="point --maildir or [bounces] maildir at the folder the bounce address delivers into",
        )
    services = Services(settings)
    with services.open_store() as store:
        outcomes = pipeline.process_bounces(services, store, folder, utc_now())
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(o) for o in outcomes], ensure_ascii=False, indent=2))
        return
    kinds = Counter(o.kind or "not a bounce" for o in outcomes)
    suspended = sorted({e for o in outcomes for e in o.suspended})
    click.echo(
        f"read {len(outcomes)} message(s): "
        + (", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none")
        + f"; suspended {len(suspended)}"
    )
    for address in suspended:
        shown = plain(address).plain
        click.echo(f"  suspended {shown} (digest resume {shown} to send again)")
