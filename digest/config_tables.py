"""The config file's tables, one model each (``[[sources]]``, ``[delivery]``, ``[smtp]``, ...): their
fields, defaults and checks. ``settings.Settings`` holds them; ``load_settings`` reads the file.

Pure pydantic models: nothing here reads a file or the environment.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from digest.errors import SubscriberError
from digest.identity import normalise_email
from digest.models import Subscriber
from digest.profiles import ProfileInput


def no_booleans(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A number setting given ``true`` or ``false`` is refused (pydantic would read it as 1 or 0)."""
    kind = model.model_fields[str(info.field_name)].annotation
    if isinstance(value, bool) and kind in (int, float, int | None, float | None):
        raise ValueError("expected a number, not true or false")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return no_booleans(cls, value, info)


class SourceConfig(_Strict):
    """One ``[[sources]]`` table."""

    kind: str  # a listing kind (``sources.KINDS``: "snapshot", "feed", "hf-json"; checked when a run starts)
    name: str = Field(min_length=1)
    path: str | None = None
    url: str | None = None
    # Seconds for the whole fetch of a URL source, from connecting to the last byte.
    timeout: float = Field(default=20.0, gt=0)
    # Bytes a source may bring (a URL's body after decompression, or each file), at most.
    max_bytes: int = Field(default=50_000_000, ge=1_000)
    # Request headers whose values come from environment variables, e.g. {Authorization = "HF_AUTH"}:
    # a token never has to be written into the config file or the URL.
    headers_from_env: dict[str, str] = {}

    @model_validator(mode="after")
    def _one_location(self) -> SourceConfig:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path (a file or glob) or url")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https:// (got {self.url!r})")
        return self


class SubscriberConfig(ProfileInput):
    """One ``[[subscribers]]`` table: an address and the one reader profile (``profiles``), checked when
    the config loads, with the same rules and messages as every other way a profile comes in."""

    email: str

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return normalise_email(value)
        except SubscriberError as exc:
            raise ValueError(exc.message) from exc

    def to_subscriber(self) -> Subscriber:
        return Subscriber(self.email, self.name, self.profile())


class RelevanceConfig(_Strict):
    """``[relevance]``: how papers are placed by meaning for profiles with ``about``, seeds or feedback."""

    # "tfidf" (the default: TF-IDF + LSA fitted on the run's papers, no download), or a sentence-transformers
    # model's name or local folder (needs `pip install sentence-transformers`).
    model: str = Field(default="tfidf", min_length=1)


class DeliveryConfig(_Strict):
    method: str = "maildir"  # a channel (``wiring.CHANNELS``: "maildir", "smtp"; checked when a run starts)
    maildir: Path = Path("var/outbox")
    # How each batch of Maildir files is made durable before it is recorded as sent: "filesystem", one
    # syncfs of the Maildir's file system per batch (Linux; it writes out whatever else waits on that file
    # system too), or "files", each file's fsync and the folder's. The same guarantee either way.
    maildir_sync: Literal["filesystem", "files"] = "filesystem"
    # A transient failure (4xx, timeout, dropped connection) is retried within the run this many times,
    # waiting retry_backoff seconds, doubled each time, and no more than retry_budget seconds in all per run;
    # after that the message waits for the next run.
    retries: int = Field(default=3, ge=0, le=20)
    retry_backoff: float = Field(default=2.0, ge=0)
    retry_budget: float = Field(default=120.0, ge=0)
    # Processes that render and deliver in parallel, each with its own SMTP connection. 0: automatic (one
    # per core into a Maildir, 4 SMTP connections), and 1 for runs under 2,000 subscribers.
    workers: int = Field(default=0, ge=0, le=64)
    # Seconds a process's claim on a range of subscribers lasts without being renewed (it is renewed after
    # every batch of 256). When it runs out, another process (on any host) takes the range over; on
    # PostgreSQL a killed process's claim is taken over at once, whatever this says. It must exceed the
    # time one batch can take (with a rate_limit: 256 / rate_limit seconds, plus retry_budget).
    claim_lease: float = Field(default=300.0, ge=5)


class SmtpConfig(_Strict):
    host: str = "localhost"
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    timeout: float = Field(default=30.0, gt=0)
    rate_limit: float | None = Field(default=None, gt=0)  # messages per second, for providers that throttle

    @property
    def effective_port(self) -> int:
        """The port, defaulting by security: 587 for STARTTLS, 465 for TLS, 25 for none."""
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


# Secrets inside a table, refused in the config file: (table, setting, what they are, the variable to use).
TABLE_SECRETS = (
    ("dkim", "private_key", "private keys", "DIGEST_DKIM__PRIVATE_KEY"),
    ("smtp", "password", "passwords", "DIGEST_SMTP__PASSWORD"),
    ("summaries", "api_key", "API keys", "DIGEST_SUMMARIES__API_KEY"),
)


class SummariesConfig(_Strict):
    """``[summaries]``: a one-sentence TL;DR of each paper from a language model the operator names, off
    unless ``url`` is set (see ``run.summaries``): any server that speaks OpenAI's chat-completions API
    (llama.cpp's server, Ollama, vLLM, a hosted one). Made once per paper and language and kept; bounded
    in time; a paper without one shows its key sentence."""

    url: str | None = None  # the API's base, e.g. "http://127.0.0.1:8080/v1" (POST {url}/chat/completions)
    model: str = Field(default="default", min_length=1, max_length=200)
    api_key: SecretStr | None = None  # only from the environment: DIGEST_SUMMARIES__API_KEY
    language: str = Field(default="English", min_length=1, max_length=40)  # for readers who chose none
    timeout: float = Field(default=20.0, gt=0, le=300)  # seconds per request
    budget: float = Field(
        default=60.0, ge=0, le=3600
    )  # seconds a run spends on them at most, before it sends
    per_run: int = Field(default=200, ge=1, le=10_000)  # TL;DRs asked for per run at most
    concurrency: int = Field(default=4, ge=1, le=32)  # requests at once

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https:// (got {value!r})")
        return value.rstrip("/") if value else value


class ScheduleConfig(_Strict):
    """``[schedule]``: how ``digest schedule`` wakes. Each wake sends to the readers whose hour has
    come (see ``cadence``); it runs (reads the sources, plans, sends) only when someone's period opened
    since the last run, a reader is new or a message waits to be sent again, and else at most every
    ``recheck`` minutes while readers with nothing new yet are in their period (papers that come late)."""

    every: int = Field(default=5, ge=1, le=60)  # minutes between wakes
    recheck: int = Field(default=60, ge=5, le=1440)  # minutes


class AlertsConfig(_Strict):
    """``[alerts]`` (see ``alerts``): with ``to``, one email when a source fails ``after`` reads in a
    row or brings no new paper for ``after`` weekdays, and one when it recovers."""

    to: str | None = None
    after: int = Field(default=3, ge=1, le=30)

    @field_validator("to")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return None if value is None else SubscriberConfig._address(value)


class BouncesConfig(_Strict):
    # Returned mail. With an address, each digest's envelope sender is address+TAG@domain (VERP:
    # the relay returns bounces there; TAG is signed with DIGEST_SECRET_KEY); `digest bounces` reads the
    # Maildir the bounce address delivers into.
    address: str | None = None
    maildir: Path = Path("var/bounces")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(f"{value!r} is not a usable address: {exc}") from exc


class DkimConfig(_Strict):
    # DKIM signing: on when a selector is set. The key only from the environment
    # (DIGEST_DKIM__PRIVATE_KEY, PEM; in .env on one line with \n escapes); the domain defaults to the
    # sender's. Publish the public key at SELECTOR._domainkey.DOMAIN (see the README).
    selector: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    private_key: SecretStr | None = None


class WebConfig(_Strict):
    """``[web]``: what ``digest serve`` believes and how much mail its sign-up form may cause."""

    # Reverse proxies (IP addresses or networks such as "10.0.0.0/8") whose X-Forwarded-For and
    # X-Forwarded-Proto are believed. None by default: the client is the connection's own address, so
    # nobody can pick their own rate-limit bucket by sending the header.
    trusted_proxies: list[str] = []
    # Confirmation emails the sign-up form may send per hour, in all (every process and host on the
    # database): whatever a client claims to be, the form cannot become a relay.
    confirmations_per_hour: int = Field(default=100, ge=1, le=100_000)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network; name each proxy, e.g. '127.0.0.1' or"
                    " '10.0.0.0/8' (a proxy trusted by name, or every client, would let anyone claim any address)"
                ) from None
        return [entry.strip() for entry in value]
