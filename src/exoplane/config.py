"""Runtime configuration, read from the environment (prefix ``EXOPLANE_``) and ``.env``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RATE_LIMIT = "200/minute"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EXOPLANE_", env_file=".env", extra="ignore", frozen=True
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
    sip_domain: str = "exotel.com"

    rate_limit: str = DEFAULT_RATE_LIMIT
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    @field_validator("core_fleet", mode="before")
    @classmethod
    def _split_fleet(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit such as '200/minute': {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if not self.database_url:
            url = f"sqlite+aiosqlite:///{self.home / 'exoplane.db'}"
            object.__setattr__(self, "database_url", url)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
