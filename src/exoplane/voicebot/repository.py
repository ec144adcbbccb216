"""All SQL of the voice-bot admin: operators, the Exotel integration, DIDs, settings, audit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import Reader
from exoplane.models import AuditEntry, Did, ExotelIntegration, Operator, PlatformSettings

SINGLETON = 1


_OPERATOR_BY_KEY = select(Operator.id, Operator.email, Operator.role).where(
    Operator.api_key_hash == bindparam("key_hash"), Operator.disabled_at.is_(None)
)
_DID_FOR_CALL = select(Did.id, Did.number, Did.flow_url, Did.bot_id).where(
    Did.id == bindparam("did_id")
)
_FLEET = select(PlatformSettings.core_fleet_json).where(PlatformSettings.id == SINGLETON)
_CREDENTIALS = select(
    ExotelIntegration.account_sid,
    ExotelIntegration.api_key_enc,
    ExotelIntegration.api_token_enc,
    ExotelIntegration.api_base_url,
).where(ExotelIntegration.id == SINGLETON)


async def operator_by_key_hash(reader: Reader, key_hash: str) -> tuple[str, str, str] | None:
    """(id, email, role) of the key's operator, unless disabled, read outside any transaction."""
    row = await reader.first(_OPERATOR_BY_KEY, {"key_hash": key_hash})
    return (row[0], row[1], row[2]) if row else None


async def did_for_call(
    reader: Reader, did_id: str
) -> tuple[str, str, str | None, str | None] | None:
    """(id, number, flow_url, bot_id): read without a transaction, as a call is placed next."""
    row = await reader.first(_DID_FOR_CALL, {"did_id": did_id})
    return (row[0], row[1], row[2], row[3]) if row else None


async def core_fleet_json(reader: Reader) -> str | None:
    """The stored ``core_fleet`` (JSON), read without a transaction."""
    row = await reader.first(_FLEET, {})
    return row[0] if row else None


async def stored_credentials(
    reader: Reader,
) -> tuple[str | None, str | None, str | None, str | None] | None:
    row = await reader.first(_CREDENTIALS, {})
    return (row[0], row[1], row[2], row[3]) if row else None


async def operator_by_email(session: AsyncSession, email: str) -> Operator | None:
    return await session.scalar(select(Operator).where(Operator.email == email))


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


async def integration(session: AsyncSession) -> ExotelIntegration | None:
    return await session.get(ExotelIntegration, SINGLETON)


async def platform_settings(session: AsyncSession) -> PlatformSettings | None:
    return await session.get(PlatformSettings, SINGLETON)


async def list_dids(session: AsyncSession) -> Sequence[Did]:
    return (await session.scalars(select(Did).order_by(Did.created_at, Did.id))).all()


class DidOption(NamedTuple):
    """What a test call's choice of DID shows: nothing sensitive."""

    id: str
    number: str
    label: str | None
    bot_id: str | None
    flow_url: str | None


async def call_options(session: AsyncSession) -> Sequence[DidOption]:
    """DIDs with a flow_url or a bot, in the order they were added; columns, not objects."""
    query = (
        select(Did.id, Did.number, Did.label, Did.bot_id, Did.flow_url)
        .where(or_(Did.flow_url.is_not(None), Did.bot_id.is_not(None)))
        .order_by(Did.created_at, Did.id)
    )
    return [DidOption(*row) for row in await session.execute(query)]


async def did_page(session: AsyncSession, *, after_number: str | None, limit: int) -> Sequence[Did]:
    query = select(Did).order_by(Did.number).limit(limit)
    if after_number is not None:
        query = query.where(Did.number > after_number)
    return (await session.scalars(query)).all()


async def get_did(session: AsyncSession, did_id: str) -> Did | None:
    return await session.get(Did, did_id)


async def did_with_number(session: AsyncSession, number: str) -> Did | None:
    return await session.scalar(select(Did).where(Did.number == number))


async def delete_did(session: AsyncSession, did_id: str) -> None:
    await session.execute(delete(Did).where(Did.id == did_id))


async def audit_page(
    session: AsyncSession,
    *,
    before_id: int | None,
    limit: int,
    operator: str | None = None,
    action: str | None = None,
) -> Sequence[AuditEntry]:
    """Newest first; ``operator`` is an email, ``action`` an action or its start
    (``did.`` for every DID change)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if operator:
        query = query.where(AuditEntry.operator_email == operator)
    if action:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True))
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return (await session.scalars(query)).all()
