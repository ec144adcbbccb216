"""The typed state the lifespan builds once and every request reaches through ``State``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from redis.asyncio import ConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from exoplane.capabilities import Capabilities
from exoplane.config import Settings
from exoplane.exotel.client import ExotelClient
from exoplane.media.bots import Bot
from exoplane.ratelimit import RateLimiter
from exoplane.security import Vault

if TYPE_CHECKING:  # db.py depends on this module for its session dependency
    from exoplane.db import Reader
    from exoplane.integrations.calls.writer import HookWriter
    from exoplane.stats.service import RecentStats


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    vault: Vault
    rate_limiter: RateLimiter
    # Failed console sign-ins, per account and per client address.
    sign_in_limiter: RateLimiter
    redis_pool: ConnectionPool | None
    reader: Reader
    capabilities: Capabilities
    exotel: ExotelClient
    bots: dict[str, type[Bot]]
    # Called after a request commits webhook events, so delivery starts without a poll.
    wake_webhooks: Callable[[], None]
    hooks: HookWriter
    # The console's charts of the last day, read from the worker's hourly rollup (an hour it
    # lacks is counted on the spot, the current one kept between views for a few seconds).
    recent_stats: RecentStats


def app_state(request: Request) -> AppState:
    state: AppState = request.state.exoplane
    return state


async def get_state(request: Request) -> AppState:
    return app_state(request)


State = Annotated[AppState, Depends(get_state)]
