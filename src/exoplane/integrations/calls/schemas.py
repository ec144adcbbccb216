"""What Exotel sends to the call hooks, and what the routing URL answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from sse_starlette import EventSourceResponse, ServerSentEvent

from exoplane.exotel.numbers import normalise_phone_number
from exoplane.responses import resource_time

if TYPE_CHECKING:
    from exoplane.integrations.calls.service import (
        CallTimeline,
        LiveEntry,
        PlatformCall,
        TimelineEntry,
    )
    from exoplane.models import Call


@dataclass(frozen=True, slots=True)
class CallParameters:
    """The parameters Exotel's applets and callbacks send (exotel-facts §3.5, §3.7).

    Exotel spells several of them two ways (``CallFrom``/``From``); both are read.
    """

    call_sid: str
    call_from: str
    call_to: str
    dial_whom: str
    dial_call_status: str
    duration: int | None
    recording_url: str
    status: str
    event_type: str

    @classmethod
    def read(cls, values: Mapping[str, Any]) -> CallParameters:
        def first(*names: str) -> str:
            for name in names:
                value = values.get(name)
                if value not in (None, ""):
                    return str(value).strip().strip('"')
            return ""

        duration = first("ConversationDuration", "DialCallDuration", "Duration")
        return cls(
            call_sid=first("CallSid"),
            call_from=first("CallFrom", "From"),
            call_to=first("CallTo", "To"),
            dial_whom=first("DialWhomNumber"),
            dial_call_status=first("DialCallStatus").lower(),
            duration=_seconds(duration),
            recording_url=first("RecordingUrl"),
            status=first("Status", "CallStatus").lower(),
            event_type=first("EventType").lower(),
        )


def _seconds(value: str) -> int | None:
    """A duration Exotel sent, or None if it is not a count of seconds a column can hold."""
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        return None
    return int(value)


def connect_response(
    numbers: list[str], caller_id: str, *, record: bool, passthru_url: str
) -> dict[str, Any]:
    """Exotel's programmable-Connect (dynamic URL) answer: whom to dial, and how."""
    return {
        "fetch_after_attempt": False,
        "destination": {"numbers": numbers},
        "outgoing_phone_number": caller_id,
        "record": record,
        "recording_channels": "dual",
        "max_ringing_duration": 45,
        "parallel_ringing": {
            "activate": len(numbers) > 1,
            "max_parallel_attempts": max(1, len(numbers)),
        },
        "dial_passthru_event_url": passthru_url,
    }


class OutboundCall(BaseModel):
    """``POST /call/outbound_call``, as Exotel's browser SDK sends it (exotel-facts §1.9)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    app_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    user_id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    to: Annotated[str, StringConstraints(max_length=40), AfterValidator(normalise_phone_number)]
    customer_id: str | None = None


# --- response shapes (for the OpenAPI document) ---------------------------------------------


class Destination(BaseModel):
    numbers: list[str]


class ParallelRinging(BaseModel):
    activate: bool
    max_parallel_attempts: int


class ConnectAnswer(BaseModel):
    """What the Connect applet's dynamic URL answers (Exotel's format, no envelope)."""

    fetch_after_attempt: bool
    destination: Destination
    outgoing_phone_number: str
    record: bool
    recording_channels: str
    max_ringing_duration: int
    parallel_ringing: ParallelRinging
    dial_passthru_event_url: str


class PlacedCall(BaseModel):
    CallSid: str
    AppUserID: str
    FromNumber: str


class FlowUrls(BaseModel):
    connect_applet_url: str
    passthru_urls: dict[str, str] = Field(description="By hook type")


# --- the call log ---------------------------------------------------------------------------


def call_view(call: Call, outcome: str) -> dict[str, Any]:
    return {
        # A call Exotel refused has no CallSid: it goes by exoplane's own id for it.
        "call_sid": call.call_sid or call.id,
        "from": call.from_number,
        "to": call.to_number,
        "direction": call.direction,
        "status": call.status,
        "started_at": resource_time(call.created_at),
        "duration": call.duration,
        "agent": call.user_id,
        "outcome": outcome,
    }


def timeline_view(entries: list[TimelineEntry]) -> list[dict[str, Any]]:
    return [entry_view(entry) for entry in entries]


def entry_view(entry: TimelineEntry) -> dict[str, Any]:
    return {"at": resource_time(entry.at), "kind": entry.kind, "detail": entry.detail}


# How the live routes document their answer.
LIVE_EVENTS: dict[str, Any] = {
    "description": "Server-Sent Events: each timeline entry as it is recorded, then `end`",
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "string",
                "description": "Events whose data is a timeline entry ({at, kind, detail}) "
                "and whose id resumes after it (Last-Event-ID); one `end` event last",
            }
        }
    },
}

# A comment line this often keeps proxies from closing a quiet stream.
LIVE_PING_SECONDS = 15.0


def live_response(entries: AsyncIterator[LiveEntry]) -> EventSourceResponse:
    """A followed call as Server-Sent Events: each entry a ``message`` whose ``id`` resumes
    after it, then one ``end`` event once the call has ended (so a browser's EventSource,
    which reconnects whenever a stream closes, knows to stop)."""

    async def events() -> AsyncIterator[ServerSentEvent]:
        async for live in entries:
            data = orjson.dumps(entry_view(live.entry)).decode()
            yield ServerSentEvent(data=data, id=str(live.cursor))
        yield ServerSentEvent(data="{}", event="end")

    return EventSourceResponse(events(), ping=LIVE_PING_SECONDS)


def call_timeline_view(found: CallTimeline, outcome: str) -> dict[str, Any]:
    return {
        **call_view(found.call, outcome),
        "recording_url": found.call.recording_url,
        "timeline": timeline_view(found.timeline),
    }


def platform_call_view(call: PlatformCall) -> dict[str, Any]:
    return {
        "call_sid": call.call_sid,
        "from": call.from_number,
        "to": call.to_number,
        "direction": call.direction,
        "status": call.status,
        "started_at": resource_time(call.started_at),
        "duration": call.duration,
        "agent": call.agent,
        "outcome": call.outcome,
    }


class CallView(BaseModel):
    call_sid: str
    from_: str = Field(alias="from")
    to: str
    direction: str = Field(description="inbound or outbound")
    status: str
    started_at: str
    duration: int | None = Field(description="Seconds, once the call has ended")
    agent: str | None = Field(description="The user_id of the agent (or the bot) on the call")
    outcome: str = Field(description="answered, missed, busy, failed, canceled or ongoing")


class TimelineEntryView(BaseModel):
    at: str
    kind: str
    detail: dict[str, Any]


class CallDetail(CallView):
    recording_url: str | None
    timeline: list[TimelineEntryView]


class CallPage(BaseModel):
    calls: list[CallView]
    has_more: bool
    next_cursor: str | None


class PlatformCallDetail(CallView):
    timeline: list[TimelineEntryView]


class PlatformCallPage(BaseModel):
    calls: list[CallView]
    has_more: bool
    next_cursor: str | None
