"""All SQL of the console: its sessions, and the counts its overview shows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import Reader
from exoplane.models import ConsoleSession, Did, Operator

_SESSION = (
    select(
        ConsoleSession.created_at,
        ConsoleSession.last_seen_at,
        Operator.id,
        Operator.email,
        Operator.role,
    )
    .join(Operator, Operator.id == ConsoleSession.operator_id)
    .where(ConsoleSession.token_hash == bindparam("token_hash"), Operator.disabled_at.is_(None))
)


async def session_of(
    reader: Reader, token_hash: str
) -> tuple[datetime, datetime, str, str, str] | None:
    """(created_at, last_seen_at, operator id, email, role) of a session whose operator is
    not disabled, read outside any transaction: it runs on every console request."""
    row = await reader.first(_SESSION, {"token_hash": token_hash})
    return (row[0], row[1], row[2], row[3], row[4]) if row else None


def add(session: AsyncSession, row: object) -> None:
    session.add(row)


async def touch(session: AsyncSession, token_hash: str, at: datetime) -> None:
    await session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.token_hash == token_hash)
        .values(last_seen_at=at)
    )


async def delete_session(session: AsyncSession, token_hash: str) -> None:
    await session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash))


async def delete_other_sessions(session: AsyncSession, operator_id: str, keep: str) -> None:
    await session.execute(
        delete(ConsoleSession).where(
            ConsoleSession.operator_id == operator_id, ConsoleSession.token_hash != keep
        )
    )


async def operator_with_email(session: AsyncSession, email: str) -> Operator | None:
    return await session.scalar(select(Operator).where(Operator.email == email))


async def dids_with_a_bot(session: AsyncSession) -> tuple[int, int]:
    """(DIDs, DIDs with a bot attached)."""
    row = (await session.execute(select(func.count(Did.id), func.count(Did.bot_id)))).one()
    return int(row[0]), int(row[1])
