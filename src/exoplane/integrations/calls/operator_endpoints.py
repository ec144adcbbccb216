"""``/api/v1/apps/{app_id}/calls/...``: any app's call log, a call's timeline and following
it live, for operators (the app itself reads them under ``/v2/integrations``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from exoplane.db import Session
from exoplane.inputs import PathId
from exoplane.integrations.calls import service
from exoplane.integrations.calls.endpoints import CallStatus, LastEventId
from exoplane.integrations.calls.schemas import (
    LIVE_EVENTS,
    CallDetail,
    CallPage,
    call_timeline_view,
    call_view,
    live_response,
)
from exoplane.responses import JSONBytesResponse
from exoplane.state import State
from exoplane.voicebot.auth import AdminAuth

router = APIRouter(prefix="/api/v1/apps/{app_id}", tags=["calls (operators)"])

CallSid = Annotated[str, Path(max_length=100)]


@router.get("/calls", response_model=CallPage)
async def list_calls(
    session: Session,
    _operator: AdminAuth,
    app_id: PathId,
    status: CallStatus | None = None,
    direction: Literal["inbound", "outbound"] | None = None,
    number: Annotated[
        str | None, Query(max_length=100, description="Calls from or to this number")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Calls started at or after (ISO 8601; UTC if no offset)")
    ] = None,
    until: Annotated[datetime | None, Query(description="Calls started before")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """The app's calls, newest first, filtered by status, direction, number and start time."""
    page, next_cursor = await service.list_calls(
        session,
        app_id,
        status=status,
        direction=direction,
        number=number,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return JSONBytesResponse(
        {
            "calls": [call_view(call, service.outcome(call)) for call in page],
            "has_more": next_cursor is not None,
            "next_cursor": next_cursor,
        }
    )


@router.get("/calls/{call_sid}", response_model=CallDetail)
async def get_call(
    session: Session, _operator: AdminAuth, app_id: PathId, call_sid: CallSid
) -> Response:
    """One of the app's calls with its timeline, oldest first."""
    found = await service.call_timeline(session, app_id, call_sid)
    return JSONBytesResponse(call_timeline_view(found, service.outcome(found.call)))


@router.get("/calls/{call_sid}/events", response_class=Response, responses={200: LIVE_EVENTS})
async def follow_call(
    state: State,
    _operator: AdminAuth,
    app_id: PathId,
    call_sid: CallSid,
    last_event_id: LastEventId = None,
) -> Response:
    """The call's timeline entries as Server-Sent Events while the call lasts, then ``end``."""
    entries = await service.follow_call(
        state.sessions, app_id, call_sid, last_event_id=last_event_id
    )
    return live_response(entries)
