"""All SQL of idempotency keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.models import IdempotencyKey


async def find_live(
    session: AsyncSession, principal: str, key: str, now: datetime
) -> IdempotencyKey | None:
    query = select(IdempotencyKey).where(
        IdempotencyKey.principal == principal,
        IdempotencyKey.key == key,
        IdempotencyKey.expires_at > now,
    )
    return await session.scalar(query)


async def delete_expired(session: AsyncSession, principal: str, key: str, now: datetime) -> None:
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.principal == principal,
            IdempotencyKey.key == key,
            IdempotencyKey.expires_at <= now,
        )
    )


async def delete_by_id(session: AsyncSession, row_id: int) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))


async def store_answer(
    session: AsyncSession, row_id: int, status_code: int, response_enc: str
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == row_id)
        .values(status_code=status_code, response_enc=response_enc)
    )
