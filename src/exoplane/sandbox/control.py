"""``/_sandbox/...``: set the sandbox up, drive its calls, see what happened, reset it."""

from __future__ import annotations

import io
import re
import wave
from collections.abc import Callable
from typing import Any, Literal

import aiohttp
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.responses import Response

from exoplane.responses import JSONBytesResponse
from exoplane.sandbox.simulation import Simulator, outbound_entry
from exoplane.sandbox.state import (
    TERMINAL,
    Account,
    Applet,
    CallerScript,
    ExoPhone,
    Fault,
    Flow,
    SandboxCall,
    SandboxState,
    SipUser,
    exotel_time,
    last_ten,
    new_call_sid,
    now_ist,
)

FAULT_ROUTES = ("calls_connect", "call_details", "callbacks")


def problem(status: int, code: str, message: str, field: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return JSONBytesResponse({"error": error}, status_code=status)


# --- bodies -------------------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountIn(Body):
    sid: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    api_key: str = Field(min_length=1, max_length=200)
    api_token: str = Field(min_length=1, max_length=200)
    # Calls/connect with StreamUrl answers 403 when false, as for an account without it.
    connect_voice_ai: bool = True


class ExoPhoneIn(Body):
    account_sid: str = Field(min_length=1)
    number: str = Field(min_length=6, max_length=20, pattern=r"^\+?[0-9]+$")
    flow_id: str | None = Field(default=None, pattern=r"^[0-9]+$")


class FlowIn(Body):
    account_sid: str = Field(min_length=1)
    id: str | None = Field(default=None, pattern=r"^[0-9]{1,12}$")
    name: str = Field(default="", max_length=200)
    applets: list[Applet] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _check_applets(self) -> FlowIn:
        ids = [applet.id for applet in self.applets if applet.id]
        if len(ids) != len(set(ids)):
            raise ValueError("applet ids must be unique")
        for n, applet in enumerate(self.applets):
            for name in ("next", "on_302", "on_no_answer"):
                target = getattr(applet, name)
                if target is not None and target not in ids:
                    raise ValueError(f"applets[{n}].{name} names no applet: {target!r}")
            if applet.type in ("passthru", "voicebot") and not applet.url:
                raise ValueError(f"applets[{n}] ({applet.type}) needs a url")
            if applet.type == "connect" and not applet.url and not applet.numbers:
                raise ValueError(f"applets[{n}] (connect) needs a dynamic url or numbers")
            if applet.caller is not None and applet.type != "voicebot":
                raise ValueError(f"applets[{n}].caller applies to voicebot applets only")
            if applet.url and not re.match(r"^(https?|wss?)://", applet.url):
                raise ValueError(f"applets[{n}].url must be an http(s) or ws(s) URL")
        return self


class SipRegistrationIn(Body):
    account_sid: str = Field(min_length=1)
    username: str = Field(min_length=1, max_length=200)
    registered: bool
    # A registered client that does not pick up rings out as no-answer.
    answers: bool = True
    # Where to report the (un)registration, as a registrar would: exoplane's
    # .../users/{user_id}/devices/sip/registration, with an app token.
    report_url: str | None = Field(default=None, pattern=r"^https?://")
    report_token: str | None = Field(default=None, repr=False)
    expires_in: int | None = Field(default=None, ge=10, le=86_400)

    @field_validator("username")
    @classmethod
    def _bare_username(cls, value: str) -> str:
        return value.removeprefix("sip:").split("@", 1)[0]


class InboundIn(Body):
    from_number: str = Field(alias="from", min_length=3, max_length=40)
    to: str = Field(min_length=6, max_length=20, description="An ExoPhone with a flow")
    # Who picks up in a Connect applet: 'auto' (magic numbers and SIP registration),
    # 'nobody', or one destination (a number or sip:user).
    answer: str = "auto"
    talk_seconds: float | None = Field(default=None, ge=0, le=14_400)
    custom_field: str | None = Field(default=None, max_length=128)
    # How the caller talks to a voice bot in the flow (over the applet's script).
    caller: CallerScript | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OutcomeIn(Body):
    status: Literal["completed", "busy", "no-answer", "failed"]
    talk_seconds: float | None = Field(default=None, ge=0, le=14_400)


class FaultIn(Body):
    route: Literal["calls_connect", "call_details", "callbacks"]
    status: int | None = Field(default=None, ge=400, le=599)
    latency_seconds: float = Field(default=0.0, ge=0, le=60)
    reply_latency_seconds: float = Field(default=0.0, ge=0, le=60)
    drop_callbacks: bool = False
    duplicate_callbacks: bool = False
    probability: float = Field(default=1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _fields_of_its_route_only(self) -> FaultIn:
        for name, routes in _FAULT_FIELD_ROUTES.items():
            if getattr(self, name) and self.route not in routes:
                where = " and ".join(routes) + (" routes" if len(routes) > 1 else " route")
                raise ValueError(f"{name} applies to the {where} only")
        return self


# The fault fields that apply to some routes only; the others apply to every route.
_FAULT_FIELD_ROUTES = {
    "status": ("calls_connect", "call_details"),
    "reply_latency_seconds": ("calls_connect",),
    "drop_callbacks": ("callbacks",),
    "duplicate_callbacks": ("callbacks",),
}


# --- the router ---------------------------------------------------------------------------


def control_router(
    state: SandboxState, simulator: Simulator, http: Callable[[], aiohttp.ClientSession]
) -> APIRouter:
    router = APIRouter(prefix="/_sandbox", tags=["sandbox control"])

    def unknown_account(sid: str) -> Response | None:
        if sid in state.accounts:
            return None
        return problem(404, "unknown_account", f"No account {sid}: create it first", "account_sid")

    @router.post("/accounts", status_code=201)
    async def add_account(body: AccountIn) -> Response:
        """Create (or replace) an account that the Calls API accepts."""
        state.add_account(Account(**body.model_dump()))
        return JSONBytesResponse({"sid": body.sid}, status_code=201)

    @router.get("/accounts")
    async def list_accounts() -> Response:
        """The accounts, without their API keys and tokens."""
        return JSONBytesResponse(
            [
                {"sid": sid, "connect_voice_ai": account.connect_voice_ai}
                for sid, account in state.accounts.items()
            ]
        )

    @router.post("/exophones", status_code=201)
    async def add_exophone(body: ExoPhoneIn) -> Response:
        """An ExoPhone of an account; inbound calls to it run ``flow_id``."""
        if (refused := unknown_account(body.account_sid)) is not None:
            return refused
        if body.flow_id is not None and state.flow(body.account_sid, body.flow_id) is None:
            return problem(404, "unknown_flow", f"No flow {body.flow_id}", "flow_id")
        phone = ExoPhone(**body.model_dump())
        state.add_exophone(phone)
        return JSONBytesResponse(phone.model_dump(), status_code=201)

    @router.get("/exophones")
    async def list_exophones() -> Response:
        return JSONBytesResponse([phone.model_dump() for phone in state.exophones.values()])

    @router.post("/flows", status_code=201)
    async def add_flow(body: FlowIn) -> Response:
        """A flow of applets; answers the ``Url`` that Calls/connect takes for it."""
        if (refused := unknown_account(body.account_sid)) is not None:
            return refused
        taken = [int(f.id) for f in state.flows.values() if f.account_sid == body.account_sid]
        flow_id = body.id or str(max(taken, default=1000) + 1)
        flow = Flow(id=flow_id, account_sid=body.account_sid, name=body.name, applets=body.applets)
        state.add_flow(flow)
        url = f"http://my.exotel.com/{body.account_sid}/exoml/start_voice/{flow_id}"
        return JSONBytesResponse({**flow.model_dump(), "url": url}, status_code=201)

    @router.get("/flows")
    async def list_flows() -> Response:
        return JSONBytesResponse([flow.model_dump() for flow in state.flows.values()])

    @router.post("/sip/registrations")
    async def sip_registration(body: SipRegistrationIn) -> Response:
        """A SIP client (un)registers; optionally reported to exoplane as a registrar would."""
        if (refused := unknown_account(body.account_sid)) is not None:
            return refused
        user = SipUser(
            account_sid=body.account_sid,
            username=body.username,
            registered=body.registered,
            answers=body.answers,
            updated_at=exotel_time(now_ist()),
        )
        state.set_sip_user(user)
        answer: dict[str, Any] = user.model_dump()
        if body.report_url:
            answer["report"] = await _report(state, http(), body)
        return JSONBytesResponse(answer)

    @router.get("/sip/registrations")
    async def list_sip_registrations() -> Response:
        return JSONBytesResponse([user.model_dump() for user in state.sip_users.values()])

    @router.post("/inbound", status_code=201)
    async def inbound_call(body: InboundIn) -> Response:
        """Somebody calls an ExoPhone: its flow runs. Answers the new call's Sid."""
        phone = state.exophones.get(last_ten(body.to))
        if phone is None:
            return problem(404, "unknown_exophone", f"No ExoPhone {body.to}", "to")
        if phone.flow_id is None or state.flow(phone.account_sid, phone.flow_id) is None:
            return problem(409, "no_flow", f"ExoPhone {body.to} has no flow to run", "to")
        call = SandboxCall(
            sid=new_call_sid(),
            account_sid=phone.account_sid,
            from_number=body.from_number,
            to_number=phone.number,
            caller_id=phone.number,
            direction="inbound",
            flow_id=phone.flow_id,
            custom_field=body.custom_field,
            answer=body.answer,
            caller=body.caller,
            talk_seconds=(
                body.talk_seconds
                if body.talk_seconds is not None
                else simulator.timing.talk_seconds
            ),
            status="ringing",
        )
        state.save_call(call)
        simulator.start(call)
        return JSONBytesResponse({"Sid": call.sid}, status_code=201)

    @router.get("/calls")
    async def list_calls() -> Response:
        """Every call in Exotel's fields, with its StatusCallbacks."""
        return JSONBytesResponse(
            [{**call.details(), "Callbacks": call.callbacks_sent} for call in state.calls.values()]
        )

    @router.get("/calls/{call_sid}")
    async def get_call(call_sid: str) -> Response:
        """One call in full: legs, the applets its flow ran, its streams and callbacks."""
        call = state.calls.get(call_sid)
        if call is None:
            return problem(404, "unknown_call", f"No call {call_sid}", "call_sid")
        return JSONBytesResponse(
            {
                **call.details(extended=True),
                "Legs": [leg.model_dump() for leg in call.legs],
                "Steps": [step.model_dump() for step in call.steps],
                "Streams": call.streams,
                "Callbacks": call.callbacks_sent,
            }
        )

    @router.get("/calls/{call_sid}/audio")
    async def bot_audio(call_sid: str, stream: int = 0) -> Response:
        """What the bot said on one of the call's streams, as a WAV file."""
        streams = simulator.bot_audio.get(call_sid, [])
        if not 0 <= stream < len(streams):
            return problem(404, "no_audio", f"Call {call_sid} has no stream {stream}", "stream")
        rate, pcm = streams[stream]
        return Response(wav(pcm, rate), media_type="audio/wav")

    @router.post("/calls/{call_sid}/outcome")
    async def set_outcome(call_sid: str, body: OutcomeIn) -> Response:
        """Decide how a call ends (before it does), instead of by its magic number."""
        call = state.calls.get(call_sid)
        if call is None:
            return problem(404, "unknown_call", f"No call {call_sid}", "call_sid")
        if call.status in TERMINAL:
            return problem(409, "call_over", f"Call already {call.status}")
        call.outcome = body.status
        if body.talk_seconds is not None:
            call.talk_seconds = body.talk_seconds
        if call.status == "in-progress" and body.status != "completed":
            simulator.finish(call, body.status)
            simulator.hang_up(call)
        state.save_call(call)
        return JSONBytesResponse({"Sid": call.sid, "outcome": call.outcome})

    @router.put("/calls/{call_sid}/caller")
    async def set_caller(call_sid: str, body: CallerScript) -> Response:
        """Script how the caller talks to a voice bot on this call, before its stream starts."""
        call = state.calls.get(call_sid)
        if call is None:
            return problem(404, "unknown_call", f"No call {call_sid}", "call_sid")
        if call.status in TERMINAL:
            return problem(409, "call_over", f"Call already {call.status}")
        call.caller = body
        state.save_call(call)
        return JSONBytesResponse({"Sid": call.sid, "caller": body.model_dump(exclude_none=True)})

    @router.post("/calls/{call_sid}/hangup")
    async def hang_up(call_sid: str) -> Response:
        """The caller hangs up now: ringing stops, a stream gets ``stop``."""
        call = state.calls.get(call_sid)
        if call is None:
            return problem(404, "unknown_call", f"No call {call_sid}", "call_sid")
        if call.status in TERMINAL:
            return problem(409, "call_over", f"Call already {call.status}")
        simulator.hang_up(call)
        return JSONBytesResponse({"Sid": call.sid, "hangup": True})

    @router.get("/requests")
    async def list_requests() -> Response:
        """Every request the sandbox received (``in``) or made (``out``), secrets redacted."""
        return JSONBytesResponse(state.requests)

    @router.post("/faults", status_code=201)
    async def add_fault(body: FaultIn) -> Response:
        """Inject a fault on a route: an error status, latency, dropped or duplicated callbacks."""
        state.set_fault(Fault(**body.model_dump()))
        return JSONBytesResponse(body.model_dump(), status_code=201)

    @router.get("/faults")
    async def list_faults() -> Response:
        return JSONBytesResponse([fault.model_dump() for fault in state.faults.values()])

    @router.post("/reset")
    async def reset() -> Response:
        """Forget every account, ExoPhone, flow, SIP user, call, request and fault."""
        state.reset()
        simulator.bot_audio.clear()
        return JSONBytesResponse({"reset": True})

    return router


async def _report(
    state: SandboxState, http: aiohttp.ClientSession, body: SipRegistrationIn
) -> dict[str, Any]:
    url = body.report_url or ""
    payload: dict[str, Any] = {"registered": body.registered}
    if body.expires_in is not None:
        payload["expires_in"] = body.expires_in
    headers = {"Authorization": f"Bearer {body.report_token}"} if body.report_token else {}
    entry = outbound_entry("sip_registration", "POST", url, fields=payload)
    try:
        async with http.post(url, json=payload, headers=headers) as response:
            entry["status"] = response.status
            return {"status": response.status}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        entry["error"] = str(exc) or type(exc).__name__
        return {"error": entry["error"]}
    finally:
        state.log(entry)


def wav(pcm: bytes, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)
    return buffer.getvalue()
