"""The sandbox's ASGI app: Exotel's v1 Calls API, simulated calls, and ``/_sandbox`` control."""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import aiohttp
from fastapi import FastAPI, Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.responses import Response

from exoplane.logs import get_logger
from exoplane.responses import JSONBytesResponse
from exoplane.sandbox.connect import Refused
from exoplane.sandbox.connect import check as check_connect
from exoplane.sandbox.connect import read as read_connect
from exoplane.sandbox.control import control_router
from exoplane.sandbox.simulation import Simulator, redact_url
from exoplane.sandbox.state import (
    FLOW_URL,
    Account,
    Fault,
    SandboxCall,
    SandboxState,
    exotel_time,
    new_call_sid,
    now_ist,
)
from exoplane.sandbox.store import SqliteStore

log = get_logger("exoplane.sandbox")

# Fields holding URLs whose capability values the request log must not show.
URL_FIELDS = frozenset({"statuscallback", "url", "streamurl", "waiturl"})


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EXOPLANE_SANDBOX_", env_file=".env", extra="ignore"
    )

    # Multiplies every simulated wait: 0.01 makes a 30 s call take 0.3 s in tests.
    time_scale: float = Field(default=1.0, gt=0)
    ring_seconds: float = Field(default=3.0, ge=0)
    talk_seconds: float = Field(default=5.0, ge=0)
    calls_per_minute: int = Field(default=200, ge=1)
    # Exotel ends a stream after 60 minutes.
    voicebot_max_seconds: float = Field(default=3600.0, gt=0)
    # The simulated caller on a stream: its turns, how long it waits for the bot's reply,
    # and how long the bot must be silent before the caller speaks again.
    caller_turns: int = Field(default=3, ge=1, le=100)
    caller_reply_timeout_seconds: float = Field(default=10.0, gt=0)
    caller_silence_seconds: float = Field(default=1.5, gt=0)
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    # A SQLite file that keeps accounts, ExoPhones, flows, calls and requests across restarts.
    database: Path | None = None


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
    elif isinstance(value, list):
        for item in value:
            _xml(SubElement(element, "Item"), item)
    elif value is not None:
        element.text = str(value).lower() if isinstance(value, bool) else str(value)


def rest_exception(status: int, message: str, *, as_json: bool) -> Response:
    document = {"RestException": {"Status": status, "Message": message, "Code": status}}
    return render(document, as_json=as_json, status=status)


# --- the app ------------------------------------------------------------------------------


def create_sandbox_app(settings: SandboxSettings | None = None) -> FastAPI:
    settings = settings or SandboxSettings()
    store = SqliteStore(settings.database) if settings.database else None
    state = SandboxState(store)
    http: dict[str, aiohttp.ClientSession] = {}
    simulator = Simulator(state, settings, lambda: http["session"])

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        http["session"] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.http_timeout_seconds)
        )
        try:
            yield
        finally:
            await simulator.close()
            await http["session"].close()
            if store is not None:
                store.close()

    app = FastAPI(
        title="exoplane sandbox (Exotel emulator)",
        description="Exotel's v1 Calls API and call flows, simulated offline; control under "
        "/_sandbox.",
        lifespan=lifespan,
    )
    app.state.sandbox = state
    app.state.simulator = simulator
    app.include_router(control_router(state, simulator, lambda: http["session"]))

    def log_request(request: Request, fields: dict[str, Any], status: int) -> None:
        shown = {
            name: redact_url(value) if name.lower() in URL_FIELDS else value
            for name, value in fields.items()
        }
        state.log(
            {
                "at": exotel_time(now_ist()),
                "direction": "in",
                "method": request.method,
                "path": request.url.path,
                "fields": shown,
                "status": status,
            }
        )

    def authorised(request: Request, account: Account) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except ValueError:
            return False
        expected = f"{account.api_key}:{account.api_token}".encode()
        return hmac.compare_digest(decoded, expected)

    def within_rate(account_sid: str) -> bool:
        now = time.monotonic()
        recent = [t for t in state.recent.get(account_sid, []) if now - t < 60]
        allowed = len(recent) < settings.calls_per_minute
        if allowed:
            recent.append(now)
        state.recent[account_sid] = recent
        return allowed

    async def fired_fault(route: str) -> Fault | None:
        """The route's fault if it fires this time, once its latency has passed."""
        fault = state.faults.get(route)
        if fault is None or not fault.fires():
            return None
        if fault.latency_seconds:
            await asyncio.sleep(fault.latency_seconds)
        return fault

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

    def check_flow(url: str, account_sid: str) -> None:
        """``Refused`` unless ``url`` names a flow of this account."""
        match = FLOW_URL.match(url)
        if match is None:
            raise Refused(
                400,
                "Url must be an Exotel flow URL: "
                f"http://my.exotel.com/{account_sid}/exoml/start_voice/<flow_id>",
            )
        if match["sid"] != account_sid:
            raise Refused(400, f"Url names account {match['sid']}, not {account_sid}")
        if state.flow(account_sid, match["flow"]) is None:
            raise Refused(
                400,
                f"No flow {match['flow']} in account {account_sid}: create it with "
                "POST /_sandbox/flows",
            )

    @app.post("/v1/Accounts/{account_sid}/Calls/{action}", tags=["exotel"])
    @app.post("/v1/accounts/{account_sid}/calls/{action}", include_in_schema=False)
    async def calls_connect(request: Request, account_sid: str, action: str) -> Response:
        """Exotel's Calls/connect: two numbers, a number to a flow, or to a bot (StreamUrl)."""
        as_json = action.endswith(".json")
        if action.removesuffix(".json") != "connect":
            return rest_exception(404, f"No resource Calls/{action}", as_json=as_json)
        form = await request.form()
        pairs = [(name, value) for name, value in form.multi_items() if isinstance(value, str)]
        logged = dict(pairs)
        denied = check_access(request, account_sid, as_json)
        if denied is not None:
            log_request(request, logged, denied.status_code)
            return denied
        fault = await fired_fault("calls_connect")
        if fault is not None and fault.status is not None:
            log_request(request, logged, fault.status)
            return rest_exception(fault.status, "Injected fault", as_json=as_json)
        try:
            connect = read_connect(pairs)
            check_connect(connect)
            if connect.kind == "flow":
                check_flow(connect.fields["Url"], account_sid)
            if connect.kind == "stream" and not state.accounts[account_sid].connect_voice_ai:
                raise Refused(
                    403,
                    "Connect Voice AI (StreamUrl) is not enabled for this account: "
                    "ask Exotel to enable it",
                )
        except Refused as refused:
            log_request(request, logged, refused.status)
            return rest_exception(refused.status, refused.message, as_json=as_json)
        fields = connect.fields
        flow = FLOW_URL.match(fields.get("Url") or "")
        time_limit = connect.time_limit
        call = SandboxCall(
            sid=new_call_sid(),
            account_sid=account_sid,
            from_number=fields["From"],
            # For a flow or a bot, Exotel reports the ExoPhone as To.
            to_number=fields.get("To") or fields["CallerId"],
            caller_id=fields["CallerId"],
            direction="outbound-api",
            flow_id=flow["flow"] if flow else None,
            stream_url=fields.get("StreamUrl"),
            stream_name=fields.get("StreamName"),
            time_limit=time_limit,
            ring_timeout=int(fields["TimeOut"]) if fields.get("TimeOut") else None,
            custom_field=fields.get("CustomField"),
            status_callback=fields.get("StatusCallback"),
            callback_events=connect.events,
            callback_json=(fields.get("StatusCallbackContentType") or "").lower()
            == "application/json",
            record=(fields.get("Record") or "").lower() == "true",
            recording_channels=(fields.get("RecordingChannels") or "single").lower(),
            talk_seconds=min(settings.talk_seconds, time_limit or settings.talk_seconds),
        )
        state.save_call(call)
        log_request(request, logged, 200)
        simulator.start(call)
        if fault is not None and fault.reply_latency_seconds:
            await asyncio.sleep(fault.reply_latency_seconds)
        return render({"Call": call.details()}, as_json=as_json)

    @app.get("/v1/Accounts/{account_sid}/Calls/{call_sid}", tags=["exotel"])
    async def call_details(
        request: Request, account_sid: str, call_sid: str, details: bool = False
    ) -> Response:
        """Exotel's Call details; ``?details=true`` adds the legs."""
        as_json = call_sid.endswith(".json")
        call_sid = call_sid.removesuffix(".json")
        denied = check_access(request, account_sid, as_json)
        if denied is not None:
            return denied
        fault = await fired_fault("call_details")
        if fault is not None and fault.status is not None:
            return rest_exception(fault.status, "Injected fault", as_json=as_json)
        call = state.calls.get(call_sid)
        if call is None or call.account_sid != account_sid:
            return rest_exception(404, f"Call {call_sid} not found", as_json=as_json)
        return render({"Call": call.details(extended=details)}, as_json=as_json)

    return app
