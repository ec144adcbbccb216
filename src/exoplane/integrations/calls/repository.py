"""All SQL of calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import Reader
from exoplane.models import App, Call, User, WebhookEvent


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


_CALLER = (
    select(
        App.customer_id,
        App.exotel_account_sid,
        App.exotel_api_key_enc,
        App.exotel_api_token_enc,
        App.exotel_domain,
        User.phone_enabled,
        User.sip_enabled,
        User.phone_number,
        User.sip_username,
        User.virtual_number,
    )
    .join(App, App.id == User.app_id)
    .where(User.app_id == bindparam("app_id"), User.user_id == bindparam("user_id"))
)


@dataclass(frozen=True, slots=True)
class Caller:
    """An agent about to place a call, with their app's Exotel account."""

    customer_id: str
    account_sid: str
    api_key_enc: str
    api_token_enc: str
    exotel_domain: str
    phone_enabled: bool
    sip_enabled: bool
    phone_number: str | None
    sip_username: str
    virtual_number: str | None


async def caller(reader: Reader, app_id: str, user_id: str) -> Caller | None:
    """Read outside any transaction: Exotel is called next, and no lock may wait on it."""
    row = await reader.first(_CALLER, {"app_id": app_id, "user_id": user_id})
    return Caller(*row) if row else None
