"""``/v2/integrations/{customer_id}/apps/{app_id}/webhooks/...``: the delivery log, replay,
and the signing secret."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from exoplane.db import Session
from exoplane.inputs import Int64, PathId
from exoplane.integrations import service as integrations
from exoplane.integrations.auth import AppAuth
from exoplane.integrations.schemas import WholeNumber
from exoplane.openapi import Resource
from exoplane.responses import resource_ok
from exoplane.state import State
from exoplane.webhooks import service
from exoplane.webhooks.schemas import (
    DeliveryDetail,
    DeliveryPage,
    DeliveryView,
    RotatedSigningSecret,
    SigningSecret,
    delivery_detail_view,
    delivery_view,
)

router = APIRouter(prefix="/v2/integrations/{customer_id}/apps/{app_id}", tags=["webhooks"])

EventName = Literal[
    "incoming_call", "call_missed", "call_answered", "call_completed", "recording_ready"
]


class SecretRotation(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    grace_seconds: WholeNumber = Field(default=24 * 3600, ge=0, le=7 * 24 * 3600)


@router.get("/webhooks/deliveries", response_model=Resource[DeliveryPage])
async def list_deliveries(
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    status: Literal["pending", "succeeded", "failed"] | None = None,
    event: EventName | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[Int64 | None, Query(ge=1)] = None,
) -> Response:
    """Webhook deliveries, newest first, filtered by status and event."""
    integrations.check_app_path(principal, customer_id, app_id)
    page, next_cursor = await service.list_deliveries(
        session, app_id, status=status, event_type=event, cursor=cursor, limit=limit
    )
    return resource_ok(
        {
            "deliveries": [delivery_view(delivery) for delivery in page],
            "has_more": next_cursor is not None,
            "next_cursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


@router.get("/webhooks/deliveries/{delivery_id}", response_model=Resource[DeliveryDetail])
async def get_delivery(
    session: Session, principal: AppAuth, customer_id: PathId, app_id: PathId, delivery_id: Int64
) -> Response:
    """One delivery with its payload and every attempt (status, latency, response)."""
    integrations.check_app_path(principal, customer_id, app_id)
    detail = await service.get_delivery(session, app_id, delivery_id)
    return resource_ok(delivery_detail_view(detail.delivery, detail.event, list(detail.attempts)))


@router.post(
    "/webhooks/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=Resource[DeliveryView],
)
async def retry_delivery(
    session: Session, principal: AppAuth, customer_id: PathId, app_id: PathId, delivery_id: Int64
) -> Response:
    """Send the delivery again now, with the same event id (receivers de-duplicate on it)."""
    integrations.check_app_path(principal, customer_id, app_id)
    detail = await service.retry_delivery(session, app_id, delivery_id)
    return resource_ok(delivery_view(detail.delivery), status=202)


@router.get("/webhooks/secret", response_model=Resource[SigningSecret])
async def get_signing_secret(
    state: State, session: Session, principal: AppAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """The secret receivers verify ``webhook-signature`` with (Standard Webhooks)."""
    integrations.check_app_path(principal, customer_id, app_id)
    row = await integrations.app_settings(session, state.vault, app_id)
    return resource_ok({"secret": state.vault.decrypt(row.webhook_secret_enc)})


@router.post("/webhooks/secret/rotate", response_model=Resource[RotatedSigningSecret])
async def rotate_signing_secret(
    state: State,
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    body: Annotated[SecretRotation | None, Body()] = None,
) -> Response:
    """A new signing secret; the old one keeps signing too for ``grace_seconds``."""
    integrations.check_app_path(principal, customer_id, app_id)
    grace = (body or SecretRotation()).grace_seconds
    secret = await integrations.rotate_webhook_secret(session, state.vault, app_id, grace)
    return resource_ok({"secret": secret, "previous_secret_valid_for_seconds": grace})
