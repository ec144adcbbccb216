"""The numbers behind the console's charts, per time bucket."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.errors import BadRequest
from exoplane.integrations.calls.service import OUTCOMES
from exoplane.models.base import utcnow
from exoplane.stats import repository

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


# The series each bucket counts, as the repository reads them: (bucket, value, how many).
SERIES = ("deliveries", "latency", "calls", "streams", "first_audio")
# Series whose values are whole milliseconds (the others' are statuses or a step's kind).
NUMERIC_SERIES = frozenset({"latency", "first_audio"})


async def series_counts(
    session: AsyncSession, since: datetime, until: datetime, width: int
) -> dict[str, repository.Counts]:
    """Each series' counts per (bucket, value) from ``since`` to ``until``."""
    return {
        "deliveries": await repository.deliveries_by_status(session, since, until, width),
        "latency": await repository.attempt_latencies(session, since, until, width),
        "calls": await repository.calls_by_status(session, since, until, width),
        "streams": await repository.platform_steps(session, "stream_start", since, until, width),
        "first_audio": await repository.first_bot_audio(session, since, until, width),
    }


def _add(bucket: Bucket, series: str, value: Any, count: int) -> None:
    if series == "deliveries":
        bucket.deliveries[value] = bucket.deliveries.get(value, 0) + count
    elif series == "latency":
        bucket.latency.append((value, count))
    elif series == "calls":
        bucket.calls[OUTCOMES.get(value, "ongoing")] += count
    elif series == "streams":
        bucket.streams += count
    elif series == "first_audio" and value is not None:
        bucket.first_audio.append((value, count))


def _settle(buckets: Iterable[Bucket]) -> None:
    for bucket in buckets:
        bucket.latency.sort()
        bucket.first_audio.sort()


async def stats(session: AsyncSession, chosen: Window) -> list[Bucket]:
    """Per bucket: webhook deliveries queued, by status, and their attempts' latency;
    the apps' calls started, by outcome; voice-bot streams started, and their time to
    first bot audio."""
    since, until, width = chosen.since, chosen.until, chosen.width
    buckets = [Bucket(since + timedelta(seconds=n * width)) for n in range(chosen.count)]
    for series, counts in (await series_counts(session, since, until, width)).items():
        for n, value, count in counts:
            if 0 <= n < len(buckets):
                _add(buckets[n], series, value, count)
    _settle(buckets)
    return buckets


# --- the hourly rollup ----------------------------------------------------------------------


def encode_counts(counts: Iterable[tuple[Any, int]]) -> str:
    """One hour's counts of a series as kept in ``stats_hours``: a JSON object of value ->
    how many (values without one, such as a stream whose bot never spoke, are left out)."""
    kept: dict[str, int] = {}
    for value, count in counts:
        if value is not None:
            kept[str(value)] = kept.get(str(value), 0) + count
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode()


def decode_counts(series: str, text: str) -> list[tuple[Any, int]]:
    counts: dict[str, int] = orjson.loads(text)
    if series in NUMERIC_SERIES:
        return list(zip(map(int, counts), counts.values(), strict=True))
    return list(counts.items())


# The rollup's count of the hour under way is used while it is at most this old.
CURRENT_FRESH_SECONDS = 30.0


async def rolled_up(
    session: AsyncSession, span: Window, now: datetime | None = None
) -> dict[datetime, Bucket]:
    """The hours of ``span`` that the rollup holds every series of, by their start: a closed
    hour once counted after it closed (not as it stood while under way), the hour under way
    if counted within ``CURRENT_FRESH_SECONDS`` of ``now``."""
    now = now or utcnow()
    found: dict[datetime, Bucket] = {}
    seen: dict[datetime, int] = {}
    oldest: dict[datetime, datetime] = {}
    rows = await repository.stats_hours(session, span.since, span.until)
    for hour, series, text, computed_at in rows:
        if series not in SERIES:
            continue
        bucket = found.setdefault(hour, Bucket(hour))
        seen[hour] = seen.get(hour, 0) + 1
        oldest[hour] = min(oldest.get(hour, computed_at), computed_at)
        counts = decode_counts(series, text)
        if series == "latency":
            bucket.latency.extend(counts)
        elif series == "first_audio":
            bucket.first_audio.extend(counts)
        else:
            for value, count in counts:
                _add(bucket, series, value, count)
    fresh = now - timedelta(seconds=CURRENT_FRESH_SECONDS)

    def usable(hour: datetime) -> bool:
        end = hour + timedelta(seconds=span.width)
        counted = oldest[hour]
        return seen[hour] == len(SERIES) and (counted >= end or (end > now and counted >= fresh))

    whole = {hour: bucket for hour, bucket in found.items() if usable(hour)}
    _settle(whole.values())
    return whole


# The current hour is counted at most this often on a view, when the rollup lacks it.
CURRENT_REFRESH_SECONDS = 10.0


class RecentStats:
    """The last 24 hours by hour, for pages that show them on every view.

    Every hour comes from the hourly rollup the worker keeps (``stats.rollup``), in one small
    query: the closed ones as counted after they closed, the current one as counted in the
    last ``CURRENT_FRESH_SECONDS``. An hour the rollup does not hold so (before the worker's
    first round, just after an hour closed, or with no worker running) is counted here, the
    current hour at most every ``current_seconds``.
    """

    def __init__(self, current_seconds: float = CURRENT_REFRESH_SECONDS) -> None:
        self._current_seconds = current_seconds
        self._current: tuple[Window, float, list[Bucket]] | None = None

    async def last_day(self, session: AsyncSession) -> list[Bucket]:
        now = utcnow()
        closed, current = last_day_windows(now)
        starts = [closed.since + timedelta(seconds=n * closed.width) for n in range(closed.count)]
        hours = await rolled_up(session, Window(closed.since, current.until, closed.bucket), now)
        missing = [start for start in starts if start not in hours]
        if missing:
            for bucket in await stats(session, Window(missing[0], closed.until, closed.bucket)):
                hours.setdefault(bucket.start, bucket)
        if current.since in hours:
            return [hours[start] for start in [*starts, current.since]]
        moment = time.monotonic()
        latest = self._current
        if latest is None or latest[0] != current or moment - latest[1] >= self._current_seconds:
            latest = self._current = (current, moment, await stats(session, current))
        return [*(hours[start] for start in starts), *latest[2]]


def last_day_windows(now: datetime | None = None) -> tuple[Window, Window]:
    """The last day's closed hours, and the current one."""
    whole = window(None, None, "hour", now)
    current_start = whole.until - timedelta(seconds=whole.width)
    return (
        Window(whole.since, current_start, whole.bucket),
        Window(current_start, whole.until, whole.bucket),
    )
