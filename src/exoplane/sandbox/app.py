"""The sandbox's ASGI app: Exotel's v1 Calls API, call simulation, and ``/_sandbox`` control."""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import aiohttp
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.responses import Response

from exoplane.logs import get_logger
from exoplane.responses import JSONBytesResponse
from exoplane.sandbox.state import (
    IST,
    TERMINAL,
    Account,
    Fault,
    SandboxCall,
    SandboxState,
    exotel_time,
    new_call_sid,
    outcome_for,
)

log = get_logger("exoplane.sandbox")


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EXOPLANE_SANDBOX_", env_file=".env", extra="ignore"
    )

    # Multiplies every simulated wait: 0.01 makes a 30 s call take 0.3 s in tests.
    time_scale: float = Field(default=1.0, gt=0)
    ring_seconds: float = Field(default=3.0, ge=0)
    talk_seconds: int = Field(default=5, ge=0)
    calls_per_minute: int = Field(default=200, ge=1)


# --- rendering ----------------------------------------------------------------------------


def render(document: dict[str, Any], *, as_json: bool, status: int = 200) -> Response:
    """Exotel's formats: JSON under ``.json``, otherwise ``<TwilioResponse>`` XML."""
    if as_json:
        return JSONBytesResponse(document, status_code=status)
    root = Element("TwilioResponse")
    for name, value in document.items():
        _xml(SubElement(root, name), value)
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root)
    return Response(body, status_code=status, media_type="application/xml")


def _xml(element: Element, value: Any) -> None:
    if isinstance(value, dict):
        for name, inner in value.items():
            _xml(SubElement(element, name), inner)
    elif value is not None:
        element.text = str(value).lower() if isinstance(value, bool) else str(value)


def rest_exception(status: int, message: str, *, as_json: bool) -> Response:
    document = {"RestException": {"Status": status, "Message": message, "Code": status}}
    return render(document, as_json=as_json, status=status)


# --- control API bodies -------------------------------------------------------------------


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sid: str = Field(min_length=1, max_length=100)
    api_key: str = Field(min_length=1)
    api_token: str = Field(min_length=1)


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str = Field(pattern=r"^(completed|busy|no-answer|failed)$")
    talk_seconds: int | None = Field(default=None, ge=0, le=14_400)


class FaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    route: str = Field(pattern=r"^(calls_connect|call_details|callbacks)$")
    status: int | None = Field(default=None, ge=400, le=599)
    latency_seconds: float = Field(default=0.0, ge=0, le=60)
    drop_callbacks: bool = False
    probability: float = Field(default=1.0, ge=0, le=1)


# --- the app ------------------------------------------------------------------------------


def create_sandbox_app(settings: SandboxSettings | None = None) -> FastAPI:
    settings = settings or SandboxSettings()
    state = SandboxState()
    tasks: set[asyncio.Task[None]] = set()
    http: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        http["session"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await http["session"].close()

    app = FastAPI(title="exoplane sandbox (Exotel emulator)", lifespan=lifespan)
    app.state.sandbox = state

    async def wait(seconds: float) -> None:
        await asyncio.sleep(seconds * settings.time_scale)

    def log_request(request: Request, fields: dict[str, Any], status: int) -> None:
        state.requests.append(
            {
                "at": exotel_time(datetime.now(IST)),
                "method": request.method,
                "path": request.url.path,
                "fields": fields,
                "status": status,
            }
        )

    def authorised(request: Request, account: Account) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except ValueError:
            return False
        expected = f"{account.api_key}:{account.api_token}"
        return hmac.compare_digest(decoded.encode(), expected.encode())

    def within_rate(account_sid: str) -> bool:
        now = time.monotonic()
        recent = [t for t in state.recent.get(account_sid, []) if now - t < 60]
        allowed = len(recent) < settings.calls_per_minute
        if allowed:
            recent.append(now)
        state.recent[account_sid] = recent
        return allowed

    async def apply_fault(route: str) -> int | None:
        fault = state.faults.get(route)
        if fault is None or not fault.fires():
            return None
        if fault.latency_seconds:
            await asyncio.sleep(fault.latency_seconds)
        return fault.status

    def check_access(request: Request, account_sid: str, as_json: bool) -> Response | None:
        account = state.accounts.get(account_sid)
        if account is None:
            return rest_exception(404, f"Account {account_sid} not found", as_json=as_json)
        if not authorised(request, account):
            return rest_exception(
                401, "Authentication failed: use HTTP Basic api_key:api_token", as_json=as_json
            )
        if not within_rate(account_sid):
            return rest_exception(
                429, "Too Many Requests: 200 calls per minute per account", as_json=as_json
            )
        return None

    @app.post("/v1/Accounts/{account_sid}/Calls/{action}")
    async def calls_connect(request: Request, account_sid: str, action: str) -> Response:
        """Exotel's Calls/connect: connect two numbers, or a number to a flow."""
        as_json = action.endswith(".json")
        if action.removesuffix(".json") != "connect":
            return rest_exception(404, f"No resource Calls/{action}", as_json=as_json)
        form = await request.form()
        fields: dict[str, Any] = {}
        events: list[str] = []
        for name, value in form.multi_items():
            if not isinstance(value, str):
                continue
            if name.startswith("StatusCallbackEvents"):
                events.append(value)
            fields[name] = value
        denied = check_access(request, account_sid, as_json)
        if denied is not None:
            log_request(request, fields, denied.status_code)
            return denied
        fault_status = await apply_fault("calls_connect")
        if fault_status is not None:
            log_request(request, fields, fault_status)
            return rest_exception(fault_status, "Injected fault", as_json=as_json)
        missing = [name for name in ("From", "CallerId") if not fields.get(name)]
        if not fields.get("To") and not fields.get("Url"):
            missing.append("To or Url")
        if missing:
            log_request(request, fields, 400)
            return rest_exception(
                400, f"Missing parameter(s): {', '.join(missing)}", as_json=as_json
            )
        if fields.get("To") and fields.get("Url"):
            log_request(request, fields, 400)
            return rest_exception(400, "Send To or Url, not both", as_json=as_json)
        custom = fields.get("CustomField")
        if custom is not None and len(custom) > 128:
            log_request(request, fields, 400)
            return rest_exception(400, "CustomField is longer than 128 characters", as_json=as_json)
        call = SandboxCall(
            sid=new_call_sid(),
            account_sid=account_sid,
            from_number=fields["From"],
            to_number=fields.get("To") or fields["CallerId"],
            caller_id=fields["CallerId"],
            url=fields.get("Url"),
            direction="outbound-api",
            custom_field=custom,
            status_callback=fields.get("StatusCallback"),
            callback_events=events,
            callback_json=fields.get("StatusCallbackContentType") == "application/json",
            record=fields.get("Record", "").lower() == "true",
            outcome=outcome_for(fields["From"]),
            talk_seconds=settings.talk_seconds,
        )
        state.calls[call.sid] = call
        log_request(request, fields, 200)
        task = asyncio.create_task(simulate(call))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return render({"Call": call.details()}, as_json=as_json)

    @app.get("/v1/Accounts/{account_sid}/Calls/{call_sid}")
    async def call_details(request: Request, account_sid: str, call_sid: str) -> Response:
        """Exotel's Call details."""
        as_json = call_sid.endswith(".json")
        call_sid = call_sid.removesuffix(".json")
        denied = check_access(request, account_sid, as_json)
        if denied is not None:
            return denied
        fault_status = await apply_fault("call_details")
        if fault_status is not None:
            return rest_exception(fault_status, "Injected fault", as_json=as_json)
        call = state.calls.get(call_sid)
        if call is None or call.account_sid != account_sid:
            return rest_exception(404, f"Call {call_sid} not found", as_json=as_json)
        return render({"Call": call.details()}, as_json=as_json)

    async def simulate(call: SandboxCall) -> None:
        """queued → ringing → in-progress → completed, or busy / no-answer / failed."""
        await wait(0.2)
        call.status, call.updated_at = "ringing", datetime.now(IST)
        await wait(settings.ring_seconds)
        if call.outcome != "completed":
            finish(call, call.outcome)
            await send_callback(call, "terminal")
            return
        call.status = "in-progress"
        call.start_time = call.updated_at = datetime.now(IST)
        if "answered" in call.callback_events:
            await send_callback(call, "answered")
        await wait(call.talk_seconds)
        if call.status in TERMINAL:  # decided meanwhile through the control API
            await send_callback(call, "terminal")
            return
        if call.record:
            call.recording_url = f"https://recordings.sandbox.exotel.local/{call.sid}.mp3"
        finish(call, "completed")
        await send_callback(call, "terminal")

    def finish(call: SandboxCall, status: str) -> None:
        call.status = status
        call.end_time = call.updated_at = datetime.now(IST)

    async def send_callback(call: SandboxCall, event: str) -> None:
        if not call.status_callback:
            return
        fault = state.faults.get("callbacks")
        if fault is not None and fault.drop_callbacks and fault.fires():
            call.callbacks_sent.append({"event": event, "dropped": True})
            return
        fields: dict[str, Any] = {
            "CallSid": call.sid,
            "Status": call.status,
            "DateUpdated": exotel_time(call.updated_at),
            "RecordingUrl": call.recording_url or "",
        }
        if call.callback_events:
            fields.update(
                {
                    "EventType": event,
                    "DateCreated": exotel_time(call.created_at),
                    "To": call.to_number,
                    "From": call.from_number,
                    "PhoneNumberSid": call.caller_id,
                    "StartTime": exotel_time(call.start_time) if call.start_time else "",
                    "EndTime": exotel_time(call.end_time) if call.end_time else "",
                    "ConversationDuration": call.duration or 0,
                    "Direction": call.direction,
                    "CustomField": call.custom_field or "",
                }
            )
        session = http["session"]
        try:
            if call.callback_json:
                async with session.post(call.status_callback, json=fields) as response:
                    status = response.status
            else:
                # Exotel's default StatusCallbackContentType is multipart/form-data.
                form = aiohttp.FormData(
                    {key: str(value) for key, value in fields.items()}, default_to_multipart=True
                )
                async with session.post(call.status_callback, data=form) as response:
                    status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            call.callbacks_sent.append({"event": event, "error": str(exc)})
            return
        call.callbacks_sent.append({"event": event, "status": status, "fields": fields})

    # --- control API ----------------------------------------------------------------------

    @app.post("/_sandbox/accounts", status_code=201)
    async def add_account(body: AccountIn) -> Response:
        """Create (or replace) an account that the Calls API accepts."""
        state.accounts[body.sid] = Account(body.sid, body.api_key, body.api_token)
        return JSONBytesResponse({"sid": body.sid}, status_code=201)

    @app.get("/_sandbox/calls")
    async def list_calls() -> Response:
        """Every call, with the StatusCallbacks sent for it."""
        return JSONBytesResponse(
            [{**call.details(), "Callbacks": call.callbacks_sent} for call in state.calls.values()]
        )

    @app.post("/_sandbox/calls/{call_sid}/outcome")
    async def set_outcome(call_sid: str, body: OutcomeIn) -> Response:
        """Decide how a call ends (before it does), instead of by its magic number."""
        call = state.calls.get(call_sid)
        if call is None:
            return JSONBytesResponse({"error": f"no call {call_sid}"}, status_code=404)
        if call.status in TERMINAL:
            return JSONBytesResponse({"error": f"call already {call.status}"}, status_code=409)
        call.outcome = body.status
        if body.talk_seconds is not None:
            call.talk_seconds = body.talk_seconds
        if call.status == "in-progress" and body.status != "completed":
            finish(call, body.status)
        return JSONBytesResponse({"Sid": call.sid, "outcome": call.outcome})

    @app.get("/_sandbox/requests")
    async def list_requests() -> Response:
        """Every Calls API request the sandbox received, with its form fields."""
        return JSONBytesResponse(state.requests)

    @app.post("/_sandbox/faults", status_code=201)
    async def add_fault(body: FaultIn) -> Response:
        """Inject a fault on a route: an error status, latency, or dropped callbacks."""
        state.faults[body.route] = Fault(**body.model_dump())
        return JSONBytesResponse(body.model_dump(), status_code=201)

    @app.post("/_sandbox/reset")
    async def reset() -> Response:
        """Forget every account, call, request and fault."""
        state.reset()
        return JSONBytesResponse({"reset": True})

    return app
