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

import asyncio
import contextlib
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import Counter, Gauge
from redis.asyncio import ConnectionPool

from exoplane.config import Settings
from exoplane.logs import get_logger

log = get_logger("exoplane.ratelimit")


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
    def from_settings(
        cls,
        settings: Settings,
        redis_pool: ConnectionPool | None,
        *,
        limit_text: str | None = None,
        name: str = "ratelimit",
    ) -> RateLimiter:
        """The request budget (``EXOPLANE_RATE_LIMIT``), or another named budget such as
        the console's failed sign-ins, kept apart in Redis by ``name``."""
        limit = parse(limit_text or settings.rate_limit)
        if settings.redis_url and redis_pool is not None:
            storage = RedisStorage(
                "async+" + settings.redis_url,
                implementation="redispy",
                key_prefix=f"{settings.redis_key_prefix}:{name}",
                connection_pool=redis_pool,  # type: ignore[arg-type]
            )
            return FallbackRateLimiter(
                SharedRateLimiter(limit, storage),
                LocalRateLimiter(limit),
                recheck_seconds=settings.redis_recheck_seconds,
                timeout_seconds=settings.redis_timeout_seconds,
            )
        return LocalRateLimiter(limit)

    @abstractmethod
    async def hit(self, principal: str) -> Decision: ...

    @abstractmethod
    async def spent(self, principal: str) -> bool:
        """Whether ``principal``'s budget is spent now, without spending any of it."""

    async def check_storage(self) -> bool:
        return True

    @property
    def where(self) -> str:
        """Where budgets are counted now: ``"redis"`` or ``"local"``."""
        return "local"

    async def aclose(self) -> None:  # noqa: B027 (most limiters have nothing to stop)
        """Stop any background work."""


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

    async def spent(self, principal: str) -> bool:
        return not await self._strategy.test(self._limit, principal)

    async def check_storage(self) -> bool:
        return await self._storage.check()

    @property
    def where(self) -> str:
        return "redis"


FALLBACK = Gauge(
    "exoplane_ratelimit_fallback",
    "1 while rate limits are counted in this process because Redis is unavailable",
)
FALLBACKS = Counter(
    "exoplane_ratelimit_fallbacks",
    "How many times rate limiting fell back from Redis to this process's counters",
)


class FallbackRateLimiter(RateLimiter):
    """Budgets in Redis while it answers, and in this process while it does not.

    A request that finds Redis failing (refused, or silent past its socket timeout) switches
    the process to its own counters, logged once; Redis is then tried again every
    ``recheck_seconds`` in the background, not on each request, and used again once it
    answers. While it falls back each process keeps its own budget, so a cluster of N
    processes admits up to N times the limit: better than refusing or stalling every call.
    """

    def __init__(
        self,
        shared: SharedRateLimiter,
        local: LocalRateLimiter,
        *,
        recheck_seconds: float,
        timeout_seconds: float,
    ) -> None:
        super().__init__(shared._limit)
        self._shared = shared
        self._local = local
        self._recheck_seconds = recheck_seconds
        self._timeout_seconds = timeout_seconds
        self._falling_back = False
        self._next_check = 0.0
        self._check: asyncio.Task[None] | None = None

    async def hit(self, principal: str) -> Decision:
        if not self._falling_back:
            try:
                return await self._shared.hit(principal)
            except Exception as exc:  # whatever the driver raises, it is down for this call
                self._fall_back(exc)
        elif self._check is None and time.monotonic() >= self._next_check:
            self._check = asyncio.create_task(self._recheck())
        return await self._local.hit(principal)

    async def spent(self, principal: str) -> bool:
        if not self._falling_back:
            try:
                return await self._shared.spent(principal)
            except Exception as exc:
                self._fall_back(exc)
        return await self._local.spent(principal)

    def _fall_back(self, exc: Exception) -> None:
        if self._falling_back:  # concurrent requests all found it down: say so once
            return
        self._falling_back = True
        self._next_check = time.monotonic() + self._recheck_seconds
        FALLBACK.set(1)
        FALLBACKS.inc()
        log.error(
            "Redis unavailable: rate limits are counted in this process until it answers",
            error=type(exc).__name__,
            recheck_seconds=self._recheck_seconds,
        )

    async def _recheck(self) -> None:
        try:
            async with asyncio.timeout(self._timeout_seconds * 2):
                ok = await self._shared.check_storage()
        except Exception:
            ok = False
        finally:
            self._check = None
        if ok:
            self._falling_back = False
            FALLBACK.set(0)
            log.warning("Redis answers again: rate limits are shared through it")
        else:
            self._next_check = time.monotonic() + self._recheck_seconds

    async def check_storage(self) -> bool:
        return await self._shared.check_storage()

    @property
    def where(self) -> str:
        return "local" if self._falling_back else "redis"

    async def aclose(self) -> None:
        if self._check is not None:
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check


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

    async def spent(self, principal: str) -> bool:
        return self.spent_at(principal, time.time())

    def spent_at(self, principal: str, now: float) -> bool:
        window = self._windows.get(principal)
        if window is None:
            return False
        index = int(now // self._length)
        if window.index == index:
            previous, current = window.previous, window.current
        else:
            previous, current = (window.current if window.index == index - 1 else 0), 0
        left = 1.0 - (now - index * self._length) / self._length
        return math.floor(previous * left + current) >= self._limit.amount

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
