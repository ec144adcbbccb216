"""All SQL of the webhook outbox, deliveries and attempts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import insert_or_ignore
from exoplane.models import WebhookAttempt, WebhookDelivery, WebhookEvent


async def add_event_once(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the event unless one with its id exists; True when this call inserted it."""
    statement = (
        insert_or_ignore(session, WebhookEvent, "id").values(values).returning(WebhookEvent.id)
    )
    return (await session.execute(statement)).first() is not None


async def add_delivery(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(insert(WebhookDelivery).values(values))


async def claim_due(
    session: AsyncSession, now: datetime, lease_until: datetime, lease_token: str, limit: int
) -> Sequence[WebhookDelivery]:
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
    ids = list(await session.scalars(due))
    if not ids:
        return []
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(leased_until=lease_until, lease_token=lease_token)
    )
    claimed = await session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id)
    )
    return claimed.all()


async def get_events(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, WebhookEvent]:
    rows = await session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(event_ids)))
    return {event.id: event for event in rows}


async def get_deliveries(
    session: AsyncSession, delivery_ids: Sequence[int]
) -> dict[int, WebhookDelivery]:
    rows = await session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids))
    )
    return {delivery.id: delivery for delivery in rows}


def add_attempt(session: AsyncSession, attempt: WebhookAttempt) -> None:
    session.add(attempt)


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
