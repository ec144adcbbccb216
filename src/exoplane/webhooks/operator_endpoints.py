"""``/api/v1/webhooks/...``: every app's webhook deliveries for operators, replaying one,
and replays of every failed delivery matching a filter."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from exoplane.db import Session
from exoplane.inputs import Int64
from exoplane.responses import JSONBytesResponse
from exoplane.voicebot.auth import AdminAuth
from exoplane.webhooks import operators
from exoplane.webhooks.endpoints import EventName
from exoplane.webhooks.schemas import (
    OperatorDeliveryDetail,
    OperatorDeliveryPage,
    OperatorDeliveryView,
    ReplayList,
    ReplayView,
    operator_delivery_detail_view,
    operator_delivery_view,
    replay_view,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks (operators)"])

AppFilter = Annotated[str | None, Query(max_length=36, description="Only this app's")]
Since = Annotated[
    datetime | None, Query(description="Queued at or after (ISO 8601; UTC if no offset)")
]
Until = Annotated[datetime | None, Query(description="Queued before")]
REPLAYS_LISTED = 20


class ReplayCreate(BaseModel):
    """Which failed deliveries to send again; every part optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str | None = Field(default=None, max_length=36)
    event: EventName | None = None
    since: datetime | None = None
    until: datetime | None = None


@router.get("/deliveries", response_model=OperatorDeliveryPage)
async def list_deliveries(
    session: Session,
    _operator: AdminAuth,
    app: AppFilter = None,
    event: EventName | None = None,
    status: Literal["pending", "succeeded", "failed"] | None = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[Int64 | None, Query(ge=1)] = None,
) -> Response:
    """Every app's webhook deliveries, newest first, filtered by app, event, status and time
    queued. The cursor is a delivery id: pages stay the same while new deliveries arrive."""
    chosen = operators.delivery_filter(
        app_id=app, event_type=event, status=status, since=since, until=until
    )
    page, next_cursor = await operators.list_all_deliveries(
        session, chosen, cursor=cursor, limit=limit
    )
    return JSONBytesResponse(
        {
            "deliveries": [operator_delivery_view(delivery) for delivery in page],
            "has_more": next_cursor is not None,
            "next_cursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


@router.get("/deliveries/{delivery_id}", response_model=OperatorDeliveryDetail)
async def get_delivery(session: Session, _operator: AdminAuth, delivery_id: Int64) -> Response:
    """One delivery of any app, with its payload and every attempt."""
    detail = await operators.any_delivery(session, delivery_id)
    return JSONBytesResponse(
        operator_delivery_detail_view(detail.delivery, detail.event, list(detail.attempts))
    )


@router.post(
    "/deliveries/{delivery_id}/replay", status_code=202, response_model=OperatorDeliveryView
)
async def replay_delivery(session: Session, operator: AdminAuth, delivery_id: Int64) -> Response:
    """Send the delivery again now, with the same event id (receivers de-duplicate on it)."""
    detail = await operators.replay_delivery(session, operator, delivery_id)
    return JSONBytesResponse(operator_delivery_view(detail.delivery), status_code=202)


@router.post("/replays", status_code=202, response_model=ReplayView)
async def start_replay(session: Session, operator: AdminAuth, body: ReplayCreate) -> Response:
    """Send again every delivery matching the filter that has failed by now, in the
    background; follow it with ``GET /api/v1/webhooks/replays/{replay_id}``."""
    chosen = operators.delivery_filter(
        app_id=body.app_id, event_type=body.event, since=body.since, until=body.until
    )
    replay = await operators.start_replay(session, operator, chosen)
    return JSONBytesResponse(replay_view(replay), status_code=202)


@router.get("/replays", response_model=ReplayList)
async def list_replays(session: Session, _operator: AdminAuth) -> Response:
    """The latest replays, newest first."""
    replays = await operators.latest_replays(session, REPLAYS_LISTED)
    return JSONBytesResponse({"replays": [replay_view(replay) for replay in replays]})


@router.get("/replays/{replay_id}", response_model=ReplayView)
async def get_replay(session: Session, _operator: AdminAuth, replay_id: Int64) -> Response:
    """A replay's progress: how many of its deliveries were sent again so far."""
    return JSONBytesResponse(replay_view(await operators.get_replay(session, replay_id)))


@router.post("/replays/{replay_id}/cancel", response_model=ReplayView)
async def cancel_replay(session: Session, operator: AdminAuth, replay_id: Int64) -> Response:
    """Stop a running replay; deliveries it already made due are still sent."""
    return JSONBytesResponse(
        replay_view(await operators.cancel_replay(session, operator, replay_id))
    )
