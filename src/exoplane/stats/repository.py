"""All SQL of the statistics: one grouped, index-bounded query per series.

Each query counts rows per (bucket, value) over a time range read through an index on
(time, value), so it reads only the index. Percentiles come from those counts (how many
attempts took each whole millisecond), which are exact and far fewer rows than the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    cast,
    delete,
    extract,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.models import Call, CallEvent, StatsHour, WebhookAttempt, WebhookDelivery

# (bucket, value, count) rows.
Counts = list[tuple[int, Any, int]]


def _bucket(session: AsyncSession, column: Any, since: datetime, width: int) -> Any:
    """Which bucket of ``width`` seconds from ``since`` (whole seconds) a time falls in."""
    start = int(since.timestamp())
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor((extract("epoch", column) - start) / width), Integer)
    # SQLite stores UTC text; strftime('%s') reads it as whole seconds since the epoch.
    return (cast(func.strftime("%s", column), Integer) - start) // width


async def _counts(
    session: AsyncSession,
    time: Any,
    value: Any,
    since: datetime,
    until: datetime,
    width: int,
    *where: Any,
) -> Counts:
    if (until - since).total_seconds() <= width:
        # One bucket (the current hour): every row is in it, with no arithmetic per row.
        query = (
            select(literal_column("0"), value, func.count())
            .where(time >= since, time < until, *where)
            .group_by(value)
        )
    else:
        bucket = _bucket(session, time, since, width)
        query = (
            select(bucket, value, func.count())
            .where(time >= since, time < until, *where)
            .group_by(bucket, value)
        )
    return [(int(b), v, int(n)) for b, v, n in await session.execute(query)]


async def deliveries_by_status(
    session: AsyncSession, since: datetime, until: datetime, width: int
) -> Counts:
    """Webhook deliveries queued in each bucket, by their status now."""
    delivery = WebhookDelivery
    return await _counts(session, delivery.created_at, delivery.status, since, until, width)


async def attempt_latencies(
    session: AsyncSession, since: datetime, until: datetime, width: int
) -> Counts:
    """Webhook attempts made in each bucket, by how many milliseconds each took."""
    attempt = WebhookAttempt
    return await _counts(session, attempt.created_at, attempt.latency_ms, since, until, width)


async def calls_by_status(
    session: AsyncSession, since: datetime, until: datetime, width: int
) -> Counts:
    """The apps' calls started in each bucket, by their status now."""
    return await _counts(session, Call.created_at, Call.status, since, until, width)


async def platform_steps(
    session: AsyncSession, kind: str, since: datetime, until: datetime, width: int
) -> Counts:
    """Steps of one kind of the voice-bot platform's calls in each bucket."""
    return await _counts(
        session,
        CallEvent.at,
        CallEvent.kind,
        since,
        until,
        width,
        CallEvent.kind == kind,
        CallEvent.app_id.is_(None),
    )


async def first_bot_audio(
    session: AsyncSession, since: datetime, until: datetime, width: int
) -> Counts:
    """Streams whose bot's first audio went out in each bucket, by the milliseconds it took
    from the stream's start."""
    postgres = session.get_bind().dialect.name == "postgresql"
    detail = cast(CallEvent.detail, JSON) if postgres else type_coerce(CallEvent.detail, JSON)
    return await _counts(
        session,
        CallEvent.at,
        detail["after_start_ms"].as_integer(),
        since,
        until,
        width,
        CallEvent.kind == "first_outbound_media",
        CallEvent.app_id.is_(None),
    )


# --- the hourly rollup ----------------------------------------------------------------------


async def stats_hours(
    session: AsyncSession, since: datetime, until: datetime
) -> list[tuple[datetime, str, str, datetime]]:
    """The rollup's (hour, series, counts, computed at) rows of the hours from ``since`` to
    ``until``."""
    rows = await session.execute(
        select(StatsHour.hour, StatsHour.series, StatsHour.counts, StatsHour.computed_at).where(
            StatsHour.hour >= since, StatsHour.hour < until
        )
    )
    return [(hour, series, counts, computed_at) for hour, series, counts, computed_at in rows]


async def stats_hours_kept(
    session: AsyncSession, since: datetime, until: datetime
) -> list[tuple[datetime, str, datetime]]:
    """The (hour, series, computed at) of the rollup's rows from ``since`` to ``until``."""
    rows = await session.execute(
        select(StatsHour.hour, StatsHour.series, StatsHour.computed_at).where(
            StatsHour.hour >= since, StatsHour.hour < until
        )
    )
    return [(hour, series, computed_at) for hour, series, computed_at in rows]


async def put_stats_hours(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert each (hour, series) row, or replace the one there unless that one was computed
    later: one statement, so rounds of several workers at once never fail on the key."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(StatsHour)
    statement = statement.on_conflict_do_update(
        index_elements=[StatsHour.hour, StatsHour.series],
        set_={"counts": statement.excluded.counts, "computed_at": statement.excluded.computed_at},
        where=StatsHour.computed_at <= statement.excluded.computed_at,
    )
    await session.execute(statement, list(rows))


async def delete_stats_hours(session: AsyncSession, before: datetime) -> int:
    """Delete the rollup's rows of hours before ``before``; how many went."""
    result = await session.execute(
        delete(StatsHour)
        .where(StatsHour.hour < before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
