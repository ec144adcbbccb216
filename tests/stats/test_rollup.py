"""The hourly rollup: the worker stores each closed hour of the last day as the stats
service counts it, counts them all again now and then, and several workers may do so at
once."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import httpx
import orjson
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory, unit_of_work
from exoplane.logs import configure_logging
from exoplane.models import StatsHour, WebhookDelivery
from exoplane.models.base import Base, utcnow
from exoplane.security import Vault, load_secret_key
from exoplane.stats import repository
from exoplane.stats.rollup import RolledUp, roll_up, roll_up_current, rollup_until
from exoplane.stats.service import SERIES, Bucket, last_day_windows, rolled_up, stats
from exoplane.webhooks.worker import WebhookWorker
from tests.factories import app_with_token, database_session
from tests.stats.factories import Delivery, add_calls, add_deliveries, add_streams
from tests.stats.test_stats import admin, client, settings
from tests.waiting import WAIT_SECONDS, polled, until

__all__ = ["admin", "client", "settings"]

HOUR = timedelta(hours=1)
ROLLUP_TABLE = Base.metadata.tables["stats_hours"]
RETENTION_DAYS = 30


def start_of_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


async def seed_hours(
    client: httpx.AsyncClient, settings: Settings, now: datetime, prefix: str = "x"
) -> str:
    """Calls, deliveries and streams in several closed hours of the day before ``now``,
    in the current hour, and a day and more ago; the app's id."""
    app = await app_with_token(client, settings)
    hour = start_of_hour(now)
    async with database_session(settings) as session:
        await add_calls(
            session,
            app.id,
            [
                (hour - HOUR, "completed"),
                (hour - HOUR + timedelta(minutes=59), "busy"),
                (hour - 3 * HOUR + timedelta(minutes=1), "no-answer"),
                (hour - 3 * HOUR + timedelta(minutes=2), "in-progress"),
                (hour - 23 * HOUR, "failed"),
                (hour, "completed"),  # the current hour
                (hour - 30 * HOUR, "completed"),  # before the last day
            ],
            prefix,
        )
        await add_deliveries(
            session,
            app.id,
            [
                Delivery(hour - HOUR + timedelta(minutes=3), "succeeded", [12, 30]),
                Delivery(hour - 2 * HOUR + timedelta(minutes=4), "failed", [5, 5, 900]),
                Delivery(hour - 2 * HOUR + timedelta(minutes=5), "pending", []),
                Delivery(hour - HOUR - timedelta(seconds=1), "succeeded", [40, 41]),
                Delivery(hour, "pending", [7]),
            ],
            prefix,
        )
        await add_streams(
            session,
            [
                (hour - 5 * HOUR, 250),
                (hour - 5 * HOUR + timedelta(minutes=1), None),
                (hour - 4 * HOUR, 180),
            ],
            prefix,
        )
    return app.id


async def stored(settings: Settings) -> list[tuple[datetime, str, dict[str, int]]]:
    async with database_session(settings) as session:
        rows = await session.execute(
            select(StatsHour.hour, StatsHour.series, StatsHour.counts).order_by(
                StatsHour.hour, StatsHour.series
            )
        )
        return [(hour, series, orjson.loads(counts)) for hour, series, counts in rows]


async def rolled_up_and_counted(
    settings: Settings, now: datetime
) -> tuple[dict[datetime, Bucket], list[Bucket]]:
    """The closed hours of the day before ``now`` as the rollup holds them, and as the
    stats service counts them."""
    closed, _ = last_day_windows(now)
    async with database_session(settings) as session:
        return await rolled_up(session, closed, now), await stats(session, closed)


async def a_round(
    settings: Settings, *, everything: bool, now: datetime, retention_days: int = RETENTION_DAYS
) -> RolledUp:
    engine = create_engine(settings.database_url)
    try:
        return await roll_up(
            create_session_factory(engine), retention_days, everything=everything, now=now
        )
    finally:
        await engine.dispose()


async def test_a_round_stores_each_closed_hour_of_the_last_day_as_the_stats_count_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    now = utcnow()
    await seed_hours(client, settings, now)
    hour = start_of_hour(now)

    done = await a_round(settings, everything=False, now=now)

    assert done == RolledUp(hours=23, pruned=0)
    rows = await stored(settings)
    assert len(rows) == 23 * len(SERIES)
    assert {row[0] for row in rows} == {hour - n * HOUR for n in range(1, 24)}
    by_key = {(at, series): counts for at, series, counts in rows}
    assert by_key[(hour - HOUR, "calls")] == {"busy": 1, "completed": 1}
    assert by_key[(hour - HOUR, "deliveries")] == {"succeeded": 1}
    assert by_key[(hour - 2 * HOUR, "deliveries")] == {"failed": 1, "pending": 1, "succeeded": 1}
    assert by_key[(hour - 2 * HOUR, "latency")] == {"5": 2, "40": 1, "900": 1}
    assert by_key[(hour - 5 * HOUR, "streams")] == {"stream_start": 2}
    assert by_key[(hour - 5 * HOUR, "first_audio")] == {"250": 1}
    assert by_key[(hour - 6 * HOUR, "calls")] == {}  # counted, and empty
    kept, counted = await rolled_up_and_counted(settings, now)
    assert [kept[bucket.start] for bucket in counted] == counted
    assert sum(bucket.calls["answered"] for bucket in counted) == 1  # not vacuous


async def test_a_round_counts_only_the_hours_missing_and_a_recount_sees_later_changes(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    now = utcnow()
    app_id = await seed_hours(client, settings, now)
    hour = start_of_hour(now)
    await a_round(settings, everything=True, now=now)
    async with database_session(settings) as session:
        # The pending delivery two hours ago settles after its hour closed.
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.created_at < hour)
            .values(status="succeeded")
        )
        await add_calls(session, app_id, [(hour - 2 * HOUR, "completed")], "later")

    missing_only = await a_round(settings, everything=False, now=now)
    unchanged = {(at, series): counts for at, series, counts in await stored(settings)}
    recounted = await a_round(settings, everything=True, now=now)
    after = {(at, series): counts for at, series, counts in await stored(settings)}

    assert missing_only.hours == 0
    assert unchanged[(hour - 2 * HOUR, "deliveries")] == {
        "failed": 1,
        "pending": 1,
        "succeeded": 1,
    }
    assert recounted.hours == 23
    assert after[(hour - 2 * HOUR, "deliveries")] == {"failed": 1, "succeeded": 2}
    assert after[(hour - 2 * HOUR, "calls")] == {"completed": 1}
    kept, counted = await rolled_up_and_counted(settings, now)
    assert [kept[bucket.start] for bucket in counted] == counted


async def test_an_hour_that_closes_is_stored_by_the_next_round(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    now = utcnow()
    await seed_hours(client, settings, now)
    await a_round(settings, everything=True, now=now)
    later = now + HOUR

    done = await a_round(settings, everything=False, now=later)

    assert done.hours == 1  # the hour that was current, alone
    hours = {at for at, _, _ in await stored(settings)}
    assert start_of_hour(now) in hours
    kept, counted = await rolled_up_and_counted(settings, later)
    assert [kept[bucket.start] for bucket in counted] == counted
    assert counted[-1].calls["answered"] == 1


async def test_the_hour_under_way_is_stored_and_counted_again_by_the_round_after_it_closed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    now = utcnow()
    app_id = await seed_hours(client, settings, now)
    hour = start_of_hour(now)
    await a_round(settings, everything=True, now=now)
    engine = create_engine(settings.database_url)
    try:
        await roll_up_current(create_session_factory(engine), now=now)
    finally:
        await engine.dispose()
    under_way = {(at, series): counts for at, series, counts in await stored(settings)}
    async with database_session(settings) as session:  # later in the same hour
        await add_calls(session, app_id, [(hour + timedelta(minutes=59), "completed")], "late")

    done = await a_round(settings, everything=False, now=now + HOUR)
    after = {(at, series): counts for at, series, counts in await stored(settings)}

    assert {at for at, _ in under_way} == {hour - n * HOUR for n in range(24)}
    assert under_way[(hour, "calls")] == {"completed": 1}
    assert under_way[(hour, "deliveries")] == {"pending": 1}
    # Once closed, the hour counted while under way is not taken as it stood: it is counted
    # again, alone (the other hours were counted after they closed).
    assert done.hours == 1
    assert after[(hour, "calls")] == {"completed": 2}
    kept, counted = await rolled_up_and_counted(settings, now + HOUR)
    assert [kept[bucket.start] for bucket in counted] == counted


async def test_two_rounds_at_once_both_succeed_and_leave_one_row_per_hour_and_series(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    now = utcnow()
    await seed_hours(client, settings, now)

    for everything in (False, True):
        first, second = await asyncio.gather(
            a_round(settings, everything=everything, now=now),
            a_round(settings, everything=everything, now=now),
        )
        assert first.hours + second.hours >= 23

    rows = await stored(settings)
    assert len(rows) == len({(at, series) for at, series, _ in rows}) == 23 * len(SERIES)
    kept, counted = await rolled_up_and_counted(settings, now)
    assert [kept[bucket.start] for bucket in counted] == counted


async def test_a_later_count_is_not_replaced_by_an_earlier_one(settings: Settings) -> None:
    hour = start_of_hour(utcnow()) - HOUR
    earlier = utcnow()
    later = earlier + timedelta(seconds=1)

    def row(counts: str, computed_at: datetime) -> dict[str, object]:
        return {"hour": hour, "series": "calls", "counts": counts, "computed_at": computed_at}

    async with database_session(settings) as session:
        await repository.put_stats_hours(session, [row('{"completed":2}', later)])
    async with database_session(settings) as session:
        await repository.put_stats_hours(session, [row('{"completed":1}', earlier)])
    assert [counts for *_, counts in await stored(settings)] == [{"completed": 2}]


async def test_rows_of_hours_past_the_retention_are_pruned(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    now = utcnow()
    hour = start_of_hour(now)
    async with database_session(settings) as session:
        await repository.put_stats_hours(
            session,
            [
                {"hour": hour - age, "series": "calls", "counts": "{}", "computed_at": now}
                for age in (timedelta(days=3, hours=1), timedelta(days=2))
            ],
        )

    done = await a_round(settings, everything=False, now=now, retention_days=3)

    assert done.pruned == 1
    hours = {at for at, _, _ in await stored(settings)}
    assert hour - timedelta(days=2) in hours
    assert hour - timedelta(days=3, hours=1) not in hours


async def test_the_webhook_worker_rolls_up_from_its_start_and_stops_the_loop_with_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await seed_hours(client, settings, utcnow())
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    worker = WebhookWorker(settings, sessions, Vault(load_secret_key(settings)))
    running = asyncio.create_task(worker.run())
    try:
        await polled(
            rows_in(sessions), lambda n: n >= 23 * len(SERIES), what="the worker's first round"
        )
    finally:
        worker.stop()
        await asyncio.wait_for(running, WAIT_SECONDS)
        await engine.dispose()
    assert running.done()
    assert running.exception() is None


async def count_rows(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(StatsHour)) or 0)


def rows_in(sessions: async_sessionmaker[AsyncSession]) -> Callable[[], Awaitable[int]]:
    """How many rows the rollup holds, read anew on each call."""

    async def rows() -> int:
        async with unit_of_work(sessions) as session:
            return await count_rows(session)

    return rows


async def test_a_failed_round_is_logged_and_tried_again_by_the_next(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    logged = io.StringIO()
    configure_logging(settings, stream=logged)

    def failures_logged() -> bool:
        return '"event": "rolling up the stats failed"' in logged.getvalue()

    await seed_hours(client, settings, utcnow())
    engine = create_engine(settings.database_url)
    sessions = create_session_factory(engine)
    async with engine.begin() as connection:  # every round fails while the table is gone
        await connection.run_sync(ROLLUP_TABLE.drop)
    stopping = asyncio.Event()
    loop = asyncio.create_task(rollup_until(stopping, sessions, 30, every_seconds=0.05))
    try:
        await until(failures_logged, what="a failed round")
        assert not loop.done()
        async with engine.begin() as connection:
            await connection.run_sync(ROLLUP_TABLE.create)
        await polled(
            rows_in(sessions), lambda n: n >= 23 * len(SERIES), what="a later round storing"
        )
    finally:
        stopping.set()
        await asyncio.wait_for(loop, WAIT_SECONDS)
        await engine.dispose()
