"""All SQL of the cluster key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import insert_missing
from exoplane.models import App, ClusterKey, ExotelIntegration
from exoplane.models.base import utcnow

ROW_ID = 1


async def record_fingerprint(session: AsyncSession, fingerprint: str) -> bool:
    """Store ``fingerprint`` unless one is stored already; whether this stored it."""
    row = {"id": ROW_ID, "fingerprint": fingerprint, "created_at": utcnow()}
    connection = await session.connection()
    return bool(await insert_missing(connection, ClusterKey.__table__, ("id",), [row]))


async def stored_fingerprint(session: AsyncSession) -> str | None:
    return await session.scalar(select(ClusterKey.fingerprint).where(ClusterKey.id == ROW_ID))


async def any_encrypted_secret(session: AsyncSession) -> str | None:
    """One value the vault wrote, if the database holds any: an app's Exotel key, else the
    bot platform's Exotel key."""
    stored = await session.scalar(select(App.exotel_api_key_enc).limit(1))
    if stored is not None:
        return stored
    return await session.scalar(
        select(ExotelIntegration.api_key_enc)
        .where(ExotelIntegration.api_key_enc.is_not(None))
        .limit(1)
    )
