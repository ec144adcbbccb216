"""The numbers behind the console's charts, per time bucket."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.errors import BadRequest
from exoplane.integrations.calls.service import OUTCOMES
from exoplane.logs import get_logger
from exoplane.models.base import utcnow
from exoplane.stats import repository

log = get_logger("exoplane.stats")

BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
MAX_BUCKETS = 500
DEFAULT_SPAN = timedelta(hours=24)
DELIVERY_STATUSES = ("succeeded", "failed", "pending")
CALL_OUTCOMES = ("answered", "missed", "busy", "failed", "canceled", "ongoing")


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime
    until: datetime
    bucket: str

    @property
    def width(self) -> int:
        return BUCKETS[self.bucket]

    @property
    def count(self) -> int:
        return math.ceil((self.until - self.since).total_seconds() / self.width)


def window(
    since: datetime | None, until: datetime | None, bucket: str, now: datetime | None = None
) -> Window:
    """The range asked for, in whole seconds of UTC. By default the ``DEFAULT_SPAN`` up to
    the end of the current bucket (the last 24 hours by hour)."""
    if bucket not in BUCKETS:
        raise BadRequest(
            f"Query parameter 'bucket' must be one of {', '.join(BUCKETS)}", field="bucket"
        )
    width = BUCKETS[bucket]
    if until is None:
        moment = (now or utcnow()).timestamp()
        until = datetime.fromtimestamp((moment // width + 1) * width, UTC)
    else:
        until = _whole_seconds(until, "until")
    since = until - DEFAULT_SPAN if since is None else _whole_seconds(since, "since")
    if since >= until:
        raise BadRequest("Query parameter 'since' must be before 'until'", field="since")
    chosen = Window(since, until, bucket)
    if chosen.count > MAX_BUCKETS:
        raise BadRequest(
            f"From 'since' to 'until' is {chosen.count} buckets of a {bucket}; at most "
            f"{MAX_BUCKETS} are given: choose a shorter range or a longer bucket",
            field="bucket",
        )
    return chosen


def _whole_seconds(value: datetime, name: str) -> datetime:
    try:
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise BadRequest(
            f"Query parameter '{name}' is out of range once in UTC", field=name
        ) from exc
    if moment.year < 1970:
        raise BadRequest(f"Query parameter '{name}' must be in 1970 or later", field=name)
    return moment.replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: int | None
    p99: int | None


def percentiles(histogram: Iterable[tuple[int, int]]) -> Percentiles:
    """The 50th and 99th percentiles by nearest rank (the smallest value with at least
    p% of the values at or below it), from (value, how many) pairs; None without values."""
    pairs = sorted(histogram)
    total = sum(n for _, n in pairs)
    if total == 0:
        return Percentiles(None, None)

    def rank(p: int) -> int:
        wanted, seen = math.ceil(p * total / 100), 0
        for value, n in pairs:
            seen += n
            if seen >= wanted:
                return value
        return pairs[-1][0]

    return Percentiles(rank(50), rank(99))


@dataclass(slots=True)
class Bucket:
    start: datetime
    deliveries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DELIVERY_STATUSES, 0))
    latency: list[tuple[int, int]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CALL_OUTCOMES, 0))
    streams: int = 0
    first_audio: list[tuple[int, int]] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return sum(n for _, n in self.latency)

    @property
    def latency_ms(self) -> Percentiles:
        return percentiles(self.latency)

    @property
    def first_bot_audio_ms(self) -> Percentiles:
        return percentiles(self.first_audio)


async def stats(session: AsyncSession, chosen: Window) -> list[Bucket]:
    """Per bucket: webhook deliveries queued, by status, and their attempts' latency;
    the apps' calls started, by outcome; voice-bot streams started, and their time to
    first bot audio."""
    since, until, width = chosen.since, chosen.until, chosen.width
    buckets = [Bucket(since + timedelta(seconds=n * width)) for n in range(chosen.count)]

    def at(n: int) -> Bucket | None:
        return buckets[n] if 0 <= n < len(buckets) else None

    for n, status, count in await repository.deliveries_by_status(session, since, until, width):
        if (bucket := at(n)) is not None:
            bucket.deliveries[status] = bucket.deliveries.get(status, 0) + count
    for n, latency, count in await repository.attempt_latencies(session, since, until, width):
        if (bucket := at(n)) is not None:
            bucket.latency.append((latency, count))
    for n, status, count in await repository.calls_by_status(session, since, until, width):
        if (bucket := at(n)) is not None:
            outcome = OUTCOMES.get(status, "ongoing")
            bucket.calls[outcome] += count
    for n, _, count in await repository.platform_steps(
        session, "stream_start", since, until, width
    ):
        if (bucket := at(n)) is not None:
            bucket.streams += count
    for n, after, count in await repository.first_bot_audio(session, since, until, width):
        if (bucket := at(n)) is not None and after is not None:
            bucket.first_audio.append((after, count))
    return buckets


# Pages that chart the last day on every view: the closed hours are read again this often,
# beside the requests, and the current hour at most this often on a view.
RECENT_REFRESH_SECONDS = 300.0
CURRENT_REFRESH_SECONDS = 10.0


class RecentStats:
    """The last 24 hours by hour, for pages that show them on every view.

    Closed hours are kept by their start. A view reads only the closed hours not kept yet
    (once an hour has closed, that one; the whole day only on a process's first view) and
    the current hour at most every ``current_seconds``. Once ``keep_fresh`` has started it,
    a task beside the requests reads every closed hour again each ``refresh_seconds``, so a
    delivery of a closed hour that settles later shows within that, and no view waits for a
    read of the whole day.
    """

    def __init__(
        self,
        refresh_seconds: float = RECENT_REFRESH_SECONDS,
        current_seconds: float = CURRENT_REFRESH_SECONDS,
    ) -> None:
        self._refresh_seconds = refresh_seconds
        self._current_seconds = current_seconds
        self._hours: dict[datetime, Bucket] = {}
        self._current: tuple[Window, float, list[Bucket]] | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def last_day(self, session: AsyncSession) -> list[Bucket]:
        closed, current = _last_day()
        starts = [closed.since + timedelta(seconds=n * closed.width) for n in range(closed.count)]
        missing = [start for start in starts if start not in self._hours]
        if missing:
            await self._read(session, Window(missing[0], closed.until, closed.bucket))
        now = time.monotonic()
        latest = self._current
        if latest is None or latest[0] != current or now - latest[1] >= self._current_seconds:
            latest = self._current = (current, now, await stats(session, current))
        return [*(self._hours[start] for start in starts), *latest[2]]

    async def refresh(self, session: AsyncSession) -> None:
        """Read every closed hour of the last day again."""
        closed, _ = _last_day()
        await self._read(session, closed)

    async def _read(self, session: AsyncSession, span: Window) -> None:
        for bucket in await stats(session, span):
            self._hours[bucket.start] = bucket
        oldest = span.until - DEFAULT_SPAN
        for start in [start for start in self._hours if start < oldest]:
            del self._hours[start]

    def keep_fresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Start the task that reads the closed hours again every ``refresh_seconds``
        (once; ``aclose`` stops it)."""
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_every(sessions))

    async def _refresh_every(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                async with sessions() as session:
                    await self.refresh(session)
            except Exception:  # a database outage: the charts stay as they were until then
                log.exception("could not read the last day's stats again")

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None


def _last_day() -> tuple[Window, Window]:
    """The last day's closed hours, and the current one."""
    whole = window(None, None, "hour")
    current_start = whole.until - timedelta(seconds=whole.width)
    return (
        Window(whole.since, current_start, whole.bucket),
        Window(current_start, whole.until, whole.bucket),
    )
