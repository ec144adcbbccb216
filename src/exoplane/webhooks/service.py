"""The rules of webhooks: which event goes where, retry policy, the delivery log, replay."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import OUTBOX_WRITTEN
from exoplane.errors import Conflict, NotFound
from exoplane.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from exoplane.models.base import utcnow
from exoplane.webhooks import repository

# Seed 02's events and the setting that names each one's target.
EVENT_TARGETS = {
    "incoming_call": "popup_url",
    "call_missed": "missed_call_url",
    "call_answered": "callback_url",
    "call_completed": "callback_url",
    "recording_ready": "recording_url",
}
STATUSES = ("pending", "succeeded", "failed")
RESPONSE_BODY_LIMIT = 1024


def new_event_id(*about: str) -> str:
    """A random event id, or a stable one derived from what the event is about."""
    if about:
        return "evt_" + hashlib.sha256("\x1f".join(about).encode()).hexdigest()[:32]
    return "evt_" + uuid.uuid4().hex


class WebhookTargets(Protocol):
    """Where an app's webhooks go and how they are signed: its settings row, or the columns
    of it a query read."""

    @property
    def app_id(self) -> str: ...
    @property
    def popup_url(self) -> str | None: ...
    @property
    def missed_call_url(self) -> str | None: ...
    @property
    def callback_url(self) -> str | None: ...
    @property
    def recording_url(self) -> str | None: ...
    @property
    def webhook_secret_enc(self) -> str: ...
    @property
    def previous_webhook_secret_enc(self) -> str | None: ...
    @property
    def previous_webhook_secret_expires_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event to write to the outbox. ``event_id`` derived from what the event is about
    makes a repeated report of the same fact the same event."""

    targets: WebhookTargets
    event_type: str
    payload: dict[str, Any]
    event_id: str


class Handoff(Protocol):
    """Free slots of the delivery worker in this process, for deliveries being written.

    A delivery given a slot is written already leased to that worker and is sent by it as
    soon as the transaction commits, without waiting to be claimed. If the process dies
    first, the lease runs out and any worker claims the delivery as usual.
    """

    lease_token: str
    leased_until: datetime

    def take(self, wanted: int) -> int:
        """Hold up to ``wanted`` slots; how many were held."""
        ...

    def add(self, delivery: repository.Claimed, targets: WebhookTargets) -> None:
        """A delivery written into a held slot, to be sent after the commit."""
        ...

    def send(self) -> None:
        """After the commit: start the deliveries added."""
        ...

    def cancel(self) -> None:
        """After a rollback: free the slots."""
        ...


class LocalDelivery(Protocol):
    """The delivery worker running in this process, as writers of events see it."""

    def wake(self) -> None:
        """Deliveries were queued for claiming: look for them now."""
        ...

    def handoff(self) -> Handoff | None:
        """Slots for the deliveries of one transaction; None when there are none to give."""
        ...


class NoLocalDelivery:
    """No worker in this process (``serve --no-worker``): every delivery waits to be
    claimed by a standalone one."""

    def wake(self) -> None:
        return None

    def handoff(self) -> Handoff | None:
        return None


async def emit_many(
    session: AsyncSession, events: Sequence[PendingEvent], handoff: Handoff | None = None
) -> set[str]:
    """Write events to the outbox in the caller's transaction, each with its delivery;
    the ids of those that were new.

    An event is recorded even when no URL is configured for it, so the log is complete;
    only then is there nothing to deliver. An event whose id is already in the outbox (or
    earlier in ``events``) is left as it is and gets no second delivery, even when two
    reports of it arrive at the same moment. With a ``handoff``, as many deliveries as it
    has slots for go to this process's worker directly; the rest wait to be claimed.
    """
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": event.event_id,
            "app_id": event.targets.app_id,
            "type": event.event_type,
            "call_sid": event.payload.get("call_sid"),
            "payload": orjson.dumps(
                {"event": event.event_type, **event.payload, "event_id": event.event_id}
            ).decode(),
            "created_at": now,
        }
        for event in events
    ]
    inserted = await repository.add_events_once(session, rows)
    if not inserted:
        return inserted
    deliveries: list[dict[str, Any]] = []
    delivered: set[str] = set()
    sources: list[tuple[WebhookTargets, str]] = []  # each delivery's targets and payload
    for event, row in zip(events, rows, strict=True):
        url = getattr(event.targets, EVENT_TARGETS[event.event_type])
        if url and event.event_id in inserted and event.event_id not in delivered:
            delivered.add(event.event_id)
            deliveries.append(_delivery_row(event, url, now))
            sources.append((event.targets, row["payload"]))
    held = handoff.take(len(deliveries)) if handoff is not None and deliveries else 0
    if handoff is None or held == 0:
        await repository.add_deliveries(session, deliveries)
    else:
        for delivery in deliveries[:held]:
            delivery.update(leased_until=handoff.leased_until, lease_token=handoff.lease_token)
        ids = await repository.add_deliveries(session, deliveries, returning_ids=True)
        for delivery, (targets, payload) in zip(deliveries[:held], sources[:held], strict=True):
            claimed = repository.Claimed(
                ids[delivery["event_id"]],
                delivery["app_id"],
                delivery["url"],
                delivery["event_id"],
                delivery["event_type"],
                payload,
            )
            handoff.add(claimed, targets)
    if len(deliveries) > held:
        session.info[OUTBOX_WRITTEN] = True
    return inserted


def _delivery_row(event: PendingEvent, url: str, now: datetime) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "app_id": event.targets.app_id,
        "event_type": event.event_type,
        "url": url,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "leased_until": None,
        "lease_token": None,
        "created_at": now,
        "updated_at": now,
    }


# --- outcome of an attempt ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    error: str | None
    response_body: str | None
    # The headers sent (JSON), for the delivery log; None when nothing was sent.
    request_headers: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Timeouts, connection errors, 408, 429 and 5xx are worth another try; other 4xx
        are the receiver's final word."""
        if self.status_code is None:
            return self.error is not None and not self.error.startswith("forbidden target")
        if self.status_code in (408, 429):
            return True
        return not 400 <= self.status_code < 500


def retry_delay(attempt_number: int, schedule: Sequence[float]) -> float | None:
    """Seconds until the next try after ``attempt_number`` failures, or None to give up.

    Each delay is jittered by up to 20 % either way, so receivers recovering from an outage
    are not met by every retry at the same instant.
    """
    if attempt_number > len(schedule):
        return None
    return schedule[attempt_number - 1] * random.uniform(0.8, 1.2)


def apply_result(
    lease: repository.Lease,
    result: AttemptResult,
    schedule: Sequence[float],
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decide what happens next after an attempt: the delivery's new values (with its id)
    and the attempt's row for the log."""
    attempts = lease.attempts + 1
    status, next_attempt_at = "pending", lease.next_attempt_at
    if result.succeeded:
        status = "succeeded"
    else:
        delay = retry_delay(attempts, schedule) if result.retryable else None
        if delay is None:
            status = "failed"
        else:
            next_attempt_at = now + timedelta(seconds=delay)
    delivery = {
        "id": lease.id,
        "status": status,
        "attempts": attempts,
        "next_attempt_at": next_attempt_at,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "leased_until": None,
        "lease_token": None,
        "updated_at": now,
    }
    attempt = {
        "delivery_id": lease.id,
        "number": attempts,
        "status_code": result.status_code,
        "latency_ms": result.latency_ms,
        "error": result.error,
        "response_body": result.response_body,
        "request_headers": result.request_headers,
        "created_at": now,
    }
    return delivery, attempt


# --- the delivery log ---------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession,
    app_id: str,
    *,
    status: str | None,
    event_type: str | None,
    cursor: int | None,
    limit: int,
) -> tuple[Sequence[WebhookDelivery], int | None]:
    """Newest first; the cursor of the next (older) page, or None at the end."""
    rows = await repository.list_deliveries(
        session, app_id, status=status, event_type=event_type, before_id=cursor, limit=limit + 1
    )
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


@dataclass(frozen=True, slots=True)
class DeliveryDetail:
    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: Sequence[WebhookAttempt]


async def get_delivery(session: AsyncSession, app_id: str, delivery_id: int) -> DeliveryDetail:
    delivery = await repository.get_delivery(session, app_id, delivery_id)
    if delivery is None:
        raise NotFound(f"No webhook delivery {delivery_id} for this app", code="delivery_not_found")
    event = await repository.get_event(session, delivery.event_id)
    assert event is not None  # deliveries are deleted with their events
    return DeliveryDetail(delivery, event, await repository.list_attempts(session, delivery.id))


async def retry_delivery(session: AsyncSession, app_id: str, delivery_id: int) -> DeliveryDetail:
    """Send a delivery again now, whatever became of it; the event id stays the same."""
    return await send_again(session, await get_delivery(session, app_id, delivery_id))


async def send_again(session: AsyncSession, detail: DeliveryDetail) -> DeliveryDetail:
    delivery = detail.delivery
    now = utcnow()
    if delivery.lease_token is not None and delivery.leased_until and delivery.leased_until > now:
        raise Conflict(
            "This delivery is being attempted right now; retry once the attempt is logged",
            code="delivery_in_flight",
        )
    delivery.status = "pending"
    delivery.next_attempt_at = now
    delivery.updated_at = now
    await session.flush()
    session.info[OUTBOX_WRITTEN] = True
    return detail
