"""Response shapes of the delivery log."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from exoplane.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookReplay
from exoplane.responses import resource_time


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "event_id": delivery.event_id,
        "event": delivery.event_type,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": (
            resource_time(delivery.next_attempt_at) if delivery.status == "pending" else None
        ),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": resource_time(delivery.created_at),
        "updated_at": resource_time(delivery.updated_at),
    }


def attempt_view(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
        "response_body": attempt.response_body,
        "request_headers": (
            json.loads(attempt.request_headers) if attempt.request_headers else None
        ),
        "created_at": resource_time(attempt.created_at),
    }


def delivery_detail_view(
    delivery: WebhookDelivery, event: WebhookEvent, attempts: list[WebhookAttempt]
) -> dict[str, Any]:
    return {
        **delivery_view(delivery),
        "payload": json.loads(event.payload),
        "attempt_log": [attempt_view(attempt) for attempt in attempts],
    }


# --- response shapes (for the OpenAPI document; the functions above build the bodies) ------


class DeliveryView(BaseModel):
    id: str
    event_id: str
    event: str
    url: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    updated_at: str


class AttemptView(BaseModel):
    number: int
    status_code: int | None
    latency_ms: int | None
    error: str | None
    response_body: str | None
    request_headers: dict[str, str] | None
    created_at: str


class DeliveryDetail(DeliveryView):
    payload: dict[str, Any]
    attempt_log: list[AttemptView]


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryView]
    has_more: bool
    next_cursor: str | None


class SigningSecret(BaseModel):
    secret: str


class RotatedSigningSecret(SigningSecret):
    previous_secret_valid_for_seconds: int


# --- operators ----------------------------------------------------------------------------


def operator_delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {**delivery_view(delivery), "app_id": delivery.app_id}


def operator_delivery_detail_view(
    delivery: WebhookDelivery, event: WebhookEvent, attempts: list[WebhookAttempt]
) -> dict[str, Any]:
    return {**delivery_detail_view(delivery, event, attempts), "app_id": delivery.app_id}


def replay_view(replay: WebhookReplay) -> dict[str, Any]:
    return {
        "id": str(replay.id),
        "status": replay.status,
        "filter": {
            "app_id": replay.app_id,
            "event": replay.event_type,
            "since": resource_time(replay.since) if replay.since else None,
            "until": resource_time(replay.until) if replay.until else None,
        },
        "total": replay.total,
        "replayed": replay.replayed,
        "created_by": replay.created_by,
        "created_at": resource_time(replay.created_at),
        "finished_at": resource_time(replay.finished_at) if replay.finished_at else None,
    }


class OperatorDeliveryView(DeliveryView):
    app_id: str


class OperatorDeliveryDetail(DeliveryDetail):
    app_id: str


class OperatorDeliveryPage(BaseModel):
    deliveries: list[OperatorDeliveryView]
    has_more: bool
    next_cursor: str | None


class ReplayFilter(BaseModel):
    app_id: str | None
    event: str | None
    since: str | None
    until: str | None


class ReplayView(BaseModel):
    id: str
    status: Literal["running", "completed", "cancelled"]
    filter: ReplayFilter
    total: int = Field(description="Failed deliveries matching the filter when it started")
    replayed: int = Field(description="How many of them were made due again so far")
    created_by: str
    created_at: str
    finished_at: str | None


class ReplayList(BaseModel):
    replays: list[ReplayView]
