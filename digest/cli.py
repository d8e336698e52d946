"""The ``digest`` command: thin. It parses, calls the library, prints, and picks the exit code.

Exit status: 0 all well; 1 the run finished but something failed and will be retried; 2 it could not run
(bad config, another run holds the lock, an unknown subscriber) or met an internal error; 130 interrupted
(Ctrl-C). Text from feeds and subscribers is printed as plain text: no markup, no control characters.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import re
import sys
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from digest import __version__, logs
from digest.errors import EXIT_CANNOT_RUN, EXIT_INTERRUPTED, ConfigError, DigestError, SubscriberError
from digest.identity import mailbox_key, normalise_email
from digest.models import MAX_PAPERS, RunReport, SourceReport, Status, Subscriber, is_problem
from digest.redact import one_line, redact_text, redact_url

# The rest of digest is imported by the commands that use it, so that `digest --help` (and a command that
# needs little) starts without loading the pipeline, the renderer, the store and their libraries.
if TYPE_CHECKING:
    from digest.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
REPORT_TO = "please report it, with the output of the same command run with -vv, to digest's maintainers"


def _now() -> datetime:
    return datetime.now(UTC)


CONFIG_HELP = "Config file. Default: $DIGEST_CONFIG, else config/digest.toml."


def config_option(func: F) -> F:
    """``--config FILE`` on every command (also ``DIGEST_CONFIG``; default ``config/digest.toml``).

    It is accepted before the command too (``digest --config F run``); given in both places, the
    command's wins."""
    # A plain string: digest reads the file itself, so that every problem with it is one of its messages.
    return click.option("--config", "config", type=str, default=None, help=CONFIG_HELP)(func)


def settings_for(config: str | None) -> Settings:
    """The settings from the command's ``--config``, else the one given before the command."""
    from digest.settings import load_settings

    context = click.get_current_context()
    settings = load_settings(config or context.find_root().params.get("config"))
    return settings


def plain(text: object) -> Text:
    """Untrusted text as a table cell or line: no markup is read from it, control characters go.

    >>> plain("[bold]x[/bold]\x1b[31m").plain
    '[bold]x[/bold][31m'
    """
    return Text(one_line(str(text)))


def handles_errors(func: F) -> F:
    """Every way a command can fail, as one clear line on stderr and an exit code, never a traceback
    (unless -vv): a DigestError exits 2; Ctrl-C 130; anything unexpected 2, as an internal error."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = click.get_current_context().find_root().params.get("verbose", 0)
        try:
            return func(*args, **kwargs)
        except DigestError as exc:
            _fail(f"error: {exc}", exc, verbose)
            sys.exit(EXIT_CANNOT_RUN)
        except KeyboardInterrupt:
            click.echo(
                "digest: interrupted; nothing is lost: the next run sends again what was begun", err=True
            )
            sys.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            _fail(f"internal error: {type(exc).__name__}: {exc}; {REPORT_TO}", exc, verbose)
            sys.exit(EXIT_CANNOT_RUN)

    return wrapper  # type: ignore[return-value]


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _fail(message: str, exc: BaseException, verbose: int) -> None:
    """One message on stderr, credentials redacted; control characters (terminal escapes from feed text)
    dropped."""
    click.echo(f"digest: {_CONTROL.sub('', redact_text(message))}", err=True)
    if verbose >= 2:
        click.echo(redact_text("".join(traceback.format_exception(exc))), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digest")
@click.option(
    "-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug and tracebacks)."
)
@click.option("--config", "config", type=str, default=None, help=CONFIG_HELP)
def main(verbose: int, config: str | None) -> None:
    """A daily research-paper email digest: listings in, one email per subscriber out, never a paper twice."""
    logs.configure(logging.WARNING - 10 * min(verbose, 2))


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
    now = _now()
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
            extra = [f"{n} {what}" for n, what in ((s.skipped, "skipped"), (s.clamped, "cut")) if n]
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
    now = _now()
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
@click.argument("email")
@click.option("--keyword", "-k", "keywords", multiple=True, help="A word or phrase to follow (repeatable).")
@click.option("--exclude", "-x", "exclude", multiple=True, help="Drop papers that match this (repeatable).")
@click.option(
    "--max",
    "max_papers",
    type=click.IntRange(1, MAX_PAPERS),
    default=20,
    show_default=True,
    help="At most this many papers per email.",
)
@click.option("--name", default="", help="The subscriber's display name.")
@click.option("--about", default="", help="Their field in a sentence or two: papers close to it come too.")
@click.option(
    "--seed", "seeds", multiple=True, help="A paper like theirs: arXiv id or exact title (repeatable)."
)
@click.option("--timezone", default="", help="Their IANA time zone (default: the config's timezone).")
@click.option("--send-at", default="", help="Their hour, HH:MM local time (default: the config's send_at).")
@click.option(
    "--cadence",
    default="",
    help="daily, weekdays, weekly or weekly:<day> such as weekly:fri (default: the config's cadence).",
)
@handles_errors
def subscribe(
    config: str | None,
    email: str,
    keywords: tuple[str, ...],
    exclude: tuple[str, ...],
    max_papers: int,
    name: str,
    about: str,
    seeds: tuple[str, ...],
    timezone: str,
    send_at: str,
    cadence: str,
) -> None:
    """Add EMAIL, or replace their profile and re-enable them. No --keyword, --about or --seed: the
    trending digest.

    To re-enable a subscriber without touching their profile: digest resume EMAIL.
    """
    from digest.profiles import ProfileInput
    from digest.run.planning import reader_when, resume_hint
    from digest.store import Store

    settings = settings_for(config)
    address = normalise_email(email)
    asked = ProfileInput.checked(
        {
            "name": name,
            "keywords": list(keywords),
            "exclude": list(exclude),
            "max_papers": max_papers,
            "about": about,
            "seeds": list(seeds),
            "timezone": timezone,
            "send_at": send_at,
            "cadence": cadence,
        },
        subscriber=address,
    )
    profile, name = asked.profile(), asked.name
    with Store.open(settings.database) as store:
        before = store.readers.get(address)
        new = store.readers.add(Subscriber(address, name, profile), _now())
        stored = store.papers.find(seeds)
        unknown = [s for s in seeds if s not in stored]
    what = "trending papers" if profile.trending else ", ".join(profile.topics)
    when = reader_when(Subscriber(address, name, profile), settings.default_when()).describe()
    click.echo(f"{'subscribed' if new else 'updated'} {address}: {what}, {when}")
    for seed in unknown:
        click.echo(
            f"note: seed {seed!r} is not among the stored papers yet; it counts once a listing brings it"
        )
    if before is not None and before.bouncing:
        click.echo(f"re-enabled {address}: it was skipped as bouncing after repeated refusals")
    if before is not None and profile != before.profile:
        click.echo(f"note: this replaced {address}'s profile; {resume_hint(address)} re-enables without that")
    if any(mailbox_key(s.email) == mailbox_key(address) for s in settings.subscribers):
        click.echo(f"note: {address} is declared in {settings.config_path}; the config's profile applies")


@main.command()
@config_option
@click.argument("email")
@handles_errors
def unsubscribe(config: str | None, email: str) -> None:
    """Stop sending to EMAIL (their history and profile are kept; `digest resume` re-enables)."""
    from digest.store import Store

    settings = settings_for(config)
    address = normalise_email(email)
    with Store.open(settings.database) as store:
        store.readers.sync_config(settings.config_subscribers(), _now())
        if not store.readers.unsubscribe(address, _now()):
            raise DigestError(f"no subscriber {address}")
    click.echo(f"unsubscribed {address}")


@main.command()
@config_option
@click.argument("email")
@click.argument("paper")
@click.option("--more", "kind", flag_value="more", help="Send more papers like this one.")
@click.option("--less", "kind", flag_value="less", help="Send fewer papers like this one.")
@click.option("--undo", "kind", flag_value="undo", help="Forget what EMAIL said of this paper.")
@handles_errors
def feedback(config: str | None, email: str, paper: str, kind: str | None) -> None:
    """Record that EMAIL wants more (or less) like PAPER (an arXiv id or exact title): it moves their ranking
    from the next digest on, as the "more / less like this" links in the email do."""
    from digest.store import Store

    if kind is None:
        raise click.UsageError("say --more, --less or --undo")
    settings = settings_for(config)
    address = normalise_email(email)
    with Store.open(settings.database) as store:
        declared = any(mailbox_key(s.email) == mailbox_key(address) for s in settings.subscribers)
        if store.readers.get(address) is None and not declared:
            raise SubscriberError(f"no subscriber {address}", hint="see them with: digest subscribers")
        found = store.papers.find([paper]).get(paper)
        if found is None or found.ref is None:
            raise SubscriberError(
                f"no stored paper has the arXiv id or title {paper!r}",
                hint="give an arXiv id (2501.01234) or the exact title of a paper a listing brought",
            )
        store.readers.set_feedback(address, found.ref, None if kind == "undo" else kind, _now())
    said = {"more": "more like", "less": "less like", "undo": "forgot feedback on"}[kind]
    click.echo(f"{address}: {said} {found.title!r}")


@main.command("migrate-store")
@config_option
@click.option(
    "--to", "target", required=True, help="An empty PostgreSQL database: postgresql://user@host/db."
)
@handles_errors
def migrate_store(config: str | None, target: str) -> None:
    """Copy the SQLite database (papers, subscribers, history, outbox) into an empty PostgreSQL database,
    checking every table's row count; then set `database` to that URL. The password comes from PGPASSWORD
    or ~/.pgpass. Holds the run lock meanwhile, so no run changes what is being copied."""
    from digest.run.runlock import database_lock
    from digest.store import Store, is_server
    from digest.store.copy import copy_store

    settings = settings_for(config)
    if is_server(settings.database):
        raise ConfigError("it is already a PostgreSQL database", key="database")
    if not is_server(target):
        raise click.UsageError("--to takes a postgresql:// URL")
    if redact_url(target) != target:
        raise click.UsageError("--to must not hold a password: set PGPASSWORD (or ~/.pgpass) instead")
    with (
        database_lock(settings.database, _now()),
        Store.open(settings.database, read_only=True) as source,
        Store.open(target) as destination,
    ):
        counts = copy_store(source, destination)
    for table, rows in counts.items():
        click.echo(f"{table}: {rows:,} rows copied and counted")
    click.echo(f'done: set database = "{target}" in {settings.config_path} to use it')


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the subscribers as JSON.")
@click.option("--all", "include_inactive", is_flag=True, help="Include unsubscribed addresses.")
@handles_errors
def subscribers(config: str | None, as_json: bool, include_inactive: bool) -> None:
    """List subscribers and their profiles (config-declared and added with `digest subscribe`)."""
    from digest.run.planning import reader_when
    from digest.store import Store

    settings = settings_for(config)
    with Store.open(settings.database) as store:
        store.readers.sync_config(settings.config_subscribers(), _now())
        subs = store.readers.all(include_inactive=include_inactive)
    if as_json:
        click.echo(
            json.dumps(
                [s.to_json() for s in subs],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    title = f"{len(subs)} subscriber(s); default schedule: {settings.default_when().describe()}"
    table = Table(title=title, title_justify="left")
    own = [s.email for s in subs if s.profile.timezone or s.profile.send_at or s.profile.cadence]
    columns = ("email", "name", "keywords", "exclude", "max", *(("when",) if own else ()), "active")
    for col in columns:
        table.add_column(col, overflow="fold")
    default = settings.default_when()
    for s in subs:
        p = s.profile
        when = (reader_when(s, default).describe() if s.email in own else "default",) if own else ()
        table.add_row(
            plain(s.email),
            plain(s.name),
            plain(", ".join(p.keywords) or "(trending)"),
            plain(", ".join(p.exclude)),
            str(p.max_papers),
            *when,
            (
                plain(f"bouncing ({s.bounce_reason})" if s.bounce_reason else "bouncing")
                if s.bouncing
                else "yes"
            )
            if s.active
            else "no",
        )
    Console().print(table)


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
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes serving the port (one per CPU core for the most pages per second).",
)
@handles_errors
def serve(config: str | None, host: str, port: int, workers: int) -> None:
    """Serve the reader's web app for base_url: sign-up with confirmation, the manage page with its live
    preview, one-click unsubscribe, the digests viewed in a browser, and the /api for platforms.

    Needs DIGEST_SECRET_KEY (the key that signs the links). Put it behind a reverse proxy for https (and
    name the proxy in [web] trusted_proxies); it is safe to run beside `digest run` on the same database.
    Exit 2 when it cannot start (the key, the database, the address), 130 on Ctrl-C, 0 on SIGTERM.
    """
    from digest.web.server import serve as serve_web
    from digest.wiring import Services

    settings = settings_for(config)

    def serving() -> None:
        if not settings.base_url:
            click.echo("note: base_url is not set, so the emails link to no page of this app", err=True)
        click.echo(
            f"digest serve: http://{host}:{port} (for {settings.base_url or 'no base_url'}); Ctrl-C stops",
            err=True,
        )

    status = serve_web(Services(settings), host, port, workers, serving)
    if status == EXIT_INTERRUPTED:
        click.echo("digest serve: stopped", err=True)
    sys.exit(status)


@main.command()
@config_option
@click.argument("email")
@handles_errors
def resume(config: str | None, email: str) -> None:
    """Send to EMAIL again, keeping their profile: after `digest unsubscribe`, or once they were marked
    bouncing (fix the address problem first). They get what they missed, never a paper twice."""
    from digest.store import Store

    settings = settings_for(config)
    address = normalise_email(email)
    with Store.open(settings.database) as store:
        store.readers.sync_config(settings.config_subscribers(), _now())
        before = store.readers.get(address)
        if before is None or not store.readers.resume(address, _now()):
            raise DigestError(f"no subscriber {address}", hint=f"add one with: digest subscribe {address}")
    was = "bouncing" if before.bouncing else ("unsubscribed" if not before.active else "already active")
    click.echo(f"resumed {address} (was {was}); their profile is unchanged")


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
    now = _now()
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
        outcomes = pipeline.process_bounces(services, store, folder, _now())
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


if __name__ == "__main__":  # pragma: no cover
    main()
