"""``/api/v1``: the voice-bot platform's telephony admin, exactly seed 04's table."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response

from exoplane.db import Session
from exoplane.idempotency import fingerprint, run_once_detached
from exoplane.inputs import Int64, PathId
from exoplane.integrations.calls import service as calls
from exoplane.integrations.calls.schemas import (
    LIVE_EVENTS,
    PlatformCallDetail,
    PlatformCallPage,
    live_response,
    platform_call_view,
    timeline_view,
)
from exoplane.responses import JSONBytesResponse
from exoplane.state import State
from exoplane.voicebot import service
from exoplane.voicebot.auth import AdminAuth, SuperAdminAuth
from exoplane.voicebot.schemas import (
    AuditPage,
    CallOption,
    DidCreate,
    DidDeleted,
    DidPage,
    DidUpdate,
    DidView,
    Fleet,
    FleetSettings,
    IntegrationStatus,
    IntegrationUpdate,
    IntegrationView,
    PlaceTestCall,
    TestCallPlaced,
    audit_view,
    call_option,
)

router = APIRouter(prefix="/api/v1", tags=["voice-bot admin"])
EXOTEL = "/integrations/exotel"


@router.get(EXOTEL, response_model=IntegrationView)
async def get_integration(state: State, session: Session, _operator: SuperAdminAuth) -> Response:
    """The Exotel integration: account, base URL, whether credentials are set, and DIDs."""
    return JSONBytesResponse(
        await service.integration_view(session, state.settings, state.capabilities)
    )


@router.put(EXOTEL, response_model=IntegrationView)
async def put_integration(
    state: State, session: Session, operator: SuperAdminAuth, body: IntegrationUpdate
) -> Response:
    """Store credentials; they are never shown again. Omitted secrets keep their value."""
    await service.update_integration(session, state.vault, state.settings, operator, body)
    return JSONBytesResponse(
        await service.integration_view(session, state.settings, state.capabilities)
    )


@router.get(EXOTEL + "/status", response_model=IntegrationStatus)
async def get_integration_status(state: State, session: Session, _operator: AdminAuth) -> Response:
    """Whether Exotel credentials are configured, with the account and base URL: what an
    admin may read of the integration (never a secret)."""
    return JSONBytesResponse(await service.integration_status(session, state.settings))


@router.get(EXOTEL + "/dids", response_model=DidPage)
async def list_dids(
    state: State,
    session: Session,
    _operator: AdminAuth,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: Annotated[
        str | None, Query(max_length=20, description="A next_after: the number to continue after")
    ] = None,
) -> Response:
    """DIDs in order of number, a page at a time, with their derived websocket_url."""
    page, next_after = await service.did_page(
        session, state.settings, state.capabilities, after=after, limit=limit
    )
    return JSONBytesResponse({"dids": page, "next_after": next_after})


@router.post(EXOTEL + "/dids", status_code=201, response_model=DidView)
async def add_did(
    state: State, session: Session, operator: SuperAdminAuth, body: DidCreate
) -> Response:
    """Add a DID (ExoPhone), optionally with its bot and flow."""
    did = await service.add_did(session, state.settings, state.capabilities, operator, body)
    return JSONBytesResponse(did, status_code=201)


@router.put(EXOTEL + "/dids/{did_id}", response_model=DidView)
async def update_did(
    state: State, session: Session, operator: SuperAdminAuth, did_id: PathId, body: DidUpdate
) -> Response:
    """Change a DID's label, bot or flow."""
    return JSONBytesResponse(
        await service.update_did(
            session, state.settings, state.capabilities, operator, did_id, body
        )
    )


@router.delete(EXOTEL + "/dids/{did_id}", response_model=DidDeleted)
async def delete_did(session: Session, operator: SuperAdminAuth, did_id: PathId) -> Response:
    """Remove a DID."""
    await service.delete_did(session, operator, did_id)
    return JSONBytesResponse({"id": did_id, "deleted": True})


@router.get(EXOTEL + "/test-call-options", response_model=list[CallOption])
async def list_test_call_options(session: Session, _operator: AdminAuth) -> Response:
    """The DIDs a test call can use, with their modes (flow, stream), nothing sensitive."""
    dids = await service.call_options(session)
    return JSONBytesResponse([call_option(did) for did in dids])


@router.post(EXOTEL + "/dids/{did_id}/test-call", response_model=TestCallPlaced)
async def place_test_call(
    state: State,
    operator: AdminAuth,
    did_id: PathId,
    body: PlaceTestCall,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Ring ``to_number`` and bridge them into the DID's flow, or (``mode: stream``) straight
    to its bot with Exotel's Connect Voice AI."""

    async def place() -> tuple[int, Any]:
        answer = await service.place_test_call(
            state.reader,
            state.sessions,
            state.vault,
            state.settings,
            state.capabilities,
            state.exotel,
            did_id,
            body.to_number,
            body.mode,
        )
        return 200, answer

    outcome = await run_once_detached(
        state.sessions,
        state.vault,
        principal=operator.key,
        key=idempotency_key,
        request_hash=fingerprint("POST", f"test-call/{did_id}", body.model_dump()),
        action=place,
    )
    response = JSONBytesResponse(outcome.data, status_code=outcome.status)
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("/settings", response_model=Fleet)
async def get_settings(state: State, session: Session, _operator: AdminAuth) -> Response:
    """Fleet settings: ``core_fleet``, the media-core base URLs."""
    return JSONBytesResponse({"core_fleet": await service.core_fleet(session, state.settings)})


@router.put("/settings", response_model=Fleet)
async def put_settings(
    state: State, session: Session, operator: SuperAdminAuth, body: FleetSettings
) -> Response:
    """Replace ``core_fleet``; every DID's websocket_url follows its first entry."""
    fleet = await service.set_core_fleet(session, state.settings, operator, body.core_fleet)
    return JSONBytesResponse({"core_fleet": fleet})


@router.get("/audit", response_model=AuditPage)
async def audit_log(
    request: Request,
    session: Session,
    _operator: SuperAdminAuth,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[Int64 | None, Query(ge=1)] = None,
    operator: Annotated[
        str | None, Query(max_length=320, description="Only this operator's (email)")
    ] = None,
    action: Annotated[
        str | None, Query(max_length=60, description="Only this action, or actions it starts")
    ] = None,
) -> Response:
    """Who changed credentials, DIDs and settings, newest first; never secret values."""
    page, next_cursor = await service.audit_log(
        session, cursor=cursor, limit=limit, operator=operator, action=action
    )
    return JSONBytesResponse(
        {
            "entries": [audit_view(entry) for entry in page],
            "next_cursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


@router.get("/calls", response_model=PlatformCallPage)
async def list_calls(
    session: Session,
    _operator: AdminAuth,
    status: Literal["queued", "ringing", "in-progress", "completed", "failed"] | None = None,
    direction: Literal["inbound", "outbound"] | None = None,
    number: Annotated[
        str | None, Query(max_length=100, description="Calls from or to this number")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Calls started at or after (ISO 8601; UTC if no offset)")
    ] = None,
    until: Annotated[datetime | None, Query(description="Calls started before")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[Int64 | None, Query(ge=1)] = None,
) -> Response:
    """Test calls and bot streams, newest first, filtered by status, direction, number and
    start time."""
    page, next_cursor = await calls.list_platform_calls(
        session,
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
            "calls": [platform_call_view(call) for call in page],
            "has_more": next_cursor is not None,
            "next_cursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


@router.get("/calls/{call_sid}", response_model=PlatformCallDetail)
async def get_call(
    session: Session, _operator: AdminAuth, call_sid: Annotated[str, Path(max_length=100)]
) -> Response:
    """A test call or bot stream with its timeline: every step recorded of it, oldest first."""
    call, timeline = await calls.platform_call_timeline(session, call_sid)
    return JSONBytesResponse({**platform_call_view(call), "timeline": timeline_view(timeline)})


@router.get(
    "/calls/{call_sid}/events",
    response_class=Response,
    responses={200: LIVE_EVENTS},
)
async def follow_call(
    state: State,
    _operator: AdminAuth,
    call_sid: Annotated[str, Path(max_length=100)],
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=100,
            description="The id of the last event received: the stream resumes just after it",
        ),
    ] = None,
) -> Response:
    """A test call's or bot stream's timeline entries as Server-Sent Events while it lasts."""
    entries = await calls.follow_call(state.sessions, None, call_sid, last_event_id=last_event_id)
    return live_response(entries)
