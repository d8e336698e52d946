"""The readers' commands: subscribe, unsubscribe, resume, feedback, subscribers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from digest.cli.base import config_option, handles_errors, main, plain, settings_for, utc_now
from digest.errors import ConfigError, DigestError, ReferenceFileError, SubscriberError
from digest.identity import mailbox_key, normalise_email
from digest.models import MAX_PAPERS, Subscriber

if TYPE_CHECKING:
    from digest.references import Recognised


def seeds_in_file(path: str) -> Recognised:
    """The seed papers in a reference file (``references``); ConfigError naming the file otherwise."""
    from pathlib import Path

    from digest.references import FILE_MAX, read_references

    try:
        file = Path(path)
        if file.stat().st_size > FILE_MAX:  # bounded before it is read
            raise ReferenceFileError(f"larger than {FILE_MAX // 1024} KiB; export fewer items")
        return read_references(file.read_bytes(), file.name)
    except OSError as exc:
        raise ConfigError(
            f"--seeds-from {path}: {exc.strerror or exc}", hint="give a readable file"
        ) from None
    except ReferenceFileError as exc:
        raise ConfigError(f"--seeds-from {path}: {exc.message}", hint="export BibTeX, RIS or CSV") from None


def section_caps(given: tuple[str, ...]) -> dict[str, int]:
    """``--section NAME=N`` options as caps; ConfigError naming the one that is not of that form.

    >>> section_caps(("keywords=5", "similar = 3"))
    {'keywords': 5, 'similar': 3}
    """
    caps: dict[str, int] = {}
    for item in given:
        name, _, n = item.partition("=")
        if not n.strip().isdigit():
            raise ConfigError(f"--section {item}: expected NAME=N", hint="for example --section keywords=5")
        caps[name.strip()] = int(n)
    return caps


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
@click.option(
    "--author",
    "authors",
    multiple=True,
    help='An author whose papers they want: "Yann LeCun", "Y. LeCun" or "LeCun, Yann" (repeatable).',
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    help="Only papers in this arXiv category (cs.CL, or cs.* for all of cs; repeatable). Papers whose"
    " listing gives no categories stay in.",
)
@click.option(
    "--exclude-category",
    "exclude_categories",
    multiple=True,
    help="Leave out papers in this arXiv category (repeatable).",
)
@click.option(
    "--seeds-from",
    "seeds_from",
    type=click.Path(dir_okay=False),
    default=None,
    help="A BibTeX, RIS or Zotero CSV export: its papers become seeds too (arXiv ids, else titles).",
)
@click.option(
    "--section",
    "sections",
    multiple=True,
    metavar="NAME=N",
    help="At most N papers of a section per email: authors, keywords, similar or trending (repeatable);"
    " trending=N also adds up to N of the most upvoted papers in their area.",
)
@click.option(
    "--upvotes",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="How much community signal (upvotes) counts in their ranking, 0 to 1.",
)
@click.option(
    "--language",
    default="",
    help="The language of their TL;DRs where [summaries] is set up, e.g. German (default: the config's).",
)
@click.option(
    "--updates/--no-updates",
    default=True,
    show_default=True,
    help="Tell them of new versions of papers they were sent (an 'Updated since you saw it' part).",
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
    authors: tuple[str, ...],
    categories: tuple[str, ...],
    exclude_categories: tuple[str, ...],
    seeds_from: str | None,
    sections: tuple[str, ...],
    upvotes: float,
    language: str,
    updates: bool,
    timezone: str,
    send_at: str,
    cadence: str,
) -> None:
    """Add EMAIL, or replace their profile and re-enable them. No --keyword, --author, --about or --seed:
    the trending digest.

    To re-enable a subscriber without touching their profile: digest resume EMAIL.
    """
    from digest.profiles import SEEDS_MAX, ProfileInput
    from digest.run.planning import reader_when, resume_hint
    from digest.store import Store

    settings = settings_for(config)
    address = normalise_email(email)
    if seeds_from is not None:
        recognised = seeds_in_file(seeds_from)
        click.echo(f"{seeds_from}: {recognised.summary()}")
        seeds = tuple(dict.fromkeys([*seeds, *recognised.seeds]))
        if len(seeds) > SEEDS_MAX:
            click.echo(f"note: a profile keeps {SEEDS_MAX} seed papers; the first {SEEDS_MAX} are kept")
            seeds = seeds[:SEEDS_MAX]
    asked = ProfileInput.checked(
        {
            "name": name,
            "keywords": list(keywords),
            "exclude": list(exclude),
            "max_papers": max_papers,
            "about": about,
            "seeds": list(seeds),
            "authors": list(authors),
            "categories": list(categories),
            "exclude_categories": list(exclude_categories),
            "sections": section_caps(sections),
            "upvotes": upvotes,
            "language": language,
            "updates": updates,
            "timezone": timezone,
            "send_at": send_at,
            "cadence": cadence,
        },
        subscriber=address,
    )
    profile, name = asked.profile(), asked.name
    with Store.open(settings.database) as store:
        before = store.readers.get(address)
        new = store.readers.add(Subscriber(address, name, profile), utc_now())
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
        store.readers.sync_config(settings.config_subscribers(), utc_now())
        if not store.readers.unsubscribe(address, utc_now()):
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
        store.feedback.set(address, found.ref, None if kind == "undo" else kind, utc_now())
    said = {"more": "more like", "less": "less like", "undo": "forgot feedback on"}[kind]
    click.echo(f"{address}: {said} {found.title!r}")


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
        store.readers.sync_config(settings.config_subscribers(), utc_now())
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
@click.argument("email")
@handles_errors
def resume(config: str | None, email: str) -> None:
    """Send to EMAIL again, keeping their profile: after `digest unsubscribe`, or once they were marked
    bouncing (fix the address problem first). They get what they missed, never a paper twice."""
    from digest.store import Store

    settings = settings_for(config)
    address = normalise_email(email)
    with Store.open(settings.database) as store:
        store.readers.sync_config(settings.config_subscribers(), utc_now())
        before = store.readers.get(address)
        if before is None or not store.readers.resume(address, utc_now()):
            raise DigestError(f"no subscriber {address}", hint=f"add one with: digest subscribe {address}")
    was = "bouncing" if before.bouncing else ("unsubscribed" if not before.active else "already active")
    click.echo(f"resumed {address} (was {was}); their profile is unchanged")
