"""The last day's stats as the console's charts read them: the closed hours kept for a
while, the current hour read on every call."""

from __future__ import annotations

from datetime import timedelta

import httpx

from exoplane.config import Settings
from exoplane.models.base import utcnow
from exoplane.stats.service import Bucket, RecentStats
from tests.factories import app_with_token, database_session
from tests.stats.factories import add_calls
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


async def test_closed_hours_and_the_current_one_are_read_again_only_after_their_refresh(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await until(clear_of_the_hours_end, what="a time not at the end of an hour")
    now = utcnow()
    earlier = now - timedelta(hours=3)
    cached = RecentStats(refresh_seconds=3600, current_seconds=0)
    fresh = RecentStats(refresh_seconds=0, current_seconds=0)
    held = RecentStats(refresh_seconds=3600, current_seconds=3600)
    async with database_session(settings) as session:
        await add_calls(session, app.id, [(earlier, "completed"), (now, "completed")], "a")
    async with database_session(settings) as session:
        first = await cached.last_day(session)
        await held.last_day(session)
    async with database_session(settings) as session:
        await add_calls(session, app.id, [(earlier, "completed"), (now, "completed")], "b")
    async with database_session(settings) as session:
        second = await cached.last_day(session)
        refreshed = await fresh.last_day(session)
        unchanged = await held.last_day(session)

    assert len(first) == len(second) == 24
    assert answered(first) == (1, 1)
    assert answered(second) == (1, 2)  # the closed hours as they were read
    assert answered(refreshed) == (2, 2)
    assert answered(unchanged) == (1, 1)
    assert second[-1].start <= now < second[-1].start + timedelta(hours=1)
