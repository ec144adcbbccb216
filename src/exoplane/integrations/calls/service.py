"""Call routing and call events: what Exotel's hooks mean, and which webhooks they raise."""

from __future__ import annotations

import asyncio
import functools
import heapq
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.capabilities import PARAMETER, Capabilities
from exoplane.config import Settings
from exoplane.db import Reader, unit_of_work
from exoplane.errors import BadRequest, NotFound, Unauthorized, UpstreamError
from exoplane.exotel.client import (
    DEFAULT_BASE_URL,
    ExotelClient,
    ExotelCredentials,
    ExotelError,
    PlacedCall,
)
from exoplane.exotel.numbers import InvalidPhoneNumber, normalise_phone_number
from exoplane.integrations import service as integrations
from exoplane.integrations.auth import AgentPrincipal, AppPrincipal, Principal
from exoplane.integrations.calls import repository
from exoplane.integrations.calls.schemas import CallParameters, OutboundCall, connect_response
from exoplane.models import Call, CallEvent, User, WebhookAttempt, WebhookDelivery
from exoplane.models.base import utcnow
from exoplane.responses import resource_time
from exoplane.security import Vault, new_id
from exoplane.urls import EXOTEL_API, check_target
from exoplane.webhooks.service import (
    Handoff,
    PendingEvent,
    WebhookTargets,
    emit_many,
    new_event_id,
)

if TYPE_CHECKING:  # the writer calls back into this module
    from exoplane.integrations.calls.writer import HookWriter

HOOK_TYPES = ("popup", "incomingcallhungup", "missedcall")
MISSED_STATUSES = ("no-answer", "busy", "failed", "canceled", "missed")


# --- URLs handed to Exotel ----------------------------------------------------------------


def _url(settings: Settings, path: str, query: dict[str, str]) -> str:
    return f"{settings.public_url.rstrip('/')}/v2/integrations{path}?{urlencode(query)}"


def flow_urls(settings: Settings, capabilities: Capabilities, app_id: str) -> dict[str, Any]:
    """The URLs to paste into an Exotel flow for this app, each carrying its capability."""
    hook_sig = capabilities.sign("hook", app_id)
    return {
        "connect_applet_url": _url(
            settings, f"/call/route/{app_id}", {PARAMETER: capabilities.sign("route", app_id)}
        ),
        "passthru_urls": {
            kind: _url(
                settings, f"/call/inbound_call/{app_id}", {"type": kind, PARAMETER: hook_sig}
            )
            for kind in HOOK_TYPES
        },
    }


def status_callback_url(settings: Settings, capabilities: Capabilities, call: Call) -> str:
    """The StatusCallback URL for one call this system places."""
    sig = capabilities.sign("status", call.app_id, call.id)
    return _url(settings, f"/call/status/{call.id}", {PARAMETER: sig})


def _require(capabilities: Capabilities, sig: str | None, purpose: str, *ids: str) -> None:
    if not capabilities.verify(sig, purpose, *ids):
        raise _invalid_capability()


def _invalid_capability() -> Unauthorized:
    return Unauthorized(
        f"Missing or invalid capability '{PARAMETER}': use the URLs exoplane gave for this "
        "app (GET .../flow-urls)",
        code="invalid_capability",
    )


def _require_call_sid(params: CallParameters) -> None:
    if not params.call_sid:
        raise BadRequest("Query parameter 'CallSid' is required", field="CallSid")


@functools.lru_cache(maxsize=4096)
def _number(raw: str) -> str:
    """The number in E.164 when it parses, else as given; cached, as every hook of a call
    and every call to one ExoPhone carries the same numbers and parsing is costly."""
    try:
        return normalise_phone_number(raw)
    except InvalidPhoneNumber:
        return raw


# --- routing (the Connect applet's dynamic URL) -------------------------------------------


async def route(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    capabilities: Capabilities,
    app_id: str,
    sig: str | None,
    params: CallParameters,
) -> dict[str, Any]:
    """Whom to ring for a call to one of the app's virtual numbers, as Exotel expects.

    Every user owning the called number is rung on the devices they have enabled: the
    PSTN phone, the SIP client, or both in parallel.
    """
    _require(capabilities, sig, "route", app_id)
    if not params.call_to:
        raise BadRequest(
            "Query parameter 'CallTo' (the called ExoPhone) is required", field="CallTo"
        )
    virtual_number = _number(params.call_to)
    users = await repository.users_with_virtual_number(session, app_id, virtual_number)
    if not users:
        raise NotFound(
            f"No user of this app has the virtual number {virtual_number}; map one with "
            "POST /usermapping (VirtualNumber) before routing calls to it",
            code="unknown_virtual_number",
        )
    numbers = [number for user in users for number in destinations(user)]
    if not numbers:
        raise NotFound(
            f"The users with virtual number {virtual_number} have no reachable device: "
            "enable a phone with a number, or the SIP device",
            code="no_reachable_device",
        )
    app_settings = await integrations.app_settings(session, vault, app_id)
    hangup_url = flow_urls(settings, capabilities, app_id)["passthru_urls"]["incomingcallhungup"]
    if params.call_sid:
        entry = {"destinations": numbers}
        await repository.add_call_events(
            session,
            [timeline_entry(app_id, params.call_sid, "routing_answered", entry, utcnow())],
        )
    return connect_response(
        numbers, params.call_to, record=app_settings.recording_enabled, passthru_url=hangup_url
    )


def destinations(user: User) -> list[str]:
    """What Exotel dials for this user, per seed 03's device table."""
    numbers = []
    if user.phone_enabled and user.phone_number:
        numbers.append(user.phone_number)
    if user.sip_enabled:
        numbers.append("sip:" + user.sip_username.split("@", 1)[0])
    return numbers


# --- Passthru hooks -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HookReport:
    """One Passthru report, checked and ready to be written."""

    app_id: str
    virtual_number: str
    hook_type: str
    params: CallParameters
    received_at: datetime


async def inbound_hook(
    hooks: HookWriter,
    capabilities: Capabilities,
    app_id: str,
    sig: str | None,
    hook_type: str,
    params: CallParameters,
) -> None:
    """Record what a Passthru applet reported and raise the matching webhook.

    ``popup``: the call is ringing (``incoming_call``). ``missedcall``: nobody answered
    (``call_missed``). ``incomingcallhungup``: the call ended, answered or not
    (``call_completed`` or ``call_missed``), with ``recording_ready`` when recorded.
    A repeated report of the same fact raises no second event.

    Exotel calls this for every call, so nothing is read here: the app's targets and the
    call's agent are read, and the report written, together with the other hooks arriving
    at the same time (``HookWriter``); the hook is answered once that is committed.
    """
    _require(capabilities, sig, "hook", app_id)
    if hook_type not in HOOK_TYPES:
        raise BadRequest(
            f"Query parameter 'type' must be one of {', '.join(HOOK_TYPES)}", field="type"
        )
    _require_call_sid(params)
    report = HookReport(app_id, _number(params.call_to), hook_type, params, utcnow())
    await hooks.write(report)


async def record_hooks(
    session: AsyncSession,
    vault: Vault,
    reports: Sequence[HookReport],
    handoff: Handoff | None = None,
) -> None:
    """Write the calls, call changes and events of many reports in a few statements.

    Where a call's webhooks go is decided by the settings as this transaction reads them.
    """
    about = {(report.app_id, report.virtual_number) for report in reports}
    known = await repository.hook_contexts(session, about)
    for app_id, virtual_number in sorted(about - known.keys()):
        known[app_id, virtual_number] = await _context_making_settings(
            session, vault, app_id, virtual_number
        )
    contexts = [known[report.app_id, report.virtual_number] for report in reports]
    calls = await repository.add_calls_once(
        session,
        [_call_row(report, context) for report, context in zip(reports, contexts, strict=True)],
    )
    events: list[PendingEvent] = []
    changes: list[dict[str, Any]] = []
    for report, context in zip(reports, contexts, strict=True):
        call = calls[(context.app_id, report.params.call_sid)]
        change = _hook_outcome(report, context, call, events)
        if change is not None:
            changes.append(change)
    await emit_many(session, events, handoff)
    if changes:
        await repository.update_calls(session, changes)
    await repository.add_call_events(
        session,
        [
            timeline_entry(
                context.app_id,
                report.params.call_sid,
                "hook_received",
                {"type": report.hook_type},
                report.received_at,
            )
            for report, context in zip(reports, contexts, strict=True)
        ],
    )


def _call_row(report: HookReport, context: repository.HookContext) -> dict[str, Any]:
    """The call a report is about, as recorded if it is the first report of it."""
    params = report.params
    agent = context.agent_sip_username
    return {
        "id": new_id(),
        "app_id": context.app_id,
        "call_sid": params.call_sid,
        "direction": "inbound",
        "from_number": _number(params.call_from) if params.call_from else "",
        "to_number": params.dial_whom or (f"sip:{agent}" if agent else params.call_to),
        "user_id": context.agent_user_id,
        "status": "ringing",
        "created_at": report.received_at,
        "updated_at": report.received_at,
    }


def _hook_outcome(
    report: HookReport,
    context: repository.HookContext,
    call: repository.CallRecord,
    events: list[PendingEvent],
) -> dict[str, Any] | None:
    """Add the report's events to ``events``; the change to its call, if any."""
    params = report.params
    base = {"call_sid": call.call_sid, "from": call.from_number, "to": call.to_number}
    if report.hook_type == "popup":
        events.append(_event(context, call.call_sid, "incoming_call", base, report.received_at))
        return None
    answered = report.hook_type == "incomingcallhungup" and params.dial_call_status in (
        "completed",
        "answered",
    )
    change: dict[str, Any] = {"id": call.id, "updated_at": report.received_at}
    if answered:
        change.update(status="completed", duration=params.duration)
        payload = {**base, "status": "completed", "duration": params.duration}
        events.append(_event(context, call.call_sid, "call_completed", payload, report.received_at))
    else:
        change["status"] = "missed"
        payload = {**base, "status": params.dial_call_status or "missed"}
        events.append(_event(context, call.call_sid, "call_missed", payload, report.received_at))
    if params.recording_url:
        change["recording_url"] = params.recording_url
        recording = _recording(call.call_sid, params)
        events.append(
            _event(context, call.call_sid, "recording_ready", recording, report.received_at)
        )
    return change


def _event(
    targets: WebhookTargets,
    call_sid: str,
    event_type: str,
    payload: dict[str, Any],
    moment: datetime,
) -> PendingEvent:
    """The event's id is derived from the call and the event type, so the outbox holds
    one of each per call however often (and however concurrently) Exotel reports it."""
    return PendingEvent(
        targets,
        event_type,
        {**payload, "timestamp": resource_time(moment)},
        new_event_id(targets.app_id, call_sid, event_type),
    )


async def _context_making_settings(
    session: AsyncSession, vault: Vault, app_id: str, virtual_number: str
) -> repository.HookContext:
    """For an app that predates settings: made here, in the hook's transaction."""
    settings = await integrations.app_settings(session, vault, app_id)  # 404 if deleted
    users = await repository.users_with_virtual_number(session, app_id, virtual_number)
    return repository.HookContext(
        app_id=app_id,
        popup_url=settings.popup_url,
        missed_call_url=settings.missed_call_url,
        callback_url=settings.callback_url,
        recording_url=settings.recording_url,
        webhook_secret_enc=settings.webhook_secret_enc,
        previous_webhook_secret_enc=settings.previous_webhook_secret_enc,
        previous_webhook_secret_expires_at=settings.previous_webhook_secret_expires_at,
        agent_user_id=users[0].user_id if users else None,
        agent_sip_username=users[0].sip_username if users else None,
    )


async def _emit_once(
    session: AsyncSession,
    targets: WebhookTargets,
    call_sid: str,
    event_type: str,
    payload: dict[str, Any],
) -> None:
    await emit_many(session, [_event(targets, call_sid, event_type, payload, utcnow())])


async def _recording_ready(
    session: AsyncSession, targets: WebhookTargets, call_sid: str, params: CallParameters
) -> None:
    await _emit_once(session, targets, call_sid, "recording_ready", _recording(call_sid, params))


def _recording(call_sid: str, params: CallParameters) -> dict[str, Any]:
    return {
        "call_sid": call_sid,
        "recording_url": params.recording_url,
        "duration": params.duration,
    }


# --- StatusCallback -----------------------------------------------------------------------


async def status_callback(
    session: AsyncSession,
    vault: Vault,
    capabilities: Capabilities,
    call_id: str,
    sig: str | None,
    params: CallParameters,
) -> None:
    """Exotel's StatusCallback for a call placed through exoplane: ``answered`` raises
    ``call_answered``; the terminal report raises ``call_completed`` (and
    ``recording_ready`` when there is a recording)."""
    call = await repository.get_call(session, call_id)
    # An unknown call answers exactly like a bad signature: ids are not to be probed.
    if call is None or not capabilities.verify(sig, "status", call.app_id, call_id):
        raise _invalid_capability()
    if call.call_sid is None:
        # Exotel reports on the call before its answer to Calls/connect has been recorded.
        if not params.call_sid:
            raise BadRequest("Field 'CallSid' is required", field="CallSid")
        call.call_sid = params.call_sid
    call_sid = call.call_sid
    app_settings = await integrations.app_settings(session, vault, call.app_id)
    base = {"call_sid": call_sid, "from": call.from_number, "to": call.to_number}
    if params.event_type == "answered":
        call.status = "in-progress"
        answered = {**base, "status": "answered"}
        await _emit_once(session, app_settings, call_sid, "call_answered", answered)
    else:
        call.status = params.status or "completed"
        call.duration = params.duration
        payload = {**base, "status": call.status, "duration": params.duration}
        await _emit_once(session, app_settings, call_sid, "call_completed", payload)
        if params.recording_url:
            call.recording_url = params.recording_url
            await _recording_ready(session, app_settings, call_sid, params)
    call.updated_at = utcnow()
    reported = "answered" if params.event_type == "answered" else call.status
    await repository.add_call_events(
        session,
        [
            timeline_entry(
                call.app_id, call_sid, "status_callback", {"status": reported}, call.updated_at
            )
        ],
    )


# --- click-to-call ------------------------------------------------------------------------

REGION_BASE_URLS = {"mumbai": "https://api.in.exotel.com", "singapore": "https://api.exotel.com"}


# A placed call's status until Exotel accepts it (or a StatusCallback reports on it).
QUEUED = "queued"


@dataclass(frozen=True, slots=True)
class OutboundCallPlan:
    """A click-to-call checked and ready to place: the call as it will be recorded, and the
    Exotel account and numbers to place it with."""

    call: Call
    credentials: ExotelCredentials
    caller_id: str


async def plan_outbound_call(
    reader: Reader,
    vault: Vault,
    settings: Settings,
    principal: Principal,
    request: OutboundCall,
) -> OutboundCallPlan:
    """Check a click-to-call: the app and agent exist for this token, and the agent has a
    device to ring and a virtual number to call from. Reads only; writes nothing."""
    app_id = request.app_id
    if principal.customer_id != (request.customer_id or principal.customer_id) or (
        isinstance(principal, AppPrincipal | AgentPrincipal) and principal.app_id != app_id
    ):
        raise NotFound(f"No app {app_id} for this token", code="app_not_found")
    if isinstance(principal, AgentPrincipal) and principal.user_id != request.user_id:
        # An agent token calls as its own user; the others look exactly like missing ones.
        raise NotFound(f"No user {request.user_id!r} in app {app_id}", code="user_not_found")
    caller = await repository.caller(reader, app_id, request.user_id)
    if caller is None or caller.customer_id != principal.customer_id:
        raise NotFound(f"No user {request.user_id!r} in app {app_id}", code="user_not_found")
    first = _agent_leg(caller)
    if not caller.virtual_number:
        raise BadRequest(
            f"User {request.user_id!r} has no VirtualNumber to call from; set one first",
            field="user_id",
        )
    now = utcnow()
    call = Call(
        id=new_id(),
        app_id=app_id,
        call_sid=None,
        direction="outbound",
        from_number=first,
        to_number=request.to,
        user_id=request.user_id,
        status=QUEUED,
        created_at=now,
        updated_at=now,
    )
    credentials = ExotelCredentials(
        caller.account_sid,
        vault.decrypt(caller.api_key_enc),
        vault.decrypt(caller.api_token_enc),
        _base_url(settings, caller.exotel_domain),
    )
    if not settings.allow_private_networks:
        await check_target(
            credentials.api_base_url, "api_base_url", EXOTEL_API, allow_private=False
        )
    return OutboundCallPlan(call, credentials, caller.virtual_number)


def record_call_intent(session: AsyncSession, plan: OutboundCallPlan) -> None:
    """The call about to be placed, so its StatusCallbacks find it however early they come."""
    repository.add_call(session, plan.call)


async def dial(
    exotel: ExotelClient, settings: Settings, capabilities: Capabilities, plan: OutboundCallPlan
) -> PlacedCall:
    """Ask Exotel to ring the agent's leg, then the called number."""
    call = plan.call
    try:
        return await exotel.connect_two_numbers(
            plan.credentials,
            first=call.from_number,
            second=call.to_number,
            caller_id=plan.caller_id,
            custom_field=f"exoplane:{call.id}",
            status_callback=status_callback_url(settings, capabilities, call),
        )
    except ExotelError as exc:
        raise UpstreamError(exc.message) from exc


async def record_placed(session: AsyncSession, call: Call, placed: PlacedCall) -> None:
    """Exotel accepted the call: its CallSid, and its status unless a StatusCallback has
    already reported a newer one."""
    now = utcnow()
    await repository.settle_placed_call(
        session,
        call.id,
        call_sid=placed.call_sid,
        status=placed.provider_status,
        while_status=QUEUED,
        at=now,
    )
    detail = {"from": call.from_number, "to": call.to_number, "status": placed.provider_status}
    entry = timeline_entry(call.app_id, placed.call_sid, "call_placed", detail, now)
    await repository.add_call_events(session, [entry])


async def record_not_placed(session: AsyncSession, call: Call, message: str) -> None:
    """Exotel refused the call or did not answer: ``failed``, unless a StatusCallback says
    it was placed after all. Such a call has no CallSid: its timeline is kept under
    exoplane's own id for it (a UUID, which no Exotel CallSid looks like), and the call log
    lists it under that id."""
    await repository.settle_placed_call(
        session, call.id, call_sid=None, status="failed", while_status=QUEUED, at=utcnow()
    )
    detail = {"from": call.from_number, "to": call.to_number, "message": message}
    entry = timeline_entry(call.app_id, call.id, "call_refused", detail, utcnow())
    await repository.add_call_events(session, [entry])


def _agent_leg(caller: repository.Caller) -> str:
    if caller.sip_enabled:
        return "sip:" + caller.sip_username.split("@", 1)[0]
    if caller.phone_enabled and caller.phone_number:
        return caller.phone_number
    raise BadRequest(
        "The agent has no device to ring: enable the SIP device, or a phone with a number",
        code="no_reachable_device",
        field="user_id",
    )


def _base_url(settings: Settings, domain: str) -> str:
    """The configured upstream when it was changed (the sandbox), else the app's region."""
    if settings.exotel_api_base_url.rstrip("/") != DEFAULT_BASE_URL:
        return settings.exotel_api_base_url
    return REGION_BASE_URLS.get(domain, DEFAULT_BASE_URL)


# --- the call log and each call's timeline --------------------------------------------------


def timeline_entry(
    app_id: str | None, call_sid: str, kind: str, detail: dict[str, Any], at: datetime
) -> dict[str, Any]:
    """A row of ``call_events``: one step of a call, with a small detail object."""
    return {
        "app_id": app_id,
        "call_sid": call_sid,
        "kind": kind,
        "detail": orjson.dumps(detail).decode(),
        "at": at,
    }


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str
    detail: dict[str, Any]


async def record_platform_steps(
    sessions: async_sessionmaker[AsyncSession], call_sid: str, entries: Sequence[TimelineEntry]
) -> None:
    """Steps of a call of the voice-bot platform (a test call, a bot stream), which belongs
    to no app, in one statement and a unit of work of their own: a stream writes what it
    kept in memory once it has closed, with no request around it."""
    rows = [timeline_entry(None, call_sid, e.kind, e.detail, e.at) for e in entries]
    async with unit_of_work(sessions) as session:
        await repository.add_call_events(session, rows)


@dataclass(frozen=True, slots=True)
class CallTimeline:
    call: Call
    timeline: list[TimelineEntry]


# The one word a call's status comes to.
OUTCOMES = {
    "completed": "answered",
    "missed": "missed",
    "no-answer": "missed",
    "busy": "busy",
    "failed": "failed",
    "canceled": "canceled",
}
CALL_STATUSES = (QUEUED, "ringing", "in-progress", *OUTCOMES)


def outcome(call: Call) -> str:
    return OUTCOMES.get(call.status, "ongoing")


async def call_timeline(session: AsyncSession, app_id: str, call_sid: str) -> CallTimeline:
    """The call with every step recorded of it, oldest first; the webhook steps are read
    from the delivery log."""
    call = await repository.find_call(session, app_id, call_sid)
    if call is None:
        raise NotFound(f"No call with CallSid {call_sid!r} in app {app_id}", code="call_not_found")
    # A call first refused (or unanswered) has steps under its own id, then under its
    # CallSid if Exotel reports on it after all.
    keys = [call.id] if call.call_sid is None else [call.id, call.call_sid]
    events = await repository.call_events(session, app_id, keys)
    deliveries, attempts = await repository.call_webhooks(session, app_id, call_sid)
    timeline = _entries(events)
    timeline.extend(_webhook_steps(deliveries, attempts))
    # Stable: entries at the same instant keep the order they were recorded in.
    timeline.sort(key=lambda entry: entry.at)
    return CallTimeline(call, timeline)


def _webhook_steps(
    deliveries: Sequence[WebhookDelivery], attempts: Sequence[WebhookAttempt]
) -> list[TimelineEntry]:
    steps = []
    by_delivery: dict[int, list[WebhookAttempt]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    for delivery in deliveries:
        steps.append(_queued_step(delivery))
        tried = by_delivery.get(delivery.id, [])
        steps.extend(_attempt_step(delivery, attempt) for attempt in tried)
        if delivery.status != "pending":
            at = tried[-1].created_at if tried else delivery.updated_at
            steps.append(_outcome_step(delivery, at))
    return steps


def _about(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"event": delivery.event_type, "delivery_id": str(delivery.id)}


def _queued_step(delivery: WebhookDelivery) -> TimelineEntry:
    return TimelineEntry(delivery.created_at, "webhook_queued", _about(delivery))


def _attempt_step(delivery: WebhookDelivery, attempt: WebhookAttempt) -> TimelineEntry:
    detail = {
        **_about(delivery),
        "attempt": attempt.number,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
    }
    return TimelineEntry(attempt.created_at, "webhook_attempt", detail)


def _outcome_step(delivery: WebhookDelivery, at: datetime) -> TimelineEntry:
    detail = {**_about(delivery), "status": delivery.status, "attempts": delivery.attempts}
    return TimelineEntry(at, "webhook_outcome", detail)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _cursor(call: Call) -> str:
    """Where the next page starts: after this call's start time and id (exactly, in
    microseconds, so no call is skipped or repeated)."""
    return f"{(call.created_at - _EPOCH) // _MICROSECOND}.{call.id}"


def _position(cursor: str) -> tuple[datetime, str]:
    micros, _, call_id = cursor.partition(".")
    try:
        if not micros.isascii() or not micros.isdigit() or len(micros) > 18 or not call_id:
            raise ValueError(cursor)
        started = _EPOCH + int(micros) * _MICROSECOND
    except (ValueError, OverflowError) as exc:
        raise BadRequest(
            "Query parameter 'cursor' must be a next_cursor this endpoint gave", field="cursor"
        ) from exc
    return started, call_id


def utc_filter(value: datetime | None, name: str) -> datetime | None:
    """A time filter in UTC; one given without an offset is taken to be UTC."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is before the first UTC instant
        raise BadRequest(
            f"Query parameter '{name}' is out of range once in UTC", field=name
        ) from exc


async def list_calls(
    session: AsyncSession,
    app_id: str,
    *,
    status: str | None,
    direction: str | None,
    number: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Call], str | None]:
    """Newest first; the cursor of the next (older) page, or None at the end."""
    calls = await repository.list_calls(
        session,
        app_id,
        statuses=[status] if status is not None else None,
        direction=direction,
        number=_number(number) if number else None,
        since=utc_filter(since, "since"),
        until=utc_filter(until, "until"),
        after=_position(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    if len(calls) <= limit:
        return calls, None
    page = calls[:limit]
    return page, _cursor(page[-1])


# --- the voice-bot platform's call log (operators) -----------------------------------------


@dataclass(frozen=True, slots=True)
class PlatformCall:
    """A test call or a bot stream, as its steps describe it."""

    call_sid: str
    from_number: str
    to_number: str
    direction: str
    status: str
    started_at: datetime
    duration: int | None
    agent: str | None

    @property
    def outcome(self) -> str:
        return OUTCOMES.get(self.status, "ongoing")


def _platform_call(call_sid: str, steps: Sequence[TimelineEntry]) -> PlatformCall:
    """What the first step, the stream's start and its close say of the call."""
    by_kind: dict[str, TimelineEntry] = {}
    for step in steps:
        by_kind.setdefault(step.kind, step)
    placed = by_kind.get("test_call_placed") or by_kind.get("test_call_refused")
    start, closed = by_kind.get("stream_start"), by_kind.get("stream_closed")
    opening = placed or start
    assert opening is not None  # listed from its opening, or refused as not found
    agent = (start or opening).detail.get("bot_id")
    status = str(opening.detail.get("status") or "in-progress")
    if opening.kind == "test_call_refused":
        status = "failed"
    duration = None
    if closed is not None:
        status = "completed" if closed.detail.get("code") == 1000 else "failed"
        if start is not None:
            duration = round((closed.at - start.at).total_seconds())
    return PlatformCall(
        call_sid=call_sid,
        from_number=str(opening.detail.get("from", "")),
        to_number=str(opening.detail.get("to", "")),
        direction="outbound" if placed is not None else "inbound",
        status=status,
        started_at=opening.at,
        duration=duration,
        agent=str(agent) if agent else None,
    )


def _entries(events: Sequence[CallEvent]) -> list[TimelineEntry]:
    return [TimelineEntry(e.at, e.kind, orjson.loads(e.detail)) for e in events]


async def platform_call_timeline(
    session: AsyncSession, call_sid: str
) -> tuple[PlatformCall, list[TimelineEntry]]:
    """A test call or bot stream with every step recorded of it, oldest first."""
    timeline = _entries(await repository.platform_call_events(session, call_sid))
    if not any(entry.kind in repository.PLATFORM_OPENINGS for entry in timeline):
        raise NotFound(
            f"No test call or bot stream with CallSid {call_sid!r}", code="call_not_found"
        )
    return _platform_call(call_sid, timeline), timeline


async def list_platform_calls(
    session: AsyncSession,
    *,
    status: str | None = None,
    direction: str | None = None,
    number: str | None = None,
    since: datetime | None,
    until: datetime | None,
    cursor: int | None,
    limit: int,
) -> tuple[list[PlatformCall], int | None]:
    """Newest first; the cursor of the next (older) page, or None at the end."""
    openings = await repository.list_platform_openings(
        session,
        status=status,
        direction=direction,
        number=_number(number) if number else None,
        since=utc_filter(since, "since"),
        until=utc_filter(until, "until"),
        before_id=cursor,
        limit=limit + 1,
    )
    page = openings[:limit]
    sids = [opening.call_sid for opening in page]
    kinds = (*repository.PLATFORM_OPENINGS, "stream_closed")
    steps: dict[str, list[TimelineEntry]] = {}
    for event in await repository.platform_steps_of(session, sids, kinds):
        steps.setdefault(event.call_sid, []).extend(_entries([event]))
    calls = [_platform_call(sid, steps[sid]) for sid in sids]
    return calls, (page[-1].id if len(openings) > limit else None)


# --- following a call as it happens ---------------------------------------------------------

# How often a followed call is read again, and for how long one follower follows it at most
# (a client that wants more reconnects, with Last-Event-ID).
FOLLOW_POLL_SECONDS = 0.25
FOLLOW_MAX_SECONDS = 3600.0
# On PostgreSQL a row can become visible after one with a higher id (an id is taken at
# insert, the row seen at commit). A step is sent once it has been visible this long, in id
# order, so one committed late within this window is still sent, in its place, and the
# cursor never passes it. SQLite has one writer at a time: its ids are seen in order.
FOLLOW_SETTLE_SECONDS = 1.0
# Reports can trail a call's end (Exotel sends the hung-up hook twice): an ended call is
# followed this much longer before the stream ends.
FOLLOW_LINGER_SECONDS = 1.0
# Exoplane hears nothing of a test call until its stream starts: one whose stream has not
# started this long after it was placed was not answered, or its flow never reached the bot.
FOLLOW_UNANSWERED_SECONDS = 120.0
# Rows read of each kind per poll; a full batch is followed by the next at once.
FOLLOW_BATCH = 200

_SOURCES = ("events", "queued", "attempts", "outcomes")


@dataclass(frozen=True, slots=True)
class FollowCursor:
    """What a follower has been sent, in ids: the last call step, webhook delivery and
    attempt, and the last attempt whose outcome. As text (``e.q.a.o``) it is the id of the
    event that sent the entry, which a client gives back as ``Last-Event-ID``."""

    events: int = 0
    queued: int = 0
    attempts: int = 0
    outcomes: int = 0

    def __str__(self) -> str:
        return f"{self.events}.{self.queued}.{self.attempts}.{self.outcomes}"

    @classmethod
    def parse(cls, text: str) -> FollowCursor:
        parts = text.strip().split(".")
        if len(parts) != len(_SOURCES) or not all(
            part.isascii() and part.isdigit() and len(part) <= 18 for part in parts
        ):
            raise BadRequest(
                "Header 'Last-Event-ID' must be the id of an event this stream sent",
                field="Last-Event-ID",
            )
        events, queued, attempts, outcomes = (int(part) for part in parts)
        return cls(events, queued, attempts, outcomes)


@dataclass(frozen=True, slots=True)
class LiveEntry:
    """A timeline entry as it happens; ``cursor`` is where a follower resumes after it."""

    cursor: FollowCursor
    entry: TimelineEntry


@dataclass(frozen=True, slots=True)
class _Step:
    source: str  # the FollowCursor field its row_id advances
    row_id: int
    entry: TimelineEntry


@dataclass(frozen=True, slots=True)
class _Reading:
    steps: dict[str, list[_Step]]  # by source, each in id order
    over: bool  # the call had ended before these steps were read
    full: bool  # a batch was full: there is more to read at once


async def follow_call(
    sessions: async_sessionmaker[AsyncSession],
    app_id: str | None,
    call_sid: str,
    *,
    last_event_id: str | None = None,
    poll_seconds: float = FOLLOW_POLL_SECONDS,
    max_seconds: float = FOLLOW_MAX_SECONDS,
) -> AsyncIterator[LiveEntry]:
    """Follow a call: its timeline entries as any process of the cluster records them, then
    the end of the iteration once the call has ended and its last entries were given.

    ``app_id`` is the app's, or None for a call of the voice-bot platform (a test call or a
    bot stream). Without ``last_event_id`` the entries start from the call's first; with
    one (the text of a ``LiveEntry.cursor``) from just after that entry, with none missed
    and none repeated. The database is the truth: it is read every ``poll_seconds`` in a
    session of its own, never held across a wait. Following stops after ``max_seconds``
    whatever the call does.

    Raises ``NotFound`` for an unknown call and ``BadRequest`` for a bad ``last_event_id``
    here, before the first entry, so a caller can answer with an error instead.
    """
    cursor = FollowCursor.parse(last_event_id) if last_event_id is not None else FollowCursor()
    async with sessions() as session:
        if app_id is None:
            known = await repository.platform_call_exists(session, call_sid)
        else:
            known = await repository.call_status(session, app_id, call_sid) is not None
        dialect = session.get_bind().dialect.name
    if not known:
        where = "" if app_id is None else f" in app {app_id}"
        raise NotFound(f"No call with CallSid {call_sid!r}{where}", code="call_not_found")
    settle = 0.0 if dialect == "sqlite" else FOLLOW_SETTLE_SECONDS
    return _follow(sessions, app_id, call_sid, cursor, settle, poll_seconds, max_seconds)


async def _follow(
    sessions: async_sessionmaker[AsyncSession],
    app_id: str | None,
    call_sid: str,
    cursor: FollowCursor,
    settle: float,
    poll_seconds: float,
    max_seconds: float,
) -> AsyncIterator[LiveEntry]:
    clock = asyncio.get_running_loop().time
    deadline = clock() + max_seconds
    first_seen: dict[tuple[str, int], float] = {}
    ended_at: float | None = None
    while True:
        async with sessions() as session:
            reading = await _read_after(session, app_id, call_sid, cursor)
        now = clock()
        ready = _settled(reading.steps, cursor, first_seen, now, settle)
        for step in ready:
            cursor = replace(cursor, **{step.source: step.row_id})
            first_seen.pop((step.source, step.row_id), None)
            yield LiveEntry(cursor, step.entry)
        waiting = len(ready) < sum(len(steps) for steps in reading.steps.values())
        if reading.over and not waiting and not reading.full:
            ended_at = now if ended_at is None else ended_at
            if now - ended_at >= FOLLOW_LINGER_SECONDS:
                return
        if now >= deadline:
            return
        if not (reading.full and ready):  # a full batch sent: read the next one at once
            await asyncio.sleep(min(poll_seconds, deadline - now))


async def _read_after(
    session: AsyncSession, app_id: str | None, call_sid: str, cursor: FollowCursor
) -> _Reading:
    """The call's steps after ``cursor``. Whether the call is over is read first, so every
    step of an ended call is among those read after it."""
    steps: dict[str, list[_Step]] = {source: [] for source in _SOURCES}
    if app_id is None:
        over = _platform_call_over(await repository.platform_call_milestones(session, call_sid))
    else:
        over = await repository.call_status(session, app_id, call_sid) in OUTCOMES
    events = await repository.call_events_after(
        session, app_id, call_sid, cursor.events, FOLLOW_BATCH
    )
    steps["events"] = [_Step("events", e.id, _entries([e])[0]) for e in events]
    full = len(events) == FOLLOW_BATCH
    if app_id is not None:
        # Attempts before deliveries: every attempt read then has its delivery.
        attempts = await repository.call_attempts_after(
            session, app_id, call_sid, cursor.attempts, FOLLOW_BATCH
        )
        deliveries = await repository.call_deliveries(session, app_id, call_sid)
        settling = await repository.call_final_attempts_after(
            session, app_id, call_sid, cursor.outcomes, FOLLOW_BATCH
        )
        over = over and all(d.status != "pending" for d in deliveries)
        full = full or FOLLOW_BATCH in (len(attempts), len(settling))
        by_id = {d.id: d for d in deliveries}
        steps["queued"] = [
            _Step("queued", d.id, _queued_step(d)) for d in deliveries if d.id > cursor.queued
        ]
        steps["attempts"] = [
            _Step("attempts", a.id, _attempt_step(by_id[a.delivery_id], a)) for a in attempts
        ]
        steps["outcomes"] = [
            _Step("outcomes", a.id, _outcome_step(d, a.created_at)) for a, d in settling
        ]
    return _Reading(steps, over, full)


def _platform_call_over(milestones: dict[str, datetime]) -> bool:
    if "stream_closed" in milestones or "test_call_refused" in milestones:
        return True
    placed = milestones.get("test_call_placed")
    unanswered = timedelta(seconds=FOLLOW_UNANSWERED_SECONDS)
    return (
        "stream_start" not in milestones and placed is not None and utcnow() - placed > unanswered
    )


def _settled(
    steps: dict[str, list[_Step]],
    cursor: FollowCursor,
    first_seen: dict[tuple[str, int], float],
    now: float,
    settle: float,
) -> list[_Step]:
    """The steps to send now: of each kind, in id order, those up to the first not yet
    visible for ``settle`` seconds (an outcome only once its attempt is sent); the kinds
    merged in time order."""
    ready = []
    attempts_sent = cursor.attempts
    for source in _SOURCES:  # attempts before outcomes
        prefix = []
        for step in steps[source]:
            seen = first_seen.setdefault((source, step.row_id), now)
            if now - seen < settle or (source == "outcomes" and step.row_id > attempts_sent):
                break
            prefix.append(step)
        if source == "attempts" and prefix:
            attempts_sent = prefix[-1].row_id
        ready.append(prefix)
    return list(heapq.merge(*ready, key=lambda step: (step.entry.at, _SOURCES.index(step.source))))
