"""Runtime configuration, read from the environment (prefix ``EXOPLANE_``) and ``.env``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RATE_LIMIT = "200/minute"
# About 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h and 6 h after the first failure.
DEFAULT_RETRY_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0)
MIN_SECRET_KEY_LENGTH = 32
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
ENV_PREFIX = "EXOPLANE_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        frozen=True,
        # A rejected value may be a secret: errors name the setting, never echo its value.
        hide_input_in_errors=True,
    )

    home: Path = Path(".exoplane")
    database_url: str = ""
    redis_url: str | None = None
    redis_key_prefix: str = "exoplane"
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    core_fleet: Annotated[list[str], NoDecode] = Field(default_factory=list)
    exotel_api_base_url: str = "https://api.exotel.com"
    allow_private_networks: bool = False
    exotel_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    sip_domain: str = "voip.exotel.com"

    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE)
    )
    webhook_concurrency: int = Field(default=64, ge=1, le=1024)
    webhook_poll_seconds: float = Field(default=0.25, gt=0, le=10)
    sip_registration_ttl_seconds: int = Field(default=300, ge=10, le=86_400)
    # Timeline entries, webhook attempts and idempotency keys older than this are pruned by
    # the webhook worker.
    retention_days: int = Field(default=30, ge=1, le=36_500)

    media_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    media_session_limit_seconds: float = Field(default=3600.0, gt=0)
    media_max_message_bytes: int = Field(default=262_144, gt=0)
    # "KEY:TOKEN": require the Basic credentials Exotel sends for wss://KEY:TOKEN@host/...
    media_basic_auth: SecretStr | None = None
    # Require a capability (?sig=) on /exotel/{bot_id}, as given by the DID's websocket_url.
    media_require_signature: bool = False

    rate_limit: str = DEFAULT_RATE_LIMIT
    # The console: a session ends after this long without a page, and this long after sign-in
    # whatever happens; failed sign-ins are limited per account and per client address.
    console_idle_timeout_seconds: int = Field(default=1800, ge=1, le=86_400)
    console_session_lifetime_seconds: int = Field(default=43_200, ge=1, le=30 * 86_400)
    console_sign_in_limit: str = "5/minute"
    # Per-app portal links: how long a new link lasts unless its minting says otherwise,
    # and the longest any link may last.
    portal_link_default_seconds: int = Field(default=7 * 86_400, ge=60, le=365 * 86_400)
    portal_link_max_seconds: int = Field(default=30 * 86_400, ge=60, le=365 * 86_400)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    # Browser origins allowed to call the API; empty: no cross-origin access.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # FastAPI's own OpenTelemetry instrumentation, exporting through the global providers.
    opentelemetry: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value:
            return value
        scheme, separator, _ = value.partition("://")
        if not separator:
            raise ValueError(
                "not a database URL such as sqlite+aiosqlite:///path/to/exoplane.db "
                "or postgresql+asyncpg://user:password@host/name"
            )
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(f"unsupported scheme {scheme!r}; use {' or '.join(DATABASE_SCHEMES)}")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "not an http(s) URL such as https://exoplane.example.com "
                "(the address Exotel reaches this server at)"
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_LENGTH} characters long")
        return value

    @field_validator("core_fleet", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: list[float]) -> list[float]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("a comma-separated list of non-negative delays in seconds")
        return value

    @property
    def webhook_lease_seconds(self) -> float:
        """How long a claimed delivery stays with its worker before another may take it."""
        return self.webhook_timeout_seconds * 2 + 5

    @field_validator("rate_limit", "console_sign_in_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit such as '200/minute': {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _check_core_fleet(self) -> Settings:
        # The URL policy's syntax and address-literal rules; names are not resolved here.
        from exoplane.urls import CORE_FLEET, UrlRefused, check_url

        for index, url in enumerate(self.core_fleet):
            try:
                check_url(
                    url,
                    f"core_fleet.{index}",
                    CORE_FLEET,
                    allow_private=self.allow_private_networks,
                )
            except UrlRefused as exc:
                raise SettingInvalid("core_fleet", exc.message) from exc
        return self

    @model_validator(mode="after")
    def _check_portal_links(self) -> Settings:
        if self.portal_link_default_seconds > self.portal_link_max_seconds:
            raise SettingInvalid(
                "portal_link_default_seconds",
                f"must not be longer than portal_link_max_seconds ({self.portal_link_max_seconds})",
            )
        return self

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if not self.database_url:
            url = f"sqlite+aiosqlite:///{self.home / 'exoplane.db'}"
            object.__setattr__(self, "database_url", url)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    # Outages fail in seconds: how long to wait for a database connection (and for a free one
    # in the pool), for one statement (on SQLite: for the write lock), and for /readyz.
    database_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    database_statement_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    readiness_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # Redis's connect and socket timeout; while it fails, rate limits are counted in each
    # process, and Redis is tried again this often.
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    redis_recheck_seconds: float = Field(default=5.0, gt=0, le=3600)


class SettingInvalid(ValueError):
    """A setting refused by a check that looks at several settings at once."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def describe_invalid_settings(error: ValidationError) -> list[str]:
    """One line per refused setting, naming its environment variable but not its value."""
    lines = []
    for detail in error.errors():
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, SettingInvalid):
            field = cause.field
        elif detail["loc"]:
            field = str(detail["loc"][0])
        else:
            field = ""
        message = detail["msg"].removeprefix("Value error, ")
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        lines.append(f"{name}: {message}")
    return lines
