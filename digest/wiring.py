"""The composition root: the services of one process, built once from its settings.

``Settings`` reads and validates the configuration and builds nothing. ``Services`` turns it into what a
command works with, once per process (a CLI command, each `digest serve` process, each worker process of
a run): the signing keys and the signer, the DKIM key, the VERP return path, the renderer, the text model,
transports and couriers, the store, the clock. The stage modules get narrow values from here (a renderer,
a courier, a schedule, a pool of papers), never the settings; so a runtime object is made once, where its
inputs are known, and a bad key is found when a command starts, not half-way through it.

A transport can be given instead of the configured one (``Services(settings, transport=MemoryTransport())``):
the fake that ships with ``email.transport``, for tests and library users.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from digest import sources
from digest.cadence import When
from digest.email.bounces import verp_address
from digest.email.dkim import KEY_VARIABLE, DkimKey
from digest.email.mime import Outgoing
from digest.email.render import Renderer
from digest.email.smtp import SmtpTransport
from digest.email.transport import MaildirTransport, Transport
from digest.errors import ConfigError
from digest.links import Links
from digest.plugins import add_installed
from digest.run.channel import Channel, EmailChannel
from digest.run.courier import Courier, RetryBudget
from digest.run.planning import candidate_pool
from digest.selection.index import PaperIndex
from digest.selection.semantic import TextModel, make_model
from digest.settings import Settings
from digest.store import Store
from digest.tokens import Signer, check_keys


class ChannelMaker(Protocol):
    """Makes a process's channel for ``[delivery] method`` from its services: ``budget`` is the run's retry
    budget (shared by its worker processes), ``share`` how many processes send at once, ``sleep`` how a
    retry waits."""

    def __call__(
        self, services: Services, *, budget: RetryBudget | None, share: int, sleep: Callable[[float], None]
    ) -> Channel: ...


def email_channel(
    services: Services, *, budget: RetryBudget | None, share: int, sleep: Callable[[float], None]
) -> Channel:
    """Digests as emails into the Maildir or over SMTP (``[delivery] method``: "maildir", "smtp")."""
    return EmailChannel(
        services.renderer, services.courier(services.transport(), budget=budget, share=share, sleep=sleep)
    )


# The channels ``[delivery] method`` names: one line each. A channel from outside digest registers itself
# (``register_channel``), or is found under the entry-point group ``digest.channels`` of an installed package.
CHANNELS: dict[str, ChannelMaker] = {
    "maildir": email_channel,
    "smtp": email_channel,
}


def register_channel(method: str, maker: ChannelMaker) -> None:
    """Add a channel: ``[delivery] method = "<method>"`` then delivers every digest through ``maker``'s."""
    CHANNELS[method] = maker


def channels() -> dict[str, ChannelMaker]:
    """Every channel known: digest's, those registered, and installed packages' (``digest.channels``)."""
    return add_installed("digest.channels", CHANNELS)


class Services:
    """The services of one process (see the module's docstring). Each is made at its first use, once."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: Transport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))

    # -- keys ----------------------------------------------------------------------------------------

    @cached_property
    def keys(self) -> list[str]:
        """The keys that sign and verify readers' links, the signing key last; ConfigError if missing or
        weak."""
        s = self.settings
        old = s.old_secret_keys.get_secret_value().split(",") if s.old_secret_keys else []
        current = s.secret_key.get_secret_value() if s.secret_key else None
        return check_keys(current, [k.strip() for k in old if k.strip()])

    @cached_property
    def signer(self) -> Signer:
        return Signer(self.keys)

    @cached_property
    def links(self) -> Links | None:
        """The reader's links under ``base_url`` (none without one: the email then says to reply)."""
        return Links(self.signer, self.settings.base_url) if self.settings.base_url else None

    @cached_property
    def message_key(self) -> str | None:
        """What keys digests' Message-IDs (see ``render.message_id_for``): the signing key, when one is set."""
        return self.keys[-1] if self.settings.secret_key or self.settings.base_url else None

    @cached_property
    def dkim(self) -> DkimKey | None:
        """The DKIM signing key, when ``[dkim] selector`` is set; ConfigError if its key is missing or bad."""
        dkim = self.settings.dkim
        if not dkim.selector:
            return None
        if dkim.private_key is None:
            raise ConfigError(
                "a selector is set but there is no private key",
                key="dkim.private_key",
                hint=f"set {KEY_VARIABLE} in the environment or in .env, or remove [dkim] selector",
            )
        domain = dkim.domain or self.settings.sender_address.rpartition("@")[2]
        return DkimKey.load(dkim.selector, domain, dkim.private_key.get_secret_value())

    @cached_property
    def return_path(self) -> Callable[[str], str] | None:
        """Each subscriber's envelope sender when ``[bounces] address`` is set (VERP, signed with the secret
        key: ConfigError without one), else None: the sender's address for everyone."""
        bounce_address = self.settings.bounces.address
        if bounce_address is None:
            return None
        key = self.keys[-1]
        return lambda email: verp_address(bounce_address, email, key)

    @property
    def bounce_keys(self) -> list[str]:
        """The keys that may have signed a returned mail's VERP tag (none when VERP is off)."""
        return self.keys if self.settings.bounces.address else []

    # -- the email channel ---------------------------------------------------------------------------

    @cached_property
    def renderer(self) -> Renderer:
        """The renderer of this process: templates read and CSS inlined once; links signed with ``base_url``."""
        s = self.settings
        return Renderer(
            sender=s.sender,
            templates_dir=s.templates_dir,
            links=self.links,
            dkim=self.dkim,
            return_path=self.return_path,
            message_key=self.message_key,
            language=s.summaries.language if s.summaries.url else None,
        )

    def transport(self) -> Transport:
        """A transport for ``[delivery] method`` (one per process: an SMTP connection is not shared), or the
        one given to ``Services``."""
        if self._transport is not None:
            return self._transport
        if self.settings.delivery.method == "smtp":
            return SmtpTransport(self.settings.smtp, self.settings.sender_address)
        return MaildirTransport(self.settings.delivery.maildir, self.settings.delivery.maildir_sync)

    def courier(
        self,
        transport: Transport,
        *,
        budget: RetryBudget | None = None,
        share: int = 1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Courier:
        """The retry policy of ``[delivery]`` over ``transport``; with ``share`` processes sending at once,
        each gets its share of the rate limit, and all draw on one ``budget``."""
        d, smtp = self.settings.delivery, self.settings.smtp
        rate = smtp.rate_limit / share if d.method == "smtp" and smtp.rate_limit else None
        return Courier(
            transport,
            retries=d.retries,
            backoff=d.retry_backoff,
            budget=budget or RetryBudget(d.retry_budget),
            rate_limit=rate,
            sleep=sleep,
        )

    def channel(
        self,
        *,
        budget: RetryBudget | None = None,
        share: int = 1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Channel:
        """This process's channel for ``[delivery] method`` (see ``run.channel``)."""
        return self._channel_maker(budget=budget, share=share, sleep=sleep)

    def _channel_maker(self, **options: Any) -> Channel:
        method = self.settings.delivery.method
        maker = channels().get(method)
        if maker is None:
            raise ConfigError(
                f"no delivery method {method!r}",
                key="delivery.method",
                hint=f"use one of {', '.join(sorted(channels()))}",
            )
        return maker(self, **options)

    def send_now(self, message: Outgoing) -> None:
        """One message of the operator's or a sign-up's, through a transport of its own, made durable."""
        with self.transport() as transport:
            transport.send(message)
            transport.flush()

    # -- selection -----------------------------------------------------------------------------------

    @cached_property
    def text_model(self) -> TextModel:
        return make_model(self.settings.relevance.model)

    @property
    def default_when(self) -> When:
        """The schedule of readers who set none of their own."""
        return self.settings.default_when()

    @property
    def zone(self) -> ZoneInfo:
        return self.settings.zone

    def day(self, now: datetime) -> date:
        """The local date of ``now`` in the operator's time zone: it names the run that hosts share, and
        the sources' listing day. Each reader's digest is named by their own period (``cadence``)."""
        return now.astimezone(self.zone).date()

    def pool(self, store: Store, now: datetime) -> PaperIndex:
        """The candidate papers of a run (or a preview) at ``now``, indexed."""
        return candidate_pool(
            store,
            now,
            lookback_days=self.settings.lookback_days,
            weekly=self.default_when.weekly,
            model=self.text_model,
        )

    # -- the store -----------------------------------------------------------------------------------

    @property
    def database(self) -> Path | str:
        return self.settings.database

    def open_store(self, *, sync: str = "FULL", read_only: bool = False) -> Store:
        return Store.open(self.settings.database, sync=sync, read_only=read_only)

    def check(self) -> None:
        """Build now what a run would fail on later: the DKIM key, the key VERP needs, the signing keys when
        links are signed, the templates, the delivery method and each source's kind (ConfigError naming the
        setting)."""
        _ = self.renderer
        if self.settings.delivery.method not in channels():
            self.channel()  # names the method and those there are
        known = sources.kinds()
        for i, source in enumerate(self.settings.sources):
            if source.kind not in known:
                raise ConfigError(
                    f"no listing kind {source.kind!r}",
                    key=f"sources[{i}].kind",
                    hint=f"use one of {', '.join(sorted(known))}",
                )
