"""Per-principal request budgets (seed 05: 200 requests a minute), shared through Redis.

Without ``EXOPLANE_REDIS_URL`` the budget lives in process memory, which is right for one
process; with it, every process draws on the same budget. The sliding-window counter costs the
same whatever the limit (two counters a key), where a moving window keeps every hit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool

from exoplane.config import Settings


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """``RateLimit-*`` (and ``Retry-After`` when refused) as ASGI header pairs."""
        headers = [
            (b"ratelimit-limit", b"%d" % self.limit),
            (b"ratelimit-remaining", b"%d" % self.remaining),
            (b"ratelimit-reset", b"%d" % self.reset_after),
        ]
        if not self.allowed:
            headers.append((b"retry-after", b"%d" % self.reset_after))
        return headers


class RateLimiter:
    def __init__(self, storage: Storage, limit: RateLimitItem) -> None:
        self._storage = storage
        self._limit = limit
        self._strategy = SlidingWindowCounterRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings, redis_pool: ConnectionPool | None) -> RateLimiter:
        storage: Storage
        if settings.redis_url and redis_pool is not None:
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=f"{settings.redis_key_prefix}:ratelimit",
                connection_pool=redis_pool,  # type: ignore[arg-type]
            )
        else:
            storage = MemoryStorage()
        return cls(storage, parse(settings.rate_limit))

    async def hit(self, principal: str) -> Decision:
        allowed = await self._strategy.hit(self._limit, principal)
        stats = await self._strategy.get_window_stats(self._limit, principal)
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, self._limit.amount, stats.remaining, reset_after)

    async def check_storage(self) -> bool:
        return await self._storage.check()
