"""Configuration: a TOML file, overridden by ``DIGEST_*`` environment variables and a ``.env`` file.

Precedence, highest first: environment, ``.env``, the TOML file, the defaults below. Nested settings use
``__`` in the environment (``DIGEST_SMTP__HOST``). Secrets come only from the environment: a password in the
TOML file is refused. Relative paths in the file (and in the environment) resolve against the config file's
folder, so a config works wherever ``digest`` is started from.

``load_settings`` turns every problem into one ``ConfigError`` that names the key and the fix.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections import Counter
from contextvars import ContextVar
from datetime import time
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from digest.cadence import When, parse_cadence, parse_send_at
from digest.config_paths import check_model, check_templates, resolved
from digest.config_tables import (
    TABLE_SECRETS,
    AlertsConfig,
    BouncesConfig,
    DeliveryConfig,
    DkimConfig,
    RelevanceConfig,
    ScheduleConfig,
    SmtpConfig,
    SourceConfig,
    SubscriberConfig,
    SummariesConfig,
    WebConfig,
    no_booleans,
)
from digest.errors import ConfigError
from digest.identity import mailbox_key
from digest.models import Subscriber
from digest.redact import redact_text, redact_url

DEFAULT_CONFIG = Path("config/digest.toml")
# The TOML file of the settings being loaded and its content (``load_settings``), for the TOML source.
_TOML_FILE: ContextVar[tuple[Path, dict[str, Any]] | None] = ContextVar("digest_toml_file", default=None)


class _ReadTomlFile(TomlConfigSettingsSource):
    """pydantic-settings' TOML source (its precedence, its merging) over the file ``load_settings`` has
    already read and checked, so that a config of many readers is parsed once, not twice."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, data: dict[str, Any]) -> None:
        self._read = (path, data)
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        path, data = self._read
        return data if Path(file_path) == path else super()._read_file(file_path)


log = logging.getLogger("digest")


class Settings(BaseSettings):
    """Every setting, with its default. The README's configuration reference mirrors this class."""

    model_config = SettingsConfigDict(
        env_prefix="DIGEST_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    # A SQLite file (the default), or a PostgreSQL URL whose password comes from the environment
    # (libpq's PGPASSWORD or ~/.pgpass), never from the config.
    database: Path | str = Path("var/digest.sqlite3")
    lookback_days: int = Field(default=7, ge=1, le=365)
    # When readers get their digest unless they chose otherwise (see ``cadence``): local send_at in
    # timezone, and "daily", "weekdays" or "weekly:<day>".
    send_at: time = time(7, 0)
    timezone: str = "UTC"
    cadence: str = "daily"
    sender: str = "Paper Digest <digest@example.org>"
    base_url: str | None = None
    # Signs every link that acts for a reader; only from the environment (DIGEST_SECRET_KEY). Old keys
    # (DIGEST_OLD_SECRET_KEYS, comma-separated) still verify, for rotation.
    secret_key: SecretStr | None = None
    old_secret_keys: SecretStr | None = None
    # The bearer token of `digest serve`'s /api (DIGEST_API_TOKEN); without it the API is off.
    api_token: SecretStr | None = None
    templates_dir: Path | None = None
    delivery: DeliveryConfig = DeliveryConfig()
    smtp: SmtpConfig = SmtpConfig()
    relevance: RelevanceConfig = RelevanceConfig()
    dkim: DkimConfig = DkimConfig()
    bounces: BouncesConfig = BouncesConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    alerts: AlertsConfig = AlertsConfig()
    web: WebConfig = WebConfig()
    summaries: SummariesConfig = SummariesConfig()
    sources: list[SourceConfig] = []
    subscribers: list[SubscriberConfig] = []
    # Where this configuration was read from; relative paths were resolved against its folder.
    config_path: Path | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return no_booleans(cls, value, info)

    @field_validator("send_at", mode="before")
    @classmethod
    def _send_at(cls, value: Any) -> Any:
        """A time of day: "HH:MM" (or a TOML time, 07:00:00); a bare number is refused (pydantic would
        read 7 as seven seconds past midnight)."""
        if isinstance(value, time):
            return value
        if not isinstance(value, str):
            raise ValueError('write the time of day as a string, "HH:MM" (e.g. "07:00")')
        return parse_send_at(value)

    @field_validator("database")
    @classmethod
    def _database(cls, value: Path | str) -> Path | str:
        if isinstance(value, str) and value.startswith(("postgresql://", "postgres://")):
            if redact_url(value) != value:
                raise ValueError(
                    f"the URL {redact_url(value)} holds a password: remove it there and set PGPASSWORD"
                    " (or ~/.pgpass) in the environment instead"
                )
            return value
        return Path(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin'"
            ) from exc
        return value

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: str) -> str:
        return parse_cadence(value)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        name, address = parseaddr(value)
        try:
            address = validate_email(address, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            raise ValueError(f"{value!r} is not 'Name <address>' with a usable address: {exc}") from exc
        return formataddr((name, address))

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        local = ("http://localhost", "http://127.0.0.1")
        if value is not None and not (value.startswith("https://") or value.startswith(local)):
            raise ValueError(
                "base_url must start with https:// (http://localhost or http://127.0.0.1 for a local trial)"
            )
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = Counter(s.name for s in self.sources)
        dupes = sorted(n for n, seen in names.items() if seen > 1)
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        mailboxes = Counter(mailbox_key(s.email) for s in self.subscribers)  # one mailbox, one reader
        dupes = sorted(e for e, seen in mailboxes.items() if seen > 1)
        if dupes:
            raise ValueError(f"subscriber emails must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        """Relative paths (in the file or the environment) resolved against the config file's folder, the
        templates folder and the relevance model checked: a config works from any working directory, and
        what it points at is found now, not half-way through a run."""
        if self.config_path is None:
            return self
        base = self.config_path.parent
        if isinstance(self.database, Path):
            self.database = resolved(self.database, base)
        self.delivery = self.delivery.model_copy(update={"maildir": resolved(self.delivery.maildir, base)})
        self.bounces = self.bounces.model_copy(update={"maildir": resolved(self.bounces.maildir, base)})
        self.sources = [
            s.model_copy(update={"path": str(resolved(Path(s.path), base))}) if s.path is not None else s
            for s in self.sources
        ]
        if self.templates_dir is not None:
            self.templates_dir = resolved(self.templates_dir, base)
            check_templates(self.templates_dir)
        self.relevance = self.relevance.model_copy(update={"model": check_model(self.relevance.model, base)})
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence, highest first: the environment, ``.env``, the TOML file ``load_settings`` names."""
        toml = _TOML_FILE.get()
        file = [_ReadTomlFile(settings_cls, *toml)] if toml is not None else []
        return (init_settings, env_settings, dotenv_settings, *file)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def default_when(self) -> When:
        """The schedule of readers who set none of their own."""
        return When(self.zone, self.send_at, self.cadence)

    @property
    def sender_address(self) -> str:
        return parseaddr(self.sender)[1]

    def config_subscribers(self) -> list[Subscriber]:
        return [s.to_subscriber() for s in self.subscribers]


def _loc(loc: tuple[Any, ...]) -> str:
    """``("sources", 1, "kind")`` -> ``"sources[1].kind"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_SECRET_SETTING = re.compile(r"password|secret|token|private_key", re.I)  # values never shown


def _explain(exc: ValidationError, where: str) -> ConfigError:
    lines = []
    first_key = None
    for err in exc.errors():
        key = _loc(tuple(p for p in err["loc"] if p not in ("function-after",)))
        first_key = first_key or key
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting; check its spelling against the README's configuration reference"
        elif (
            "input" in err
            and err["type"] not in ("missing",)
            and not isinstance(err["input"], dict | list)
            and not _SECRET_SETTING.search(key)
        ):
            msg += f" (got {redact_text(repr(err['input']))})"
        lines.append(f"{key or '(top level)'}: {msg}")
    return ConfigError(f"invalid configuration in {where}:\n  " + "\n  ".join(lines), key=None)


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """``--config``, else ``DIGEST_CONFIG``, else ``config/digest.toml``."""
    return Path(explicit or os.environ.get("DIGEST_CONFIG") or DEFAULT_CONFIG)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8"
        ) from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path} is a folder, not a config file", hint="pass --config FILE") from exc
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no config file at {path}",
            hint="pass --config FILE, set DIGEST_CONFIG, or copy config/digest.toml from the repository",
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}", hint="check the file's permissions for this user"
        ) from exc


def _env_names(model: type[BaseModel], prefix: str) -> set[str]:
    """Every environment variable name a settings model reads, upper-cased: ``DIGEST_SMTP__HOST``, …"""
    names = set()
    for name, info in model.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= _env_names(kind, f"{prefix}{name}__")
    return names


KNOWN_ENV = (_env_names(Settings, "DIGEST_") - {"DIGEST_CONFIG_PATH"}) | {"DIGEST_CONFIG"}


def unknown_env(environ: dict[str, str]) -> list[str]:
    """``DIGEST_*`` names that no setting reads (a typo such as ``DIGEST_SMTP_HOST``), sorted.

    >>> unknown_env({"DIGEST_SMTP_HOST": "x", "DIGEST_SMTP__HOST": "y", "HOME": "/root"})
    ['DIGEST_SMTP_HOST']
    """
    return sorted(k for k in environ if k.upper().startswith("DIGEST_") and k.upper() not in KNOWN_ENV)


def _read_dotenv(path: Path) -> dict[str, str]:
    """The ``DIGEST_*`` lines of a ``.env`` file, or a ConfigError saying why it cannot be read."""
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path.resolve()} is not UTF-8 text (byte {exc.start})", hint="save it as UTF-8"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path.resolve()}: {exc.strerror}", hint="check its permissions, or remove it"
        ) from exc
    return {k: v or "" for k, v in dotenv_values(path).items() if k.upper().startswith("DIGEST_")}


def load_settings(config: str | os.PathLike[str] | None = None) -> Settings:
    """Read the config file, apply the environment, validate, and resolve relative paths."""
    path = resolve_config_path(config)
    data = read_toml(path)
    dotenv = _read_dotenv(Path(".env"))
    for name in unknown_env({**dotenv, **os.environ}):
        log.warning(
            "%s names no setting and is ignored; see docs/configuration.md for the DIGEST_* names", name
        )
    unknown = sorted(set(data) - set(Settings.model_fields) | {"config_path"} & set(data))
    if unknown:
        raise ConfigError(
            f"unknown setting in {path}",
            key=unknown[0],
            hint="check its spelling against the README's configuration reference",
        )
    secrets = sorted({"secret_key", "old_secret_keys", "api_token"} & set(data))
    if secrets:
        raise ConfigError(
            "secret keys are not read from the config file",
            key=secrets[0],
            hint=f"remove it there and set DIGEST_{secrets[0].upper()} in the environment or in .env",
        )
    for table, name, what, variable in TABLE_SECRETS:
        if isinstance(data.get(table), dict) and name in data[table]:
            raise ConfigError(
                f"{what} are not read from the config file",
                key=f"{table}.{name}",
                hint=f"remove it there and set {variable} in the environment or in .env",
            )

    token = _TOML_FILE.set((path, data))
    try:
        return Settings(config_path=path.resolve())
    except ValidationError as exc:
        raise _explain(exc, str(path)) from None
    finally:
        _TOML_FILE.reset(token)
