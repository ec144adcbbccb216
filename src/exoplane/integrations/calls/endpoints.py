"""``/v2/integrations/call/...``: the URLs Exotel's flows call, and where to find them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response

from exoplane.capabilities import PARAMETER
from exoplane.db import Session
from exoplane.errors import BadRequest
from exoplane.inputs import PathId
from exoplane.integrations import service as integrations
from exoplane.integrations.auth import AppAuth, TokenAuth
from exoplane.integrations.calls import placing, service
from exoplane.integrations.calls.errors import NestedErrorRoute
from exoplane.integrations.calls.schemas import (
    LIVE_EVENTS,
    CallDetail,
    CallPage,
    CallParameters,
    ConnectAnswer,
    FlowUrls,
    OutboundCall,
    PlacedCall,
    call_timeline_view,
    call_view,
    live_response,
)
from exoplane.openapi import Legacy, Resource
from exoplane.responses import JSONBytesResponse, legacy_ok, resource_ok
from exoplane.routing import PlainRoute
from exoplane.state import State, app_state

router = APIRouter(prefix="/v2/integrations", tags=["calls"])

Sig = Annotated[str | None, Query(alias=PARAMETER, description="The URL's capability token")]


@router.get("/call/route/{app_id}", response_model=ConnectAnswer)
async def route_call(
    request: Request, state: State, session: Session, app_id: PathId, sig: Sig = None
) -> Response:
    """The Connect applet's dynamic URL: whom to dial for this call, in Exotel's format."""
    params = CallParameters.read(request.query_params)
    answer = await service.route(
        session, state.vault, state.settings, state.capabilities, app_id, sig, params
    )
    return JSONBytesResponse(answer)


# Documented by hand: the hook reads its parameters itself.
_HOOK_PARAMETERS = [
    {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}},
    {
        "name": "type",
        "in": "query",
        "required": True,
        "description": "popup, incomingcallhungup or missedcall",
        "schema": {"type": "string", "enum": list(service.HOOK_TYPES)},
    },
    {
        "name": PARAMETER,
        "in": "query",
        "required": True,
        "description": "The URL's capability token",
        "schema": {"type": "string"},
    },
]


async def inbound_call(request: Request) -> Response:
    """The Passthru hook: records the call event and queues the matching webhook."""
    # Exotel calls this several times for every call, so it is a PlainRoute; the service
    # checks each parameter and names the one that is wrong.
    query = request.query_params
    state = app_state(request)
    await service.inbound_hook(
        state.hooks,
        state.capabilities,
        request.path_params["app_id"],
        query.get(PARAMETER),
        query.get("type", ""),
        CallParameters.read(query),
    )
    return legacy_ok(request.scope, "Success")


router.add_api_route(
    "/call/inbound_call/{app_id}",
    inbound_call,
    methods=["GET"],
    response_model=Legacy[str],
    openapi_extra={"parameters": _HOOK_PARAMETERS},
    route_class_override=PlainRoute,
)


@router.post("/call/status/{call_id}", response_model=Legacy[str])
async def call_status(
    request: Request, state: State, session: Session, call_id: PathId, sig: Sig = None
) -> Response:
    """Exotel's StatusCallback (form or JSON) for a call placed through exoplane."""
    params = CallParameters.read(await _callback_fields(request))
    await service.status_callback(session, state.vault, state.capabilities, call_id, sig, params)
    return legacy_ok(request.scope, "Success")


async def _callback_fields(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, nesting too deep
            raise BadRequest("Request body is not valid JSON", code="validation_error") from exc
        return body if isinstance(body, dict) else {}
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def outbound_call(
    request: Request, state: State, principal: TokenAuth, body: OutboundCall
) -> Response:
    """Click-to-call: ring the agent's device, then ``to``; answers the Exotel CallSid."""
    data = await placing.place_outbound_call(
        state.reader,
        state.sessions,
        state.vault,
        state.settings,
        state.capabilities,
        state.exotel,
        principal,
        body,
    )
    return legacy_ok(request.scope, data)


# Click-to-call fails in Exotel's nested error form, which the older jQuery SDK reads.
router.add_api_route(
    "/call/outbound_call",
    outbound_call,
    methods=["POST"],
    response_model=Legacy[PlacedCall],
    route_class_override=NestedErrorRoute,
)


@router.get("/{customer_id}/apps/{app_id}/flow-urls", response_model=Resource[FlowUrls])
async def flow_urls(
    state: State, principal: AppAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """The URLs to paste into this app's Exotel flow: Connect applet and Passthru hooks."""
    integrations.check_app_path(principal, customer_id, app_id)
    return resource_ok(service.flow_urls(state.settings, state.capabilities, app_id))


CallStatus = Literal[
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "missed",
    "no-answer",
    "busy",
    "failed",
    "canceled",
]


@router.get("/{customer_id}/apps/{app_id}/calls", response_model=Resource[CallPage])
async def list_calls(
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
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
    integrations.check_app_path(principal, customer_id, app_id)
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
    return resource_ok(
        {
            "calls": [call_view(call, service.outcome(call)) for call in page],
            "has_more": next_cursor is not None,
            "next_cursor": next_cursor,
        }
    )


@router.get("/{customer_id}/apps/{app_id}/calls/{call_sid}", response_model=Resource[CallDetail])
async def get_call(
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    call_sid: Annotated[str, Path(max_length=100)],
) -> Response:
    """One call with its timeline: every step recorded of it, oldest first."""
    integrations.check_app_path(principal, customer_id, app_id)
    found = await service.call_timeline(session, app_id, call_sid)
    return resource_ok(call_timeline_view(found, service.outcome(found.call)))


LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=100,
        description="The id of the last event received: the stream resumes just after it",
    ),
]


@router.get(
    "/{customer_id}/apps/{app_id}/calls/{call_sid}/events",
    response_class=Response,
    responses={200: LIVE_EVENTS},
)
async def follow_call(
    state: State,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    call_sid: Annotated[str, Path(max_length=100)],
    last_event_id: LastEventId = None,
) -> Response:
    """The call's timeline entries as Server-Sent Events while the call lasts, then ``end``."""
    integrations.check_app_path(principal, customer_id, app_id)
    entries = await service.follow_call(
        state.sessions, app_id, call_sid, last_event_id=last_event_id
    )
    return live_response(entries)
