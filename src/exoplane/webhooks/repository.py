"""All SQL of the webhook outbox, deliveries and attempts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import insert_missing
from exoplane.models import (
    App,
    AppSettings,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookReplay,
)
from exoplane.models.base import Base

# The outbox's hot statements act on the tables, not the mapped classes: the hook path
# writes plain rows and skips the ORM's per-statement work.
_EVENTS = Base.metadata.tables[WebhookEvent.__tablename__]
_ADD_DELIVERY = insert(Base.metadata.tables[WebhookDelivery.__tablename__])
_ADD_DELIVERY_RETURNING_IDS = _ADD_DELIVERY.returning(
    _ADD_DELIVERY.table.c.id, _ADD_DELIVERY.table.c.event_id
)


async def add_events_once(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert each event unless one with its id exists (in the table, or earlier in
    ``rows``); the ids this call inserted."""
    return await insert_missing(await session.connection(), _EVENTS, ("id",), rows)


async def add_deliveries(
    session: AsyncSession, rows: Sequence[dict[str, Any]], *, returning_ids: bool = False
) -> dict[str, int]:
    """Insert the deliveries (at most one per event); with ``returning_ids``, each one's new
    id by its event's id."""
    if not rows:
        return {}
    connection = await session.connection()
    if not returning_ids:
        await connection.execute(_ADD_DELIVERY, list(rows))
        return {}
    # Keyed by event rather than asking for the rows' order: SQLite does not promise the
    # order of RETURNING, and SQLAlchemy would then insert the rows one statement each.
    result = await connection.execute(_ADD_DELIVERY_RETURNING_IDS, list(rows))
    return {event_id: delivery_id for delivery_id, event_id in result}


@dataclass(frozen=True, slots=True)
class Claimed:
    """A leased delivery with its event, as the worker sends it."""

    id: int
    app_id: str
    url: str
    event_id: str
    event_type: str
    payload: str


async def claim_due(
    session: AsyncSession, now: datetime, lease_until: datetime, lease_token: str, limit: int
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries to one worker.

    ``FOR UPDATE SKIP LOCKED`` lets workers on PostgreSQL claim disjoint rows without
    waiting on each other; SQLite ignores it and serialises writers instead. A lease that
    runs out (its worker died) makes the delivery due again.
    """
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            (WebhookDelivery.leased_until.is_(None)) | (WebhookDelivery.leased_until < now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    leased = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due.scalar_subquery()))
        .values(leased_until=lease_until, lease_token=lease_token)
        .returning(
            WebhookDelivery.id,
            WebhookDelivery.app_id,
            WebhookDelivery.url,
            WebhookDelivery.event_id,
        )
        .execution_options(synchronize_session=False)
    )
    deliveries = (await session.execute(leased)).all()
    if not deliveries:
        return []
    events = await session.execute(
        select(WebhookEvent.id, WebhookEvent.type, WebhookEvent.payload).where(
            WebhookEvent.id.in_({d.event_id for d in deliveries})
        )
    )
    kinds = {event_id: (event_type, payload) for event_id, event_type, payload in events}
    return [
        Claimed(d.id, d.app_id, d.url, d.event_id, *kinds[d.event_id])
        for d in sorted(deliveries, key=lambda d: d.id)
    ]


async def signing_secrets(
    session: AsyncSession, app_ids: Iterable[str]
) -> Sequence[Row[str, str, str | None, datetime | None]]:
    """Each app's encrypted signing secret, with the previous one and when it expires."""
    query = select(
        AppSettings.app_id,
        AppSettings.webhook_secret_enc,
        AppSettings.previous_webhook_secret_enc,
        AppSettings.previous_webhook_secret_expires_at,
    ).where(AppSettings.app_id.in_(set(app_ids)))
    return (await session.execute(query)).all()


@dataclass(frozen=True, slots=True)
class Lease:
    """What deciding the outcome of an attempt needs of its delivery."""

    id: int
    lease_token: str | None
    attempts: int
    next_attempt_at: datetime


async def leases(session: AsyncSession, delivery_ids: Sequence[int]) -> list[Lease]:
    """The deliveries' lease holders and attempt counts, locked until the transaction ends
    so the outcome written next is decided on what is current."""
    query = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.lease_token,
            WebhookDelivery.attempts,
            WebhookDelivery.next_attempt_at,
        )
        .where(WebhookDelivery.id.in_(delivery_ids))
        .order_by(WebhookDelivery.id)  # one locking order for every worker
        .with_for_update()
    )
    return [Lease(*row) for row in await session.execute(query)]


_DELIVERIES = Base.metadata.tables[WebhookDelivery.__tablename__]
_OUTCOME_COLUMNS = (
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "leased_until",
    "lease_token",
    "updated_at",
)
_RECORD_OUTCOME = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("delivery_id"))
    .values({column: bindparam(f"new_{column}") for column in _OUTCOME_COLUMNS})
)
_ADD_ATTEMPT = insert(Base.metadata.tables[WebhookAttempt.__tablename__])


async def record_attempts(
    session: AsyncSession, deliveries: Sequence[dict[str, Any]], attempts: Sequence[dict[str, Any]]
) -> None:
    """Write a batch of outcomes: every delivery's new values in one executemany, every
    attempt's row in another (on the tables: the ORM's bulk paths cost each row more)."""
    connection = await session.connection()
    if deliveries:
        rows = [
            {"delivery_id": delivery["id"]}
            | {f"new_{column}": delivery[column] for column in _OUTCOME_COLUMNS}
            for delivery in deliveries
        ]
        await connection.execute(_RECORD_OUTCOME, rows)
    if attempts:
        await connection.execute(_ADD_ATTEMPT, list(attempts))


async def release_leases(session: AsyncSession, lease_token: str) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.lease_token == lease_token)
        .values(leased_until=None, lease_token=None)
    )


async def list_deliveries(
    session: AsyncSession,
    app_id: str,
    *,
    status: str | None,
    event_type: str | None,
    before_id: int | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.app_id == app_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if event_type is not None:
        query = query.where(WebhookDelivery.event_type == event_type)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    query = query.order_by(WebhookDelivery.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def get_delivery(
    session: AsyncSession, app_id: str, delivery_id: int
) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(
        WebhookDelivery.app_id == app_id, WebhookDelivery.id == delivery_id
    )
    return await session.scalar(query)


async def list_attempts(session: AsyncSession, delivery_id: int) -> Sequence[WebhookAttempt]:
    query = (
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.number)
    )
    return (await session.scalars(query)).all()


async def get_event(session: AsyncSession, event_id: str) -> WebhookEvent | None:
    return await session.get(WebhookEvent, event_id)


# --- operators: every app's deliveries, and replays -----------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which deliveries an operator looks at (each part optional)."""

    app_id: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: Select[Any], chosen: DeliveryFilter) -> Select[Any]:
    if chosen.app_id is not None:
        query = query.where(WebhookDelivery.app_id == chosen.app_id)
    if chosen.event_type is not None:
        query = query.where(WebhookDelivery.event_type == chosen.event_type)
    if chosen.status is not None:
        query = query.where(WebhookDelivery.status == chosen.status)
    if chosen.since is not None:
        query = query.where(WebhookDelivery.created_at >= chosen.since)
    if chosen.until is not None:
        query = query.where(WebhookDelivery.created_at < chosen.until)
    return query


async def all_deliveries(
    session: AsyncSession, chosen: DeliveryFilter, *, before_id: int | None, limit: int
) -> Sequence[WebhookDelivery]:
    """Deliveries of every app, newest (highest id) first, older than ``before_id``."""
    query = _filtered(select(WebhookDelivery), chosen)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    query = query.order_by(WebhookDelivery.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def any_delivery(session: AsyncSession, delivery_id: int) -> WebhookDelivery | None:
    return await session.get(WebhookDelivery, delivery_id)


async def newest_delivery_id(session: AsyncSession) -> int:
    return (await session.scalar(select(func.max(WebhookDelivery.id)))) or 0


async def count_deliveries(session: AsyncSession, chosen: DeliveryFilter, up_to_id: int) -> int:
    query = _filtered(select(func.count()).select_from(WebhookDelivery), chosen)
    return (await session.scalar(query.where(WebhookDelivery.id <= up_to_id))) or 0


def add_replay(session: AsyncSession, replay: WebhookReplay) -> None:
    session.add(replay)


async def get_replay(
    session: AsyncSession, replay_id: int, *, locked: bool = False
) -> WebhookReplay | None:
    query = select(WebhookReplay).where(WebhookReplay.id == replay_id)
    if locked:
        query = query.with_for_update()
    return await session.scalar(query)


async def latest_replays(session: AsyncSession, limit: int) -> Sequence[WebhookReplay]:
    query = select(WebhookReplay).order_by(WebhookReplay.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def claim_running_replay(session: AsyncSession) -> WebhookReplay | None:
    """The oldest running replay, locked to this worker until the transaction ends; one
    another worker holds is skipped (PostgreSQL; SQLite serialises writers instead)."""
    query = (
        select(WebhookReplay)
        .where(WebhookReplay.status == "running")
        .order_by(WebhookReplay.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return await session.scalar(query)


async def failed_ids_after(
    session: AsyncSession, chosen: DeliveryFilter, after_id: int, up_to_id: int, limit: int
) -> list[int]:
    """The next failed deliveries of the filter, by id, after ``after_id``."""
    query = _filtered(select(WebhookDelivery.id), chosen).where(
        WebhookDelivery.id > after_id, WebhookDelivery.id <= up_to_id
    )
    query = query.order_by(WebhookDelivery.id).limit(limit)
    return list((await session.scalars(query)).all())


async def make_due(session: AsyncSession, delivery_ids: Sequence[int], now: datetime) -> int:
    """Make these deliveries pending and due now, unless they are no longer failed."""
    if not delivery_ids:
        return 0
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.status == "failed")
        .values(status="pending", next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def app_names(session: AsyncSession, limit: int) -> list[tuple[str, str]]:
    """Apps' ids and names, by name, to choose one from."""
    query = select(App.id, App.name).order_by(App.name, App.id).limit(limit)
    return [(app_id, name) for app_id, name in await session.execute(query)]
