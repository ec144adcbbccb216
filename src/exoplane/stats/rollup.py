"""The hourly rollup the charts of the last day read: each closed hour's counts per series,
kept in ``stats_hours`` by the worker, so no view waits for a read of the whole day.

Each round stores the closed hours of the last day that the table does not hold yet; every
``recompute_seconds`` a round counts all of them again, since deliveries and calls are
counted by their status now, which changes after their hour has closed. Rows are written
by an upsert that keeps the latest computed, so any number of workers may run rounds at once.
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
    its own transaction; the writes take one short one."""
    now = now or utcnow()
    closed, _ = last_day_windows(now)
    starts = [closed.since + timedelta(seconds=n * closed.width) for n in range(closed.count)]
    rows: list[dict[str, Any]] = []
    async with sessions() as session:
        first: datetime | None = closed.since
        if not everything:
            kept = await repository.stats_hours_kept(session, closed.since, closed.until)
            series_kept = Counter(hour for hour, series in kept if series in SERIES)
            missing = [start for start in starts if series_kept[start] < len(SERIES)]
            first = missing[0] if missing else None
        if first is not None:
            span = Window(first, closed.until, closed.bucket)
            computed_at = utcnow()  # before the read: a row read later replaces this one
            counts = await series_counts(session, span.since, span.until, span.width)
            rows = _rows(span, counts, computed_at)
    async with unit_of_work(sessions) as session:
        await repository.put_stats_hours(session, rows)
        pruned = await repository.delete_stats_hours(session, now - timedelta(days=retention_days))
    return RolledUp(hours=len(rows) // len(SERIES), pruned=pruned)


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
) -> None:
    """Roll up now and then every ``every_seconds`` until ``stopping`` is set, counting
    every closed hour again on the first round and each ``recompute_seconds`` after. A
    failed round is logged and tried again next time."""
    recomputed: float | None = None
    while not stopping.is_set():
        started = time.monotonic()
        everything = recomputed is None or started - recomputed >= recompute_seconds
        try:
            done = await roll_up(sessions, retention_days, everything=everything)
        except Exception:
            log.exception("rolling up the stats failed")
        else:
            if everything:
                recomputed = started
            if done.pruned:
                log.info("pruned old stats hours", rows=done.pruned)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_seconds)
