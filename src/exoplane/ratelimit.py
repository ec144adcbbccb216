"""Per-principal request budgets (seed 05: 200 requests a minute), shared through Redis.

Both stores keep a sliding-window counter: a count for the current fixed window and one for
the window before it, the latter weighted by how much of it still overlaps the last window's
length. It costs the same whatever the limit (two counters a key), where a moving window keeps
every hit.

With ``EXOPLANE_REDIS_URL`` every process draws on the same budget, kept in Redis by the
``limits`` library. Without it the budget lives in this process's memory, in a plain dict: a
hit is a few dict operations on the event loop, with no task, thread or sweep of other keys.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
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


class RateLimiter(ABC):
    """The budget of each principal; :meth:`hit` spends one request of it."""

    def __init__(self, limit: RateLimitItem) -> None:
        self._limit = limit

    @classmethod
    def from_settings(cls, settings: Settings, redis_pool: ConnectionPool | None) -> RateLimiter:
        limit = parse(settings.rate_limit)
        if settings.redis_url and redis_pool is not None:
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=f"{settings.redis_key_prefix}:ratelimit",
                connection_pool=redis_pool,  # type: ignore[arg-type]
            )
            return SharedRateLimiter(limit, storage)
        return LocalRateLimiter(limit)

    @abstractmethod
    async def hit(self, principal: str) -> Decision: ...

    async def check_storage(self) -> bool:
        return True


class SharedRateLimiter(RateLimiter):
    """Budgets in Redis, shared by every process that uses the same key prefix."""

    def __init__(self, limit: RateLimitItem, storage: RedisStorage) -> None:
        super().__init__(limit)
        self._storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)

    async def hit(self, principal: str) -> Decision:
        allowed = await self._strategy.hit(self._limit, principal)
        stats = await self._strategy.get_window_stats(self._limit, principal)
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, self._limit.amount, stats.remaining, reset_after)

    async def check_storage(self) -> bool:
        return await self._storage.check()


@dataclass(slots=True)
class _Window:
    index: int  # which fixed window ``current`` counts: time // length
    previous: int
    current: int


class LocalRateLimiter(RateLimiter):
    """Budgets in this process's memory; right for a single process."""

    def __init__(self, limit: RateLimitItem) -> None:
        super().__init__(limit)
        self._length = float(limit.get_expiry())
        self._windows: dict[str, _Window] = {}
        self._index = 0

    async def hit(self, principal: str) -> Decision:
        return self.hit_at(principal, time.time())

    def hit_at(self, principal: str, now: float) -> Decision:
        amount, length = self._limit.amount, self._length
        index = int(now // length)
        if index != self._index:
            self._forget_before(index - 1)
            self._index = index
        window = self._windows.get(principal)
        if window is None:
            window = self._windows[principal] = _Window(index, 0, 0)
        elif window.index != index:
            window.previous = window.current if window.index == index - 1 else 0
            window.current = 0
            window.index = index
        # The share of the previous window that still lies within the last `length` seconds.
        left = 1.0 - (now - index * length) / length
        allowed = math.floor(window.previous * left + window.current) < amount
        if allowed:
            window.current += 1
        used = math.floor(window.previous * left + window.current)
        reset_after = self._seconds_until_free(window, left, now) if not allowed else left * length
        # Whole seconds, rounded up from the millisecond so float noise does not add one.
        reset_seconds = max(1, math.ceil(round(reset_after, 3)))
        return Decision(allowed, amount, max(0, amount - used), reset_seconds)

    def _seconds_until_free(self, window: _Window, left: float, now: float) -> float:
        """How long until one more request fits, given that none does now."""
        amount, length = self._limit.amount, self._length
        if window.current < amount and window.previous:
            # The previous window's weight falls linearly to 0 over the current window.
            needed_left = (amount - window.current) / window.previous
            return (left - needed_left) * length
        # This window alone is full: wait for it to become the previous one and slide out
        # far enough.
        return left * length + (1.0 - amount / window.current) * length

    def _forget_before(self, index: int) -> None:
        """Drop windows too old to count; runs once per window length, not per hit."""
        stale = [key for key, window in self._windows.items() if window.index < index]
        for key in stale:
            del self._windows[key]
