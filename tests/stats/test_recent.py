"""The last day's stats as the console's charts read them: the closed hours from the
rollup (counted on the spot where it lacks them), the current hour counted now and then."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory
from exoplane.models import StatsHour
from exoplane.models.base import utcnow
from exoplane.stats.rollup import roll_up, roll_up_current
from exoplane.stats.service import Bucket, RecentStats, stats, window
from tests.factories import app_with_token, database_session
from tests.stats.factories import add_calls
from tests.stats.test_rollup import seed_hours
from tests.stats.test_stats import admin, client, settings
from tests.waiting import until

__all__ = ["admin", "client", "settings"]


def clear_of_the_hours_end(margin_seconds: int = 10) -> bool:
    """Whether the current hour has more than ``margin_seconds`` left: a test that reads "the
    current hour" twice must not see it close in between."""
    now = utcnow()
    return now.minute * 60 + now.second < 3600 - margin_seconds


def answered(buckets: list[Bucket]) -> tuple[int, int]:
    """Answered calls in the closed hours, and in the current hour."""
    *closed, current = buckets
    return sum(b.calls["answered"] for b in closed), current.calls["answered"]


async def a_round(settings: Settings, *, everything: bool) -> None:
    engine = create_engine(settings.database_url)
    try:
        await roll_up(create_session_factory(engine), 30, everything=everything)
    finally:
        await engine.dispose()


async def last_day_and_stats(settings: Settings, recent: RecentStats) -> tuple[list[Bucket], ...]:
    """What the charts read, and what the stats service counts over the same day."""
    async with database_session(settings) as session:
        return await recent.last_day(session), await stats(session, window(None, None, "hour"))


async def test_without_a_rollup_the_last_day_is_counted_as_the_stats_count_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await until(clear_of_the_hours_end, what="a time not at the end of an hour")
    await seed_hours(client, settings, utcnow())

    shown, counted = await last_day_and_stats(settings, RecentStats(current_seconds=0))

    assert len(shown) == 24
    assert shown == counted
    assert answered(shown) == (1, 1)


async def test_the_closed_hours_come_from_the_rollup_as_the_stats_count_them(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await until(clear_of_the_hours_end, what="a time not at the end of an hour")
    app_id = await seed_hours(client, settings, utcnow())
    await a_round(settings, everything=False)
    recent = RecentStats(current_seconds=0)

    shown, counted = await last_day_and_stats(settings, recent)
    assert shown == counted

    # A call of a closed hour written after the round shows once the hours are counted again.
    async with database_session(settings) as session:
        await add_calls(session, app_id, [(utcnow() - timedelta(hours=3), "completed")], "b")
    async with database_session(settings) as session:
        before_recount = await recent.last_day(session)
    await a_round(settings, everything=True)
    shown, counted = await last_day_and_stats(settings, recent)

    assert answered(before_recount) == (1, 1)  # the closed hours as the rollup held them
    assert answered(shown) == (2, 1)
    assert shown == counted


async def test_a_view_counts_the_current_hour_again_at_most_every_current_seconds(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await until(clear_of_the_hours_end, what="a time not at the end of an hour")
    now = utcnow()
    kept = RecentStats(current_seconds=0)
    held = RecentStats(current_seconds=3600)
    async with database_session(settings) as session:
        await add_calls(session, app.id, [(now, "completed")], "a")
    async with database_session(settings) as session:
        first = await kept.last_day(session)
        await held.last_day(session)
    async with database_session(settings) as session:
        await add_calls(session, app.id, [(now, "completed")], "b")
    async with database_session(settings) as session:
        second = await kept.last_day(session)
        unchanged = await held.last_day(session)

    assert len(first) == len(second) == 24
    assert answered(first) == (0, 1)
    assert answered(second) == (0, 2)
    assert answered(unchanged) == (0, 1)
    assert second[-1].start <= now < second[-1].start + timedelta(hours=1)


async def test_the_current_hour_comes_from_the_rollup_while_its_count_is_fresh(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await until(clear_of_the_hours_end, what="a time not at the end of an hour")
    async with database_session(settings) as session:
        await add_calls(session, app.id, [(utcnow(), "completed")], "a")
    engine = create_engine(settings.database_url)
    try:
        await roll_up_current(create_session_factory(engine))
    finally:
        await engine.dispose()
    async with database_session(settings) as session:
        await add_calls(session, app.id, [(utcnow(), "completed")], "b")
    recent = RecentStats(current_seconds=0)

    async with database_session(settings) as session:
        from_rollup = await recent.last_day(session)
    async with database_session(settings) as session:  # the worker stopped counting a while ago
        stale = utcnow() - timedelta(minutes=5)
        await session.execute(update(StatsHour).values(computed_at=stale))
    async with database_session(settings) as session:
        counted = await recent.last_day(session)

    assert answered(from_rollup) == (0, 1)  # as the worker last counted it
    assert answered(counted) == (0, 2)
