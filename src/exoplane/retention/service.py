"""Pruning: each table in small batches, one short transaction each, a pause between, so
pruning a backlog never holds locks for long or starves the requests sharing the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.db import unit_of_work
from exoplane.logs import get_logger
from exoplane.models.base import utcnow
from exoplane.retention import repository

log = get_logger("exoplane.retention")

BATCH_ROWS = 500
BATCH_PAUSE_SECONDS = 0.1
PRUNE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Pruned:
    call_events: int
    webhook_attempts: int
    idempotency_keys: int
    console_sessions: int = 0


async def prune(
    sessions: async_sessionmaker[AsyncSession],
    retention_days: int,
    *,
    batch_rows: int = BATCH_ROWS,
    pause_seconds: float = BATCH_PAUSE_SECONDS,
    stopping: asyncio.Event | None = None,
) -> Pruned:
    """Delete every row older than ``retention_days``, ``batch_rows`` per transaction;
    once ``stopping`` is set, no further batch starts."""
    stopping = stopping or asyncio.Event()
    now = utcnow()
    before = now - timedelta(days=retention_days)

    async def timeline(session: AsyncSession) -> int:
        return await repository.delete_call_events(session, before, batch_rows)

    async def attempts(session: AsyncSession) -> int:
        return await repository.delete_webhook_attempts(session, before, batch_rows)

    async def keys(session: AsyncSession) -> int:
        return await repository.delete_idempotency_keys(session, before, now, batch_rows)

    async def console_sessions(session: AsyncSession) -> int:
        return await repository.delete_console_sessions(session, before, batch_rows)

    return Pruned(
        call_events=await _in_batches(sessions, timeline, batch_rows, pause_seconds, stopping),
        webhook_attempts=await _in_batches(sessions, attempts, batch_rows, pause_seconds, stopping),
        idempotency_keys=await _in_batches(sessions, keys, batch_rows, pause_seconds, stopping),
        console_sessions=await _in_batches(
            sessions, console_sessions, batch_rows, pause_seconds, stopping
        ),
    )


async def _in_batches(
    sessions: async_sessionmaker[AsyncSession],
    batch: Callable[[AsyncSession], Awaitable[int]],
    batch_rows: int,
    pause_seconds: float,
    stopping: asyncio.Event,
) -> int:
    total = 0
    while not stopping.is_set():
        async with unit_of_work(sessions) as session:
            deleted = await batch(session)
        total += deleted
        if deleted < batch_rows:
            break
        await asyncio.sleep(pause_seconds)
    return total


async def prune_until(
    stopping: asyncio.Event,
    sessions: async_sessionmaker[AsyncSession],
    retention_days: int,
    *,
    every_seconds: float = PRUNE_EVERY_SECONDS,
) -> None:
    """Prune now and then every ``every_seconds`` until ``stopping`` is set. A failed round
    is logged and tried again next time."""
    while not stopping.is_set():
        try:
            pruned = await prune(sessions, retention_days, stopping=stopping)
        except Exception:
            log.exception("pruning old rows failed")
        else:
            if pruned.webhook_attempts or pruned.idempotency_keys:
                log.info(
                    "pruned old rows",
                    webhook_attempts=pruned.webhook_attempts,
                    idempotency_keys=pruned.idempotency_keys,
                    retention_days=retention_days,
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_seconds)
