"""Simulated calls: legs that ring and answer, flows that run their applets, StatusCallbacks.

A call placed through the API rings ``From`` first; a two-number call then rings ``To``, and a
flow call runs its flow. An inbound call to an ExoPhone runs the ExoPhone's flow. Applets:

- Passthru: a GET with Exotel's parameters; a 302 answer follows ``on_302``, anything else
  ``next`` (Exotel's synchronous Passthru branches on 200 and 302).
- Connect: dials the applet's numbers, or what its dynamic URL answers (Exotel's
  programmable-Connect JSON); in parallel when asked, one after another otherwise. A ``sip:``
  destination rings only while that user is registered. Nobody answering follows
  ``on_no_answer``.
- Voicebot: an AgentStream WebSocket to the applet's URL (``agentstream.run_stream``).
- Hangup: ends the flow.

Every wait is multiplied by the sandbox's ``time_scale`` except audio, which plays in real time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from exoplane.logs import get_logger
from exoplane.sandbox.agentstream import Caller, StreamCall, StreamReport, run_stream
from exoplane.sandbox.state import (
    CAUSE_CODES,
    TERMINAL,
    Applet,
    CallerScript,
    Flow,
    Leg,
    SandboxCall,
    SandboxState,
    Step,
    exotel_time,
    now_ist,
    pstn_outcome,
    sip_user,
)

log = get_logger("exoplane.sandbox")

SECRET_QUERY_KEYS = frozenset({"sig", "key", "token", "secret", "password", "api_token"})
PLACEHOLDER_END_TIME = "1970-01-01 05:30:00"  # what Exotel's Passthru sends as EndTime
MAX_FLOW_STEPS = 64
MAX_BODY_CHARS = 2000


class Timing(Protocol):
    time_scale: float
    ring_seconds: float
    talk_seconds: float
    voicebot_max_seconds: float
    http_timeout_seconds: float
    caller_turns: int
    caller_reply_timeout_seconds: float
    caller_silence_seconds: float


def redact_url(url: str) -> str:
    """The URL without credentials or capability values, fit for the request log."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    query = urlencode(
        [
            (key, "***" if key.lower() in SECRET_QUERY_KEYS else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def outbound_entry(kind: str, method: str, url: str, **extra: Any) -> dict[str, Any]:
    """A request-log entry for a request the sandbox makes, its URL redacted."""
    return {
        "at": exotel_time(now_ist()),
        "direction": "out",
        "kind": kind,
        "method": method,
        "url": redact_url(url),
        **extra,
    }


@dataclass
class FlowContext:
    """What the applets so far have left for the ones after them (Exotel's Passthru fields)."""

    flow: Flow
    call_type: str = "call-attempt"
    dial_status: str = ""
    dial_whom: str = ""
    dial_seconds: int = 0
    legs: list[Leg] = field(default_factory=list)


class Simulator:
    """Runs every simulated call of one sandbox as its own task."""

    def __init__(
        self,
        state: SandboxState,
        timing: Timing,
        http: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.state = state
        self.timing = timing
        self._http = http
        self._tasks: set[asyncio.Task[None]] = set()
        self._hangups: dict[str, asyncio.Event] = {}
        self._started: dict[str, float] = {}
        # Streams run in real time, whatever the time scale: per call, the real seconds spent
        # in finished streams, and when the current stream began.
        self._real_seconds: dict[str, float] = {}
        self._streaming_since: dict[str, float] = {}
        # The audio each call's bot sent, per stream: memory only, served as WAV.
        self.bot_audio: dict[str, list[tuple[int, bytes]]] = {}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, call: SandboxCall) -> None:
        """Simulate ``call`` in the background: placed through the API, or inbound."""
        self._hangups[call.sid] = asyncio.Event()
        self._started[call.sid] = time.monotonic()
        runner = self._inbound if call.direction == "inbound" else self._outbound
        task = asyncio.create_task(self._guarded(call, runner))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def hang_up(self, call: SandboxCall) -> None:
        """The caller hangs up now: a ringing or talking leg ends, a stream gets ``stop``."""
        event = self._hangups.get(call.sid)
        if event is not None:
            event.set()

    def hung_up(self, call: SandboxCall) -> bool:
        event = self._hangups.get(call.sid)
        return event is not None and event.is_set()

    async def _guarded(
        self, call: SandboxCall, runner: Callable[[SandboxCall], Awaitable[None]]
    ) -> None:
        try:
            await runner(call)
        except Exception:
            log.exception("sandbox call simulation failed", call_sid=call.sid)
            if call.status not in TERMINAL:
                self.finish(call, "failed")
        finally:
            self._hangups.pop(call.sid, None)
            self._started.pop(call.sid, None)
            self._real_seconds.pop(call.sid, None)
            self._streaming_since.pop(call.sid, None)

    def now(self, call: SandboxCall) -> datetime:
        """The call's own clock: simulated seconds since it was placed (see ``time_scale``).

        A stream's audio plays in real time, so the clock runs at real time during a stream."""
        started = self._started.get(call.sid)
        if started is None:
            return now_ist()
        now = time.monotonic()
        real = self._real_seconds.get(call.sid, 0.0)
        streaming_since = self._streaming_since.get(call.sid)
        if streaming_since is not None:
            real += now - streaming_since
        elapsed = (now - started - real) / self.timing.time_scale + real
        return call.created_at + timedelta(seconds=elapsed)

    async def _wait(self, call: SandboxCall, seconds: float) -> bool:
        """Wait ``seconds`` of simulated time; ``True`` when the caller hung up meanwhile."""
        event = self._hangups.get(call.sid)
        delay = seconds * self.timing.time_scale
        if event is None:
            await asyncio.sleep(delay)
            return False
        try:
            await asyncio.wait_for(event.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True

    def _touch(self, call: SandboxCall, status: str | None = None) -> None:
        if status is not None:
            call.status = status
        call.updated_at = self.now(call)
        self.state.save_call(call)

    def finish(self, call: SandboxCall, status: str) -> None:
        call.end_time = self.now(call)
        self._touch(call, status)

    # --- calls placed through the API -----------------------------------------------------

    async def _outbound(self, call: SandboxCall) -> None:
        await self._wait(call, 0.2)
        self._touch(call, "ringing")
        if "ringing" in call.callback_events:
            await self.send_callback(call, "ringing")
        first = await self._ring(call, call.from_number, first_leg=True)
        call.legs.append(first)
        if first.status != "completed":
            self.finish(call, first.status)
            await self.send_callback(call, "terminal")
            return
        if call.flow_id is None:
            second = await self._ring(call, call.to_number)
            call.legs.append(second)
            if second.status != "completed":
                self.finish(call, second.status)
                await self.send_callback(call, "terminal")
                return
        call.start_time = self.now(call)
        self._touch(call, "in-progress")
        if "answered" in call.callback_events:
            await self.send_callback(call, "answered")
        flow = self.state.flow(call.account_sid, call.flow_id) if call.flow_id else None
        if call.stream_url:
            await self._connect_voice_ai(call, call.stream_url)
        elif flow is not None:
            await self.run_flow(call, flow)
        else:
            await self._wait(call, call.talk_seconds)
        await self._complete(call)

    async def _complete(self, call: SandboxCall) -> None:
        if call.status in TERMINAL:  # decided meanwhile through the control API
            await self.send_callback(call, "terminal")
            return
        if call.record and call.recording_url is None:
            call.recording_url = fake_recording_url(call.sid)
        self.finish(call, "completed")
        for leg in call.legs:
            if leg.status == "completed" and not leg.on_call_seconds:
                leg.on_call_seconds = call.duration or 0
        await self.send_callback(call, "terminal")

    # --- inbound calls --------------------------------------------------------------------

    async def _inbound(self, call: SandboxCall) -> None:
        flow = self.state.flow(call.account_sid, call.flow_id or "")
        call.start_time = self.now(call)
        self._touch(call, "in-progress")
        if flow is not None:
            await self.run_flow(call, flow)
        if call.status not in TERMINAL:
            self.finish(call, "completed")

    # --- ringing --------------------------------------------------------------------------

    def _answer_of(self, call: SandboxCall, number: str) -> tuple[str, str | None]:
        """How ``number`` answers: (leg status, cause code)."""
        if call.answer == "nobody":
            return "no-answer", CAUSE_CODES["no-answer"]
        if call.answer not in (None, "auto"):
            if number == call.answer:
                return "completed", None
            return "no-answer", CAUSE_CODES["no-answer"]
        username = sip_user(number)
        if username is not None:
            user = self.state.sip_user(call.account_sid, username)
            if user is None or not user.registered:
                return "failed", CAUSE_CODES["unregistered"]
            if not user.answers:
                return "no-answer", CAUSE_CODES["no-answer"]
            return "completed", None
        status = pstn_outcome(number)
        return status, CAUSE_CODES.get(status)

    async def _ring(self, call: SandboxCall, number: str, *, first_leg: bool = False) -> Leg:
        """Ring one leg. The first leg of a placed call answers as the control API decided,
        when it did (even while ringing); every other leg as ``_answer_of`` says."""
        ringing = self.timing.ring_seconds
        timed_out = first_leg and call.ring_timeout is not None and call.ring_timeout < ringing
        if timed_out and call.ring_timeout is not None:
            ringing = call.ring_timeout  # TimeOut: nobody picked up in time
        if await self._wait(call, ringing):
            return Leg(number=number, status="canceled", cause=CAUSE_CODES["canceled"])
        if timed_out:
            return Leg(number=number, status="no-answer", cause=CAUSE_CODES["no-answer"])
        forced = call.outcome if first_leg else None
        if forced is not None:
            return Leg(number=number, status=forced, cause=CAUSE_CODES.get(forced))
        status, cause = self._answer_of(call, number)
        return Leg(number=number, status=status, cause=cause)

    # --- flows ----------------------------------------------------------------------------

    async def run_flow(self, call: SandboxCall, flow: Flow) -> None:
        context = FlowContext(flow=flow)
        positions = {applet.id: n for n, applet in enumerate(flow.applets) if applet.id}
        index = 0
        for _ in range(MAX_FLOW_STEPS):
            if index >= len(flow.applets) or call.status in TERMINAL:
                return
            applet = flow.applets[index]
            if self.hung_up(call) and applet.type != "passthru":
                return  # after a hang-up only the Passthru reports still run
            target: str | None
            if applet.type == "hangup":
                self._step(call, applet, index, outcome="hung up")
                return
            if applet.type == "passthru":
                status = await self._passthru(call, context, applet, index, applet.url or "")
                target = applet.on_302 if status == 302 else applet.next
            elif applet.type == "connect":
                answered = await self._connect(call, context, applet, index)
                target = applet.next if answered else applet.on_no_answer
            else:
                await self._voicebot(call, applet, index)
                target = applet.next
            index = positions[target] if target else index + 1
        self._step(call, flow.applets[index], index, outcome=f"stopped after {MAX_FLOW_STEPS}")

    def _step(
        self,
        call: SandboxCall,
        applet: Applet,
        index: int,
        *,
        outcome: str,
        request: str | None = None,
        status: int | None = None,
        detail: dict[str, Any] | None = None,
        label: str | None = None,
    ) -> None:
        name = applet.id or str(index)
        call.steps.append(
            Step(
                at=exotel_time(self.now(call)),
                applet=f"{name}.{label}" if label else name,
                type="passthru" if label else applet.type,
                request=request,
                status=status,
                outcome=outcome,
                detail=detail or {},
            )
        )
        self.state.save_call(call)

    def applet_parameters(self, call: SandboxCall, context: FlowContext) -> dict[str, str]:
        """The query parameters Exotel's applets send (exotel-facts §3.7)."""
        inbound = call.direction == "inbound"
        now = self.now(call)
        params = {
            "CallSid": call.sid,
            "CallFrom": call.from_number,
            "CallTo": call.to_number if inbound else call.caller_id,
            "From": call.from_number,
            "To": call.to_number if inbound else call.caller_id,
            "Direction": "incoming" if inbound else call.direction,
            "CallStatus": call.status,
            "CallType": context.call_type,
            "Created": call.created_at.strftime("%a, %d %b %Y %H:%M:%S"),
            "StartTime": exotel_time(call.start_time or call.created_at),
            "CurrentTime": exotel_time(now),
            "EndTime": PLACEHOLDER_END_TIME,
            "ForwardedFrom": "",
            "flow_id": context.flow.id,
            "tenant_id": call.account_sid,
            "CustomField": call.custom_field or "",
        }
        if context.dial_status:
            params.update(
                {
                    "DialCallStatus": context.dial_status,
                    "DialCallDuration": str(context.dial_seconds),
                    "DialWhomNumber": context.dial_whom,
                }
            )
            for n, leg in enumerate(context.legs):
                params[f"Legs[{n}][OnCallDuration]"] = str(leg.on_call_seconds)
                params[f"Legs[{n}][CauseCode]"] = leg.cause or "NORMAL_CLEARING"
        if call.recording_url:
            params["RecordingUrl"] = call.recording_url
        return params

    async def _get(
        self, call: SandboxCall, kind: str, url: str, params: Mapping[str, str]
    ) -> tuple[int | None, str, str | None]:
        """GET ``url`` as Exotel's applets do: (status, body, error). Redirects not followed."""
        separator = "&" if urlsplit(url).query else "?"
        full = f"{url}{separator}{urlencode(params)}"
        entry = outbound_entry(kind, "GET", full, call_sid=call.sid)
        timeout = aiohttp.ClientTimeout(total=self.timing.http_timeout_seconds)
        try:
            async with self._http().get(
                full, allow_redirects=False, timeout=timeout, headers={"Exotel-Version": "1.0"}
            ) as response:
                body = (await response.text(errors="replace"))[:MAX_BODY_CHARS]
                entry.update(status=response.status, response=body[:200])
                return response.status, body, None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            entry.update(status=None, error=error)
            return None, "", error
        finally:
            self.state.log(entry)

    async def _passthru(
        self,
        call: SandboxCall,
        context: FlowContext,
        applet: Applet,
        index: int,
        url: str,
        *,
        label: str | None = None,
    ) -> int | None:
        status, _body, error = await self._get(
            call, "passthru", url, self.applet_parameters(call, context)
        )
        branch = "302" if status == 302 else "200"
        self._step(
            call,
            applet,
            index,
            label=label,
            request=redact_url(url),
            status=status,
            outcome=f"branch {branch}" if error is None else f"branch 200 ({error})",
        )
        return status

    async def _connect(
        self, call: SandboxCall, context: FlowContext, applet: Applet, index: int
    ) -> bool:
        numbers, parallel, record = list(applet.numbers), applet.parallel, applet.record
        event_url: str | None = None
        request = None
        if applet.url:
            request = redact_url(applet.url)
            status, body, error = await self._get(
                call, "connect_url", applet.url, self.applet_parameters(call, context)
            )
            plan = _dial_plan(status, body, error)
            if isinstance(plan, str):
                context.dial_status, context.call_type = "failed", "incomplete"
                self._step(call, applet, index, request=request, status=status, outcome=plan)
                return False
            numbers, parallel, record, event_url = plan
        if not numbers:
            context.dial_status, context.call_type = "failed", "incomplete"
            self._step(call, applet, index, request=request, outcome="nothing to dial")
            return False

        legs = await self._dial(call, numbers, parallel=parallel)
        winner = next((leg for leg in legs if leg.status == "completed"), None)
        context.legs = legs
        context.dial_whom = winner.number if winner else numbers[0]
        ringing = self.timing.ring_seconds
        if winner is not None:
            talk_started = self.now(call)
            await self._wait(call, call.talk_seconds)
            talked = round((self.now(call) - talk_started).total_seconds())
            winner.on_call_seconds = talked
            context.dial_status, context.call_type = "completed", "completed"
            context.dial_seconds = round(ringing) + talked
            if record or call.record:
                call.recording_url = fake_recording_url(call.sid)
        else:
            statuses = {leg.status for leg in legs}
            context.dial_status = (
                "busy"
                if statuses == {"busy"}
                else "failed"
                if statuses == {"failed"}
                else "no-answer"
            )
            context.call_type = "incomplete"
            context.dial_seconds = round(ringing)
        call.legs.extend(legs)
        self._step(
            call,
            applet,
            index,
            request=request,
            status=200 if request else None,
            outcome="answered by " + context.dial_whom if winner else context.dial_status,
            detail={
                "numbers": numbers,
                "parallel": parallel,
                "record": record or call.record,
                "legs": [leg.model_dump() for leg in legs],
            },
        )
        if event_url:
            await self._passthru(
                call, context, applet, index, event_url, label="dial_passthru_event_url"
            )
        return winner is not None

    async def _dial(self, call: SandboxCall, numbers: list[str], *, parallel: bool) -> list[Leg]:
        if not parallel:
            legs = []
            for number in numbers:
                leg = await self._ring(call, number)
                legs.append(leg)
                if leg.status in ("completed", "canceled"):
                    break
            return legs
        if await self._wait(call, self.timing.ring_seconds):
            return [
                Leg(number=n, status="canceled", cause=CAUSE_CODES["canceled"]) for n in numbers
            ]
        legs, answered = [], False
        for number in numbers:
            status, cause = self._answer_of(call, number)
            if status == "completed" and answered:
                status, cause = "canceled", CAUSE_CODES["canceled"]  # another leg won
            answered = answered or status == "completed"
            legs.append(Leg(number=number, status=status, cause=cause))
        return legs

    async def _voicebot(self, call: SandboxCall, applet: Applet, index: int) -> None:
        report = await self._stream(call, applet.url or "", applet)
        self._step(
            call,
            applet,
            index,
            request=redact_url(report.url),
            outcome=f"stream ended by {report.ended_by}: {report.end_reason}",
            detail={"stream_sid": report.stream_sid},
        )

    async def _connect_voice_ai(self, call: SandboxCall, url: str) -> None:
        """Connect Voice AI: the answered call streams straight to the bot; the stream's end
        is the call's."""
        report = await self._stream(call, url, None)
        call.steps.append(
            Step(
                at=exotel_time(self.now(call)),
                applet="StreamUrl",
                type="stream",
                request=redact_url(report.url),
                outcome=f"stream ended by {report.ended_by}: {report.end_reason}",
                detail={"stream_sid": report.stream_sid, "stream_name": call.stream_name},
            )
        )
        self.state.save_call(call)

    async def _stream(self, call: SandboxCall, url: str, applet: Applet | None) -> StreamReport:
        self.state.log(outbound_entry("stream", "WEBSOCKET", url, call_sid=call.sid))
        limit = self.timing.voicebot_max_seconds
        if call.time_limit is not None:
            limit = min(limit, call.time_limit)
        self._streaming_since[call.sid] = began = time.monotonic()
        try:
            report, audio = await run_stream(
                url,
                StreamCall(
                    call_sid=call.sid,
                    account_sid=call.account_sid,
                    from_number=call.from_number,
                    to_number=call.caller_id if call.direction != "inbound" else call.to_number,
                ),
                http=self._http(),
                caller=self.caller_of(call, applet),
                hangup=self._hangups.get(call.sid),
                max_seconds=limit,
            )
        finally:
            self._streaming_since.pop(call.sid, None)
            self._real_seconds[call.sid] = (
                self._real_seconds.get(call.sid, 0.0) + time.monotonic() - began
            )
        document = {**report.model_dump(mode="json"), "url": redact_url(report.url)}
        if call.stream_name and applet is None:
            document["name"] = call.stream_name
        call.streams.append(document)
        self.bot_audio.setdefault(call.sid, []).append((report.sample_rate, audio))
        return report

    def caller_of(self, call: SandboxCall, applet: Applet | None) -> Caller:
        """The caller's script on a stream: the call's, over the applet's, over the settings."""
        script = (call.caller or CallerScript()).over(applet.caller if applet else None)
        timing = self.timing
        return Caller(
            turns=timing.caller_turns if script.turns is None else script.turns,
            utterances=tuple(base64.b64decode(clip) for clip in script.utterances or ()),
            reply_timeout_seconds=script.reply_timeout_seconds
            or timing.caller_reply_timeout_seconds,
            silence_seconds=script.silence_seconds or timing.caller_silence_seconds,
            talk_seconds=script.talk_seconds,
            open_line=bool(script.open_line),
            time_scale=timing.time_scale,
        )

    # --- StatusCallbacks ------------------------------------------------------------------

    async def send_callback(self, call: SandboxCall, event: str) -> None:
        if not call.status_callback:
            return
        fault = self.state.faults.get("callbacks")
        copies = 1
        if fault is not None and fault.fires():
            if fault.latency_seconds:
                await asyncio.sleep(fault.latency_seconds)
            if fault.drop_callbacks:
                call.callbacks_sent.append({"event": event, "dropped": True})
                self.state.save_call(call)
                return
            if fault.duplicate_callbacks:
                copies = 2
        fields = callback_fields(call, event)
        for _ in range(copies):
            call.callbacks_sent.append(await self._post_callback(call, event, fields))
        self.state.save_call(call)

    async def _post_callback(
        self, call: SandboxCall, event: str, fields: dict[str, Any]
    ) -> dict[str, Any]:
        url = call.status_callback or ""
        entry = outbound_entry("status_callback", "POST", url, call_sid=call.sid, fields=fields)
        timeout = aiohttp.ClientTimeout(total=self.timing.http_timeout_seconds)
        try:
            if call.callback_json:
                request = self._http().post(url, json=fields, timeout=timeout)
            else:
                # Exotel's default StatusCallbackContentType is multipart/form-data.
                form = aiohttp.FormData(
                    {key: _form_value(value) for key, value in _flatten(fields).items()},
                    default_to_multipart=True,
                )
                request = self._http().post(url, data=form, timeout=timeout)
            async with request as response:
                entry["status"] = response.status
                return {"event": event, "status": response.status, "fields": fields}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            entry["error"] = str(exc) or type(exc).__name__
            return {"event": event, "error": entry["error"]}
        finally:
            self.state.log(entry)


def callback_fields(call: SandboxCall, event: str) -> dict[str, Any]:
    """A StatusCallback's fields (exotel-facts §3.5): the extra ones when events were asked."""
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
                "Legs": [
                    {"OnCallDuration": leg.on_call_seconds, "Status": leg.status}
                    for leg in call.legs
                ],
            }
        )
    return fields


def _flatten(fields: dict[str, Any]) -> dict[str, Any]:
    """Form encoding of the nested ``Legs``: ``Legs[0][Status]=completed``."""
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, list):
            for n, item in enumerate(value):
                for inner, inner_value in item.items():
                    flat[f"{key}[{n}][{inner}]"] = inner_value
        else:
            flat[key] = value
    return flat


def _form_value(value: Any) -> str:
    return "" if value is None else str(value)


def fake_recording_url(call_sid: str) -> str:
    return f"https://recordings.sandbox.exotel.local/{call_sid}.mp3"


DialPlan = tuple[list[str], bool, bool, str | None]


def _dial_plan(status: int | None, body: str, error: str | None) -> DialPlan | str:
    """The programmable-Connect answer as (numbers, parallel, record, event URL), or why not."""
    if error is not None:
        return f"dynamic URL failed: {error}"
    if status != 200:
        return f"dynamic URL answered HTTP {status}"
    try:
        document = json.loads(body)
        numbers = document["destination"]["numbers"]
    except (ValueError, KeyError, TypeError):
        return "dynamic URL answer is not Connect JSON with destination.numbers"
    if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
        return "destination.numbers is not a list of strings"
    parallel_ringing = document.get("parallel_ringing")
    parallel = isinstance(parallel_ringing, dict) and parallel_ringing.get("activate") is True
    event_url = document.get("dial_passthru_event_url")
    return (
        numbers,
        parallel,
        document.get("record") is True,
        event_url if isinstance(event_url, str) and event_url else None,
    )
