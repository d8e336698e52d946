"""The ``digest`` command: thin. It parses, calls the library, prints, and picks the exit code.

Exit status: 0 all well; 1 the run finished but something failed and will be retried; 2 it could not run
(bad config, another run holds the lock, an unknown subscriber) or met an internal error; 130 interrupted
(Ctrl-C). Text from feeds and subscribers is printed as plain text: no markup, no control characters.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.text import Text

from digest import __version__, logs
from digest.errors import EXIT_CANNOT_RUN, EXIT_INTERRUPTED, DigestError
from digest.redact import one_line, redact_text

# The rest of digest is imported by the commands that use it, so that `digest --help` (and a command that
# needs little) starts without loading the pipeline, the renderer, the store and their libraries.
if TYPE_CHECKING:
    from digest.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
REPORT_TO = "please report it, with the output of the same command run with -vv, to digest's maintainers"


def utc_now() -> datetime:
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
