"""The hourly rollup the charts of the last day read: each closed hour's counts per series,
kept in ``stats_hours`` by the worker, so no view waits for a read of the whole day.

Each round stores the closed hours of the last day that the table does not hold yet (or
holds only as counted while under way); every ``recompute_seconds`` a round counts all of
them again, since deliveries and calls are counted by their status now, which changes after
their hour has closed. The hour under way is counted more often, every ``current_seconds``,
so that no view counts anything. Rows are written by an upsert that keeps the latest
computed, so any number of workers may run rounds at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.db import unit_of_work
from exoplane.logs import get_logger
from exoplane.models.base import utcnow
from exoplane.stats import repository
from exoplane.stats.service import SERIES, Window, encode_counts, last_day_windows, series_counts

log = get_logger("exoplane.stats")

ROLLUP_EVERY_SECONDS = 60.0
RECOMPUTE_EVERY_SECONDS = 300.0
# Well within CURRENT_FRESH_SECONDS, the age at which a view stops using the current count.
CURRENT_EVERY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class RolledUp:
    hours: int  # hours stored this round
    pruned: int  # rows of hours past the retention deleted


async def roll_up(
    sessions: async_sessionmaker[AsyncSession],
    retention_days: int,
    *,
    everything: bool,
    now: datetime | None = None,
) -> RolledUp:
    """One round: count the last day's closed hours the rollup lacks (``everything``: all of
    them) and store them, then delete rows past ``retention_days``. The counting reads in
    its own transaction; the writes take one short one. ``now`` (by default the time of the
    count) is the clock the round runs by, and what its rows say they were computed at."""
    closed, _ = last_day_windows(now or utcnow())
    starts = [closed.since + timedelta(seconds=n * closed.width) for n in range(closed.count)]
    rows: list[dict[str, Any]] = []
    async with sessions() as session:
        first: datetime | None = closed.since
        if not everything:
            kept = await repository.stats_hours_kept(session, closed.since, closed.until)
            series_kept = Counter(
                hour
                for hour, series, computed_at in kept
                if series in SERIES and computed_at >= hour + timedelta(seconds=closed.width)
            )
            missing = [start for start in starts if series_kept[start] < len(SERIES)]
            first = missing[0] if missing else None
        if first is not None:
            span = Window(first, closed.until, closed.bucket)
            # Before the read: a row read later replaces this one.
            computed_at = now or utcnow()
            counts = await series_counts(session, span.since, span.until, span.width)
            rows = _rows(span, counts, computed_at)
    async with unit_of_work(sessions) as session:
        await repository.put_stats_hours(session, rows)
        oldest = (now or utcnow()) - timedelta(days=retention_days)
        pruned = await repository.delete_stats_hours(session, oldest)
    return RolledUp(hours=len(rows) // len(SERIES), pruned=pruned)


async def roll_up_current(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime | None = None
) -> None:
    """Count the hour under way so far and store it (replaced by later counts, and once the
    hour has closed, by a round's). ``now`` as in ``roll_up``."""
    _, current = last_day_windows(now or utcnow())
    async with sessions() as session:
        computed_at = now or utcnow()
        counts = await series_counts(session, current.since, current.until, current.width)
    async with unit_of_work(sessions) as session:
        await repository.put_stats_hours(session, _rows(current, counts, computed_at))


def _rows(
    span: Window, counts: dict[str, repository.Counts], computed_at: datetime
) -> list[dict[str, Any]]:
    """A row per hour of ``span`` and series, an hour without any counts included (so the
    table tells an hour counted as empty from one not counted yet)."""
    per_hour: dict[tuple[int, str], list[tuple[Any, int]]] = {}
    for series, found in counts.items():
        for n, value, count in found:
            per_hour.setdefault((n, series), []).append((value, count))
    return [
        {
            "hour": span.since + timedelta(seconds=n * span.width),
            "series": series,
            "counts": encode_counts(per_hour.get((n, series), [])),
            "computed_at": computed_at,
        }
        for n in range(span.count)
        for series in SERIES
    ]


async def rollup_until(
    stopping: asyncio.Event,
    sessions: async_sessionmaker[AsyncSession],
    retention_days: int,
    *,
    every_seconds: float = ROLLUP_EVERY_SECONDS,
    recompute_seconds: float = RECOMPUTE_EVERY_SECONDS,
    current_seconds: float = CURRENT_EVERY_SECONDS,
) -> None:
    """Until ``stopping`` is set: count the hour under way every ``current_seconds``, and roll
    up the closed hours now and then every ``every_seconds``, counting every one of them again
    on the first round and each ``recompute_seconds`` after. A failed round is logged and
    tried again next time."""
    rolled: float | None = None
    recomputed: float | None = None
    while not stopping.is_set():
        started = time.monotonic()
        try:
            await roll_up_current(sessions)
            if rolled is None or started - rolled >= every_seconds:
                everything = recomputed is None or started - recomputed >= recompute_seconds
                done = await roll_up(sessions, retention_days, everything=everything)
                rolled = started
                if everything:
                    recomputed = started
                if done.pruned:
                    log.info("pruned old stats hours", rows=done.pruned)
        except Exception:
            log.exception("rolling up the stats failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), min(current_seconds, every_seconds))
