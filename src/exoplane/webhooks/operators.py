"""What operators do with every app's webhooks: the delivery log across apps, replaying
one delivery, and replays of every failed delivery matching a filter, which the delivery
workers work through in batches (state in the database, so a restart loses nothing)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.db import unit_of_work
from exoplane.errors import BadRequest, Conflict, NotFound
from exoplane.integrations.calls.service import utc_filter
from exoplane.logs import get_logger
from exoplane.models import WebhookDelivery, WebhookReplay
from exoplane.models.base import utcnow
from exoplane.voicebot import service as voicebot
from exoplane.voicebot.auth import OperatorPrincipal
from exoplane.webhooks import repository
from exoplane.webhooks.service import EVENT_TARGETS, STATUSES, DeliveryDetail, send_again

log = get_logger("exoplane.webhooks")

# --- operators: every app's deliveries --------------------------------------------------------

DeliveryFilter = repository.DeliveryFilter


def delivery_filter(
    *,
    app_id: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> DeliveryFilter:
    """A filter of deliveries; times without an offset are UTC, 'since' before 'until'."""
    if event_type is not None and event_type not in EVENT_TARGETS:
        raise BadRequest(f"Unknown event {event_type!r}", field="event")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"Status must be one of {', '.join(STATUSES)}", field="status")
    since, until = utc_filter(since, "since"), utc_filter(until, "until")
    if since is not None and until is not None and since >= until:
        raise BadRequest("Query parameter 'since' must be before 'until'", field="since")
    return DeliveryFilter(app_id or None, event_type, status, since, until)


async def list_all_deliveries(
    session: AsyncSession, chosen: DeliveryFilter, *, cursor: int | None, limit: int
) -> tuple[Sequence[WebhookDelivery], int | None]:
    """Every app's deliveries, newest first; the cursor of the next (older) page, or None at
    the end. A page goes by delivery id, so deliveries queued meanwhile (newer, higher ids)
    never shift the pages after the first."""
    rows = await repository.all_deliveries(session, chosen, before_id=cursor, limit=limit + 1)
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


async def any_delivery(session: AsyncSession, delivery_id: int) -> DeliveryDetail:
    delivery = await repository.any_delivery(session, delivery_id)
    if delivery is None:
        raise NotFound(f"No webhook delivery {delivery_id}", code="delivery_not_found")
    event = await repository.get_event(session, delivery.event_id)
    assert event is not None  # deliveries are deleted with their events
    return DeliveryDetail(delivery, event, await repository.list_attempts(session, delivery.id))


async def replay_delivery(
    session: AsyncSession, operator: OperatorPrincipal, delivery_id: int
) -> DeliveryDetail:
    """An operator sends one delivery of any app again now, with its event id."""
    detail = await send_again(session, await any_delivery(session, delivery_id))
    voicebot.audit(session, operator, "webhook.replay", f"webhook_deliveries/{delivery_id}")
    return detail


# --- replaying every failed delivery of a filter ------------------------------------------

REPLAY_STATUSES = ("running", "completed", "cancelled")
# Deliveries made due again per transaction, and how often running replays are looked for.
REPLAY_BATCH = 200
REPLAY_POLL_SECONDS = 1.0


async def start_replay(
    session: AsyncSession, operator: OperatorPrincipal, chosen: DeliveryFilter
) -> WebhookReplay:
    """A job that sends again every delivery of the filter that had failed by now; the
    delivery workers work through it in batches (see ``replay_some``)."""
    failed = replace(chosen, status="failed")
    up_to_id = await repository.newest_delivery_id(session)
    now = utcnow()
    replay = WebhookReplay(
        status="running",
        app_id=failed.app_id,
        event_type=failed.event_type,
        since=failed.since,
        until=failed.until,
        up_to_id=up_to_id,
        after_id=0,
        total=await repository.count_deliveries(session, failed, up_to_id),
        replayed=0,
        created_by=operator.email,
        created_at=now,
        updated_at=now,
    )
    repository.add_replay(session, replay)
    await session.flush()
    voicebot.audit(
        session,
        operator,
        "webhook.replay_failed",
        f"webhook_replays/{replay.id}",
        replay_filter(replay),
    )
    return replay


def replay_filter(replay: WebhookReplay) -> dict[str, Any]:
    return {
        "app_id": replay.app_id,
        "event": replay.event_type,
        "since": replay.since.isoformat() if replay.since else None,
        "until": replay.until.isoformat() if replay.until else None,
    }


async def get_replay(session: AsyncSession, replay_id: int) -> WebhookReplay:
    replay = await repository.get_replay(session, replay_id)
    if replay is None:
        raise NotFound(f"No webhook replay {replay_id}", code="replay_not_found")
    return replay


async def latest_replays(session: AsyncSession, limit: int) -> Sequence[WebhookReplay]:
    return await repository.latest_replays(session, limit)


async def cancel_replay(
    session: AsyncSession, operator: OperatorPrincipal, replay_id: int
) -> WebhookReplay:
    """Stop a running replay: deliveries it already made due are still sent."""
    replay = await repository.get_replay(session, replay_id, locked=True)
    if replay is None:
        raise NotFound(f"No webhook replay {replay_id}", code="replay_not_found")
    if replay.status != "running":
        raise Conflict(f"This replay is already {replay.status}", code="replay_finished")
    now = utcnow()
    replay.status = "cancelled"
    replay.updated_at = replay.finished_at = now
    await session.flush()
    voicebot.audit(session, operator, "webhook.replay_cancelled", f"webhook_replays/{replay.id}")
    return replay


async def replay_some(session: AsyncSession, batch: int = REPLAY_BATCH) -> bool:
    """One batch of the oldest running replay: its next failed deliveries made due again
    and its progress saved, in the caller's transaction; whether there was one."""
    replay = await repository.claim_running_replay(session)
    if replay is None:
        return False
    chosen = DeliveryFilter(replay.app_id, replay.event_type, "failed", replay.since, replay.until)
    ids = await repository.failed_ids_after(
        session, chosen, replay.after_id, replay.up_to_id, batch
    )
    now = utcnow()
    replay.replayed += await repository.make_due(session, ids, now)
    replay.updated_at = now
    if len(ids) < batch:
        replay.status = "completed"
        replay.finished_at = now
    else:
        replay.after_id = ids[-1]
    await session.flush()
    return True


async def replay_until(
    stopping: asyncio.Event,
    sessions: async_sessionmaker[AsyncSession],
    wake: Callable[[], None],
    *,
    every_seconds: float = REPLAY_POLL_SECONDS,
) -> None:
    """Work through running replays, a batch per transaction, until ``stopping`` is set;
    wake the delivery worker after each batch. Between replays, look every
    ``every_seconds``. A failed batch is logged and tried again next time."""
    while not stopping.is_set():
        worked = False
        try:
            async with unit_of_work(sessions) as session:
                worked = await replay_some(session)
        except Exception:
            log.exception("replaying failed webhook deliveries failed")
        if worked:
            wake()
            await asyncio.sleep(0)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_seconds)


APPS_LISTED = 500


async def app_choices(session: AsyncSession) -> list[tuple[str, str]]:
    """The apps an operator can filter by: (id, name), by name."""
    return await repository.app_names(session, APPS_LISTED)
