"""The operator's commands: serve (the reader's web app) and migrate-store."""

from __future__ import annotations

import sys

import click

from digest.cli.base import config_option, handles_errors, main, settings_for, utc_now
from digest.errors import EXIT_INTERRUPTED, ConfigError
from digest.redact import redact_url


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
        database_lock(settings.database, utc_now()),
        Store.open(settings.database, read_only=True) as source,
        Store.open(target) as destination,
    ):
        counts = copy_store(source, destination)
    for table, rows in counts.items():
        click.echo(f"{table}: {rows:,} rows copied and counted")
    click.echo(f'done: set database = "{target}" in {settings.config_path} to use it')
