"""All SQL of calls."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.models import Call, User, WebhookEvent


async def users_with_virtual_number(
    session: AsyncSession, app_id: str, virtual_number: str
) -> Sequence[User]:
    query = (
        select(User)
        .where(User.app_id == app_id, User.virtual_number == virtual_number)
        .order_by(User.id)
    )
    return (await session.scalars(query)).all()


async def get_call_by_sid(session: AsyncSession, app_id: str, call_sid: str) -> Call | None:
    return await session.scalar(
        select(Call).where(Call.app_id == app_id, Call.call_sid == call_sid)
    )


async def get_call(session: AsyncSession, call_id: str) -> Call | None:
    return await session.get(Call, call_id)


def add_call(session: AsyncSession, call: Call) -> None:
    session.add(call)


async def event_exists(session: AsyncSession, event_id: str) -> bool:
    return await session.get(WebhookEvent, event_id) is not None
