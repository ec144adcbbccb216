"""``/console/webhooks`` and ``/console/calls``: every app's webhook deliveries, replaying
them, and the call logs with each call's timeline, live. Each page calls the service its
API twin calls (named in each docstring)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from exoplane.console import traffic
from exoplane.console.auth import AdminConsole
from exoplane.console.routes import field_errors, form_of, page
from exoplane.console.templates import CONSOLE, live_page_response, redirect
from exoplane.db import Session
from exoplane.errors import BadRequest
from exoplane.inputs import Int64
from exoplane.integrations.calls import service as calls
from exoplane.integrations.calls.endpoints import CallStatus, LastEventId
from exoplane.state import State
from exoplane.webhooks import operators
from exoplane.webhooks.endpoints import EventName
from exoplane.webhooks.operator_endpoints import ReplayCreate
from exoplane.webhooks.schemas import attempt_view, operator_delivery_view
from exoplane.webhooks.service import EVENT_TARGETS, STATUSES

router = APIRouter(prefix=CONSOLE, include_in_schema=False)

PAGE_SIZE = 50
REPLAYS_SHOWN = 5
# How often a running replay's page asks for its progress again.
REPLAY_REFRESH_SECONDS = 1
AppId = Annotated[str | None, Query(max_length=36)]
When = Annotated[datetime | None, Query()]
CallSid = Annotated[str, Path(max_length=100)]


# --- webhooks -----------------------------------------------------------------------------


@router.get("/webhooks")
async def webhooks(
    request: Request,
    state: State,
    session: Session,
    signed: AdminConsole,
    app: AppId = None,
    event: Annotated[EventName | Literal[""] | None, Query()] = None,
    status: Annotated[Literal["pending", "succeeded", "failed", ""] | None, Query()] = None,
    since: Annotated[datetime | Literal[""] | None, Query()] = None,
    until: Annotated[datetime | Literal[""] | None, Query()] = None,
    cursor: Annotated[Int64 | None, Query(ge=1)] = None,
) -> Response:
    """Every app's deliveries, filtered, with charts of the last 24 hours and the latest
    replays; twins: ``GET /api/v1/webhooks/deliveries``, ``/replays``, ``/api/v1/stats``."""
    chosen = operators.delivery_filter(
        app_id=app or None,
        event_type=event or None,
        status=status or None,
        since=since or None,
        until=until or None,
    )
    rows, next_cursor = await operators.list_all_deliveries(
        session, chosen, cursor=cursor, limit=PAGE_SIZE
    )
    filters = {
        "app": app or "",
        "event": event or "",
        "status": status or "",
        "since": request.query_params.get("since", ""),
        "until": request.query_params.get("until", ""),
    }
    return page(
        request,
        signed,
        "webhooks.html",
        title="Webhooks",
        deliveries=[operator_delivery_view(row) for row in rows],
        next_cursor=next_cursor,
        first_page=cursor is None,
        filters=filters,
        apps=await operators.app_choices(session),
        events=list(EVENT_TARGETS),
        statuses=STATUSES,
        charts=await traffic.webhook_charts_now(session, state),
        replays=await operators.latest_replays(session, REPLAYS_SHOWN),
    )


@router.get("/webhooks/deliveries/{delivery_id}")
async def delivery(
    request: Request, session: Session, signed: AdminConsole, delivery_id: Int64
) -> Response:
    """One delivery: its payload and every attempt; twin: ``GET
    /api/v1/webhooks/deliveries/{delivery_id}``."""
    detail = await operators.any_delivery(session, delivery_id)
    return page(
        request,
        signed,
        "delivery.html",
        title=f"Delivery {delivery_id}",
        delivery=detail.delivery,
        payload=traffic.pretty_payload(detail.event.payload),
        attempts=[attempt_view(attempt) for attempt in detail.attempts],
    )


@router.post("/webhooks/deliveries/{delivery_id}/replay")
async def replay_delivery(session: Session, signed: AdminConsole, delivery_id: Int64) -> Response:
    """Send one delivery again; twin: ``POST /api/v1/webhooks/deliveries/{delivery_id}/replay``."""
    await operators.replay_delivery(session, signed.operator, delivery_id)
    return redirect(f"{CONSOLE}/webhooks/deliveries/{delivery_id}?done=delivery_replayed")


@router.post("/webhooks/replays")
async def start_replay(request: Request, session: Session, signed: AdminConsole) -> Response:
    """Replay every failed delivery of the list's filter; twin: ``POST
    /api/v1/webhooks/replays``."""
    form = await form_of(request)
    fields = {"app": "app_id", "event": "event", "since": "since", "until": "until"}
    try:
        body = ReplayCreate.model_validate(
            {name: form[key] for key, name in fields.items() if form.get(key, "").strip()}
        )
    except ValidationError as exc:
        field, message = next(iter(field_errors(exc).items()))
        raise BadRequest(message, field=field) from exc
    chosen = operators.delivery_filter(
        app_id=body.app_id, event_type=body.event, since=body.since, until=body.until
    )
    replay = await operators.start_replay(session, signed.operator, chosen)
    return redirect(f"{CONSOLE}/webhooks/replays/{replay.id}")


@router.get("/webhooks/replays/{replay_id}")
async def replay(
    request: Request, session: Session, signed: AdminConsole, replay_id: Int64
) -> Response:
    """A replay's progress; twin: ``GET /api/v1/webhooks/replays/{replay_id}``."""
    found = await operators.get_replay(session, replay_id)
    return page(
        request,
        signed,
        "replay.html",
        title=f"Replay {replay_id}",
        replay=found,
        refresh=REPLAY_REFRESH_SECONDS if found.status == "running" else None,
    )


@router.post("/webhooks/replays/{replay_id}/cancel")
async def cancel_replay(session: Session, signed: AdminConsole, replay_id: Int64) -> Response:
    """Stop a running replay; twin: ``POST /api/v1/webhooks/replays/{replay_id}/cancel``."""
    await operators.cancel_replay(session, signed.operator, replay_id)
    return redirect(f"{CONSOLE}/webhooks/replays/{replay_id}?done=replay_cancelled")


# --- calls --------------------------------------------------------------------------------


@router.get("/calls")
async def call_log(
    request: Request,
    session: Session,
    signed: AdminConsole,
    app: AppId = None,
    status: Annotated[CallStatus | Literal[""] | None, Query()] = None,
    direction: Annotated[Literal["inbound", "outbound", ""] | None, Query()] = None,
    number: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[datetime | Literal[""] | None, Query()] = None,
    until: Annotated[datetime | Literal[""] | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """An app's calls, or without an app the voice-bot platform's test calls and bot
    streams; twins: ``GET /api/v1/apps/{app_id}/calls`` and ``GET /api/v1/calls``."""
    found = await traffic.call_log(
        session,
        app_id=app or None,
        status=status or None,
        direction=direction or None,
        number=number or None,
        since=since or None,
        until=until or None,
        cursor=cursor or None,
        limit=PAGE_SIZE,
    )
    filters = {
        "app": app or "",
        "status": status or "",
        "direction": direction or "",
        "number": number or "",
        "since": request.query_params.get("since", ""),
        "until": request.query_params.get("until", ""),
    }
    return page(
        request,
        signed,
        "calls.html",
        title="Calls",
        calls=found.calls,
        next_cursor=found.next_cursor,
        first_page=cursor is None,
        filters=filters,
        apps=await operators.app_choices(session),
        statuses=calls.CALL_STATUSES,
    )


@router.get("/calls/{call_sid}")
async def call(
    request: Request, session: Session, signed: AdminConsole, call_sid: CallSid, app: AppId = None
) -> Response:
    """A call's timeline, live while it lasts; twins: ``GET
    /api/v1/apps/{app_id}/calls/{call_sid}`` and ``GET /api/v1/calls/{call_sid}``."""
    found = await traffic.call_detail(session, app or None, call_sid)
    return page(
        request,
        signed,
        "call_timeline.html",
        title=f"Call {call_sid}",
        call=found,
        steps=traffic.steps(found.timeline),
        summary=traffic.summary(found.timeline),
    )


@router.get("/calls/{call_sid}/events")
async def call_events(
    state: State,
    _signed: AdminConsole,
    call_sid: CallSid,
    app: AppId = None,
    last_event_id: LastEventId = None,
) -> Response:
    """The call's timeline entries as Server-Sent Events, then ``end``; twins: ``GET
    /api/v1/apps/{app_id}/calls/{call_sid}/events`` and ``/api/v1/calls/{call_sid}/events``."""
    entries = await calls.follow_call(
        state.sessions, app or None, call_sid, last_event_id=last_event_id
    )
    return live_page_response(entries)
