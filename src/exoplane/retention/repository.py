"""All SQL of retention: bounded deletes of rows older than a cut-off."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.models import CallEvent, ConsoleSession, IdempotencyKey, WebhookAttempt


def _deleted(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_webhook_attempts(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` attempts made before ``before``; how many went."""
    oldest = (
        select(WebhookAttempt.id)
        .where(WebhookAttempt.created_at < before)
        .order_by(WebhookAttempt.id)
        .limit(limit)
    )
    result = await session.execute(
        delete(WebhookAttempt)
        .where(WebhookAttempt.id.in_(oldest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return _deleted(result)


async def delete_idempotency_keys(
    session: AsyncSession, before: datetime, now: datetime, limit: int
) -> int:
    """Delete up to ``limit`` keys stored before ``before`` that no longer replay."""
    oldest = (
        select(IdempotencyKey.id)
        .where(IdempotencyKey.created_at < before, IdempotencyKey.expires_at <= now)
        .order_by(IdempotencyKey.id)
        .limit(limit)
    )
    result = await session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.id.in_(oldest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return _deleted(result)


async def delete_call_events(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` timeline entries recorded before ``before``; how many went."""
    oldest = select(CallEvent.id).where(CallEvent.at < before).order_by(CallEvent.id).limit(limit)
    result = await session.execute(
        delete(CallEvent)
        .where(CallEvent.id.in_(oldest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return _deleted(result)


async def delete_console_sessions(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` console sessions last used before ``before`` (long expired: the
    idle timeout is at most a day); how many went."""
    oldest = (
        select(ConsoleSession.token_hash)
        .where(ConsoleSession.last_seen_at < before)
        .order_by(ConsoleSession.last_seen_at)
        .limit(limit)
    )
    result = await session.execute(
        delete(ConsoleSession)
        .where(ConsoleSession.token_hash.in_(oldest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return _deleted(result)
