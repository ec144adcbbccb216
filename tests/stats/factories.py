"""Calls, webhook deliveries and voice-bot streams written straight into the database, at
chosen times, for the statistics to count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.models import Call, CallEvent, WebhookAttempt, WebhookDelivery, WebhookEvent


@dataclass(frozen=True, slots=True)
class Delivery:
    at: datetime
    status: str
    latencies_ms: Sequence[int]  # one attempt each, a second apart from ``at``


async def add_calls(
    session: AsyncSession, app_id: str, calls: Sequence[tuple[datetime, str]], prefix: str = "c"
) -> None:
    rows = [
        {
            "id": f"{prefix}-{n}",
            "app_id": app_id,
            "call_sid": f"{prefix}-sid-{n}",
            "direction": "inbound",
            "from_number": "+919812345678",
            "to_number": "+919876500013",
            "status": status,
            "created_at": at,
            "updated_at": at,
        }
        for n, (at, status) in enumerate(calls)
    ]
    if rows:
        await session.execute(insert(Call), rows)


async def add_deliveries(
    session: AsyncSession, app_id: str, deliveries: Sequence[Delivery], prefix: str = "e"
) -> None:
    for n, delivery in enumerate(deliveries):
        event_id = f"{prefix}-{n}"
        session.add(
            WebhookEvent(
                id=event_id,
                app_id=app_id,
                call_sid=f"{prefix}-sid-{n}",
                type="incoming_call",
                payload="{}",
                created_at=delivery.at,
            )
        )
        row = WebhookDelivery(
            event_id=event_id,
            app_id=app_id,
            event_type="incoming_call",
            url="https://example.com/hook",
            status=delivery.status,
            attempts=len(delivery.latencies_ms),
            next_attempt_at=delivery.at,
            created_at=delivery.at,
            updated_at=delivery.at,
        )
        session.add(row)
        await session.flush()
        session.add_all(
            WebhookAttempt(
                delivery_id=row.id,
                number=k + 1,
                status_code=200,
                latency_ms=latency,
                created_at=delivery.at + timedelta(seconds=k),
            )
            for k, latency in enumerate(delivery.latencies_ms)
        )
    await session.flush()


async def add_streams(
    session: AsyncSession, streams: Sequence[tuple[datetime, int | None]], prefix: str = "s"
) -> None:
    """Bot streams started at each time, with the bot's first audio that many ms after
    (None: the bot never spoke)."""
    rows = []
    for n, (at, after_ms) in enumerate(streams):
        sid = f"{prefix}-{n}"
        start = {"bot_id": "echo", "from": "+919812345678", "to": "+918047491803"}
        rows.append(_step(sid, "stream_start", start, at))
        if after_ms is not None:
            spoke = at + timedelta(milliseconds=after_ms)
            rows.append(_step(sid, "first_outbound_media", {"after_start_ms": after_ms}, spoke))
    if rows:
        await session.execute(insert(CallEvent), rows)


def _step(
    call_sid: str, kind: str, detail: Mapping[str, object], at: datetime
) -> dict[str, object]:
    return {
        "app_id": None,
        "call_sid": call_sid,
        "kind": kind,
        "detail": orjson.dumps(detail).decode(),
        "at": at,
    }
