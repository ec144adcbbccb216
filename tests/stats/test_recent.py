"""The last day's stats as the console's charts read them: the closed hours kept for a
while, the current hour read on every call."""

from __future__ import annotations

from datetime import timedelta

import httpx

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory
from exoplane.models.base import utcnow
from exoplane.stats.service import Bucket, RecentStats
from tests.factories import app_with_token, database_session
from tests.stats.factories import add_calls
from tests.stats.test_stats import admin, client, settings
from tests.waiting import polled, until

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


async def test_a_view_reads_the_current_hour_again_and_the_closed_ones_only_when_refreshed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await until(clear_of_the_hours_end, what="a time not at the end of an hour")
    now = utcnow()
    earlier = now - timedelta(hours=3)
    kept = RecentStats(current_seconds=0)
    held = RecentStats(current_seconds=3600)
    async with database_session(settings) as session:
        await add_calls(session, app.id, [(earlier, "completed"), (now, "completed")], "a")
    async with database_session(settings) as session:
        first = await kept.last_day(session)
        await held.last_day(session)
    async with database_session(settings) as session:
        await add_calls(session, app.id, [(earlier, "completed"), (now, "completed")], "b")
    async with database_session(settings) as session:
        second = await kept.last_day(session)
        unchanged = await held.last_day(session)
        await kept.refresh(session)
        refreshed = await kept.last_day(session)

    assert len(first) == len(second) == 24
    assert answered(first) == (1, 1)
    assert answered(second) == (1, 2)  # the closed hours as they were read
    assert answered(unchanged) == (1, 1)
    assert answered(refreshed) == (2, 2)
    assert second[-1].start <= now < second[-1].start + timedelta(hours=1)


async def test_once_kept_fresh_the_closed_hours_are_read_again_beside_the_views(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await until(clear_of_the_hours_end, what="a time not at the end of an hour")
    earlier = utcnow() - timedelta(hours=3)
    recent = RecentStats(refresh_seconds=0.05, current_seconds=3600)
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    try:
        async with sessions() as session:
            await add_calls(session, app.id, [(earlier, "completed")], "a")
            await session.commit()
            assert answered(await recent.last_day(session)) == (1, 0)
            recent.keep_fresh(sessions)
            recent.keep_fresh(sessions)  # a second start changes nothing
            await add_calls(session, app.id, [(earlier, "completed")], "b")
            await session.commit()

        async def closed_hours() -> int:
            async with sessions() as session:
                return answered(await recent.last_day(session))[0]

        await polled(closed_hours, lambda seen: seen == 2, what="the closed hours read again")
    finally:
        await recent.aclose()
        await engine.dispose()
