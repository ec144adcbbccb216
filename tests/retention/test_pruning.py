"""Webhook attempts and idempotency keys past EXOPLANE_RETENTION_DAYS are pruned, in batches."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory
from exoplane.models import (
    CallEvent,
    ConsoleSession,
    IdempotencyKey,
    Operator,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
)
from exoplane.models.base import utcnow
from exoplane.retention.service import Pruned, prune
from tests.conftest import make_settings
from tests.factories import app_with_token, database_session
from tests.voicebot.factories import create_operator
from tests.waiting import until
from tests.webhooks.conftest import serving

DAY = timedelta(days=1)


async def seed(client: httpx.AsyncClient, settings: Settings, *, old: int, new: int) -> None:
    """``old`` attempts and expired keys from 31 days ago, ``new`` from 29 days ago, and
    one key still live."""
    app = await app_with_token(client, settings)
    now = utcnow()
    async with database_session(settings) as session:
        session.add(WebhookEvent(id="evt_1", app_id=app.id, type="t", payload="{}"))
        await session.flush()
        delivery = WebhookDelivery(
            event_id="evt_1",
            app_id=app.id,
            event_type="t",
            url="https://example.com/hook",
            status="failed",
            next_attempt_at=now,
        )
        session.add(delivery)
        await session.flush()
        ages = [31 * DAY] * old + [29 * DAY] * new
        for number, age in enumerate(ages, start=1):
            session.add(
                WebhookAttempt(
                    delivery_id=delivery.id,
                    number=number,
                    latency_ms=5,
                    created_at=now - age,
                )
            )
            session.add(
                CallEvent(
                    app_id=app.id,
                    call_sid="CA1",
                    kind="status_callback",
                    detail='{"status": "completed"}',
                    at=now - age,
                )
            )
            session.add(
                IdempotencyKey(
                    principal="app:x",
                    key=f"key-{number}",
                    request_hash="h",
                    status_code=200,
                    response_enc="e",
                    created_at=now - age,
                    expires_at=now - age + DAY,
                )
            )
        session.add(
            IdempotencyKey(
                principal="app:x",
                key="live",
                request_hash="h",
                status_code=200,
                response_enc="e",
                created_at=now - 31 * DAY,
                expires_at=now + DAY,
            )
        )


async def counts(settings: Settings) -> tuple[int, int, int]:
    async with database_session(settings) as session:
        events = await session.scalar(select(func.count()).select_from(CallEvent))
        attempts = await session.scalar(select(func.count()).select_from(WebhookAttempt))
        keys = await session.scalar(select(func.count()).select_from(IdempotencyKey))
        return int(events or 0), int(attempts or 0), int(keys or 0)


async def test_rows_past_the_retention_go_in_small_batches_and_newer_ones_stay(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await seed(client, settings, old=5, new=3)
    engine = create_engine(settings.database_url)
    try:
        pruned = await prune(create_session_factory(engine), 30, batch_rows=2, pause_seconds=0.001)
    finally:
        await engine.dispose()

    assert pruned == Pruned(call_events=5, webhook_attempts=5, idempotency_keys=5)
    assert await counts(settings) == (3, 3, 4)


async def test_a_shorter_retention_prunes_the_newer_rows_too(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await seed(client, settings, old=2, new=2)
    engine = create_engine(settings.database_url)
    try:
        pruned = await prune(create_session_factory(engine), 10)
    finally:
        await engine.dispose()

    assert pruned == Pruned(call_events=4, webhook_attempts=4, idempotency_keys=4)
    assert await counts(settings) == (0, 0, 1)


async def test_a_key_that_still_replays_is_kept_however_old(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await seed(client, settings, old=0, new=0)
    engine = create_engine(settings.database_url)
    try:
        pruned = await prune(create_session_factory(engine), 1)
    finally:
        await engine.dispose()

    assert pruned == Pruned(call_events=0, webhook_attempts=0, idempotency_keys=0)
    assert await counts(settings) == (0, 0, 1)


async def test_the_webhook_worker_prunes_on_start_with_the_configured_retention(
    client: httpx.AsyncClient, settings: Settings, database_url: str
) -> None:
    await seed(client, settings, old=4, new=2)
    worker_settings = make_settings(settings.home, database_url, retention_days=30)

    async with serving(worker_settings):
        await until(lambda: _counted(settings, (2, 2, 3)), what="the worker pruned the old rows")

    assert await counts(settings) == (2, 2, 3)


async def _counted(settings: Settings, wanted: tuple[int, int, int]) -> bool:
    return await counts(settings) == wanted


async def test_console_sessions_unused_for_longer_than_the_retention_are_pruned(
    settings: Settings,
) -> None:
    operator = await create_operator(settings, "root@example.com", "super_admin")
    now = utcnow()
    async with database_session(settings) as session:
        operator_id = await session.scalar(
            select(Operator.id).where(Operator.email == operator.email)
        )
        for name, age in (("old", 31 * DAY), ("recent", DAY)):
            session.add(
                ConsoleSession(
                    token_hash=name.ljust(64, "0"),
                    operator_id=operator_id,
                    created_at=now - age,
                    last_seen_at=now - age,
                )
            )
    engine = create_engine(settings.database_url)
    try:
        pruned = await prune(create_session_factory(engine), 30)
    finally:
        await engine.dispose()

    assert pruned.console_sessions == 1
    async with database_session(settings) as session:
        left = (await session.scalars(select(ConsoleSession.token_hash))).all()
    assert left == ["recent".ljust(64, "0")]
