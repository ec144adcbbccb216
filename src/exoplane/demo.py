"""``exoplane demo``: the whole system offline, in one story told as a transcript.

exoplane, the Exotel sandbox and a webhook receiver start on 127.0.0.1 in this process, with
a throw-away SQLite database. The demo seeds a customer, an app, two agents with different
devices, webhook URLs, Exotel credentials and a DID for the ``echo`` bot; then it plays an
answered inbound call, a missed one, a voice-bot test call through a flow and one straight to
the bot (Connect Voice AI), and a click-to-call, checking each
webhook's Standard Webhooks signature and the bot's audio round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import signal
import socket
import tempfile
import time
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from exoplane.config import DEFAULT_RATE_LIMIT, DEFAULT_RETRY_SCHEDULE, Settings
from exoplane.db import create_engine, create_session_factory, unit_of_work, upgrade_schema
from exoplane.sandbox.app import SandboxSettings, create_sandbox_app
from exoplane.sandbox.audio import builtin_clip, echoed
from exoplane.sandbox.state import TERMINAL
from exoplane.security import Vault, load_secret_key
from exoplane.serving import listening_socket, serving, url_of

ACCOUNT_SID = "exoplanedemo"
EXOTEL_KEY, EXOTEL_TOKEN = "demo-api-key", "demo-api-token"
CALLER = "+919812345678"
ALICE_EXOPHONE, BOB_EXOPHONE, BOT_EXOPHONE = "+918047491801", "+918047491802", "+918047491803"
# The sandbox's magic numbers: a number ending in 0002 rings out unanswered.
BOB_PHONE = "+919876500002"
INBOUND_FLOW, BOT_FLOW = "1001", "2001"
TIME_SCALE = 0.02  # three seconds of ringing take 60 ms
WAIT_SECONDS = 20.0
OPERATOR_EMAIL = "demo@example.com"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class DemoFailed(Exception):
    """A step did not do what the demo expected; the message says which and why."""


# --- the transcript -----------------------------------------------------------------------


@dataclass
class Transcript:
    write: Callable[[str], None]
    as_json: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    checks: list[tuple[str, bool]] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.events.append({"section": title})
        if not self.as_json:
            self.write("")
            self.write(title)
            self.write("-" * len(title))

    def line(self, who: str, text: str, **data: Any) -> None:
        self.events.append({"who": who, "text": text, **data})
        if not self.as_json:
            self.write(f"  {who:<9} {text}")

    def check(self, what: str, passed: bool) -> None:
        self.checks.append((what, passed))
        self.line("check", f"{'ok  ' if passed else 'FAIL'} {what}", passed=passed)


def _fixed(text: str) -> Callable[[Any], str]:
    return lambda _body: text


def _short(value: str, keep: int = 8) -> str:
    return value if len(value) <= keep + 1 else value[:keep] + "…"


def _path_of(url: str) -> str:
    """A URL's path with its query keys only: short, and never a capability value."""
    parts = urlsplit(url)
    keys = [pair.split("=", 1)[0] for pair in parts.query.split("&") if pair]
    shown = [f"{key}=…" if key in ("sig", "key", "token") else key for key in keys]
    type_value = next(
        (p.split("=", 1)[1] for p in parts.query.split("&") if p.startswith("type=")), None
    )
    if type_value:
        shown = [f"type={type_value}" if key == "type" else key for key in shown]
    path = UUID.sub(lambda match: match[0][:8] + "…", parts.path)
    return path + ("?" + "&".join(shown) if shown else "")


# --- the three servers --------------------------------------------------------------------


@dataclass
class Webhooks:
    """The integrator's receiver: keeps every webhook with its headers."""

    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        async with self.arrived:
            self.received.append(
                {"path": request.path, "headers": dict(request.headers), "body": body}
            )
            self.arrived.notify_all()
        return web.Response(text="ok")

    async def wait_for(self, call_sid: str, events: list[str]) -> list[dict[str, Any]]:
        def matching() -> list[dict[str, Any]]:
            found = []
            for item in self.received:
                payload = json.loads(item["body"])
                if payload.get("call_sid") == call_sid:
                    found.append({**item, "payload": payload})
            return found

        async with self.arrived:
            try:
                await asyncio.wait_for(
                    self.arrived.wait_for(
                        lambda: {w["payload"]["event"] for w in matching()} >= set(events)
                    ),
                    WAIT_SECONDS,
                )
            except TimeoutError:
                got = sorted({w["payload"]["event"] for w in matching()})
                raise DemoFailed(
                    f"webhooks for call {call_sid}: expected {events}, got {got}"
                ) from None
        return matching()


@contextlib.asynccontextmanager
async def _receiver(webhooks: Webhooks, sock: socket.socket) -> AsyncIterator[None]:
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", webhooks.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


# --- the story ----------------------------------------------------------------------------


class Demo:
    def __init__(
        self,
        transcript: Transcript,
        api: httpx.AsyncClient,
        sandbox: httpx.AsyncClient,
        webhooks: Webhooks,
        urls: dict[str, str],
    ) -> None:
        self.t = transcript
        self.api = api
        self.sandbox = sandbox
        self.webhooks = webhooks
        self.urls = urls
        self.values: dict[str, Any] = {}

    async def request(
        self,
        client: httpx.AsyncClient,
        who: str,
        method: str,
        path: str,
        *,
        expect: int = 200,
        note: Callable[[Any], str] | None = None,
        **kwargs: Any,
    ) -> Any:
        response = await client.request(method, path, **kwargs)
        body = response.json() if response.content else None
        if response.status_code != expect:
            raise DemoFailed(
                f"{method} {path} answered {response.status_code}, expected {expect}: "
                f"{response.text[:500]}"
            )
        suffix = f"  {note(body)}" if note else ""
        self.t.line(who, f"{method:<4} {_path_of(path)}  {response.status_code}{suffix}")
        return body

    # --- setting up -----------------------------------------------------------------------

    async def seed(self, settings: Settings) -> None:
        t = self.t
        t.section("1. Setting up: a customer, an app, two agents, webhooks, Exotel")
        customer_id, customer_secret = await _create_customer(settings)
        t.line("cli", f"exoplane customers create → CustomerID {_short(customer_id)}")
        customer_token = await self.token("customer", customer_id, customer_secret)
        app = await self.request(
            self.api,
            "exoplane",
            "POST",
            "/v2/integrations/app",
            headers={"Authorization": customer_token},
            json={
                "AppName": "Demo helpdesk",
                "ExotelAccountSid": ACCOUNT_SID,
                "ExotelApiKey": EXOTEL_KEY,
                "ExotelApiToken": EXOTEL_TOKEN,
                "ExotelDomain": "mumbai",
                "IsActive": True,
            },
            note=lambda body: f"AppID {_short(body['Data']['AppID'])}",
        )
        app_id = app["Data"]["AppID"]
        app_token = await self.token("app", app_id, app["Data"]["AppSecret"])
        base = f"/v2/integrations/{customer_id}/apps/{app_id}"
        auth = {"Authorization": app_token}
        self.values.update(app_id=app_id, app_token=app_token, base=base)

        receiver = self.urls["receiver"]
        await self.request(
            self.api,
            "exoplane",
            "PUT",
            base + "/settings",
            headers=auth,
            json={
                "popup_url": receiver + "/popup",
                "missed_call_url": receiver + "/missed",
                "callback_url": receiver + "/callback",
                "recording_url": receiver + "/recording",
                "recording_enabled": True,
            },
            note=lambda _: "webhooks → the local receiver, recording on",
        )
        secret = await self.request(
            self.api,
            "exoplane",
            "GET",
            base + "/webhooks/secret",
            headers=auth,
            note=lambda _: "signing secret (kept by the receiver)",
        )
        self.values["signing_secret"] = secret["data"]["secret"]

        agents = {
            "alice": ({"phone": False, "sip": True}, ALICE_EXOPHONE, "+919876500011"),
            "bob": ({"phone": True, "sip": False}, BOB_EXOPHONE, BOB_PHONE),
        }
        for name, (devices, exophone, phone) in agents.items():
            enabled = f"devices: {' and '.join(k for k, on in devices.items() if on)} only"
            user = await self.request(
                self.api,
                "exoplane",
                "POST",
                base + "/users",
                headers=auth,
                expect=201,
                json={
                    "user_id": name,
                    "name": name.title(),
                    "email": f"{name}@example.com",
                    "phone_number": phone,
                    "virtual_number": exophone,
                },
                note=lambda body: f"agent {body['data']['user_id']}",
            )
            self.values[f"{name}_sip"] = user["data"]["sip"]["username"]
            await self.request(
                self.api,
                "exoplane",
                "PUT",
                f"{base}/users/{name}/devices",
                headers=auth,
                json=devices,
                note=_fixed(enabled),
            )
        urls = await self.request(
            self.api,
            "exoplane",
            "GET",
            base + "/flow-urls",
            headers=auth,
            note=lambda _: "the URLs to paste into the Exotel flow",
        )
        flow_urls = urls["data"]

        await self.request(
            self.sandbox,
            "sandbox",
            "POST",
            "/_sandbox/accounts",
            expect=201,
            json={"sid": ACCOUNT_SID, "api_key": EXOTEL_KEY, "api_token": EXOTEL_TOKEN},
            note=lambda _: f"Exotel account {ACCOUNT_SID}",
        )
        passthru = flow_urls["passthru_urls"]
        await self.request(
            self.sandbox,
            "sandbox",
            "POST",
            "/_sandbox/flows",
            expect=201,
            json={
                "account_sid": ACCOUNT_SID,
                "id": INBOUND_FLOW,
                "name": "Helpdesk: Passthru → Connect → Passthru",
                "applets": [
                    {"type": "passthru", "url": passthru["popup"]},
                    {
                        "type": "connect",
                        "url": flow_urls["connect_applet_url"],
                        "on_no_answer": "missed",
                    },
                    {"type": "passthru", "url": passthru["incomingcallhungup"]},
                    {"type": "hangup"},
                    {"id": "missed", "type": "passthru", "url": passthru["missedcall"]},
                ],
            },
            note=lambda body: f"flow {body['id']}: Passthru → Connect (dynamic URL) → Passthru",
        )
        for exophone in (ALICE_EXOPHONE, BOB_EXOPHONE):
            await self.request(
                self.sandbox,
                "sandbox",
                "POST",
                "/_sandbox/exophones",
                expect=201,
                json={"account_sid": ACCOUNT_SID, "number": exophone, "flow_id": INBOUND_FLOW},
                note=lambda body: f"ExoPhone {body['number']} runs flow {INBOUND_FLOW}",
            )
        registration = await self.request(
            self.sandbox,
            "sandbox",
            "POST",
            "/_sandbox/sip/registrations",
            json={
                "account_sid": ACCOUNT_SID,
                "username": self.values["alice_sip"],
                "registered": True,
                "report_url": f"{self.urls['exoplane']}{base}/users/alice/devices/sip/registration",
                "report_token": app_token,
            },
            note=lambda _: "alice's browser registers over SIP",
        )
        report = registration.get("report", {})
        t.line("sandbox", f"→ reported to exoplane: HTTP {report.get('status', report)}")
        devices = await self.request(
            self.api,
            "exoplane",
            "GET",
            f"{base}/users/alice/devices",
            headers=auth,
            note=lambda body: (
                f"alice sip registered={body['data']['devices']['sip'].get('registered')}"
            ),
        )
        t.check(
            "the SIP registration reached exoplane",
            devices["data"]["devices"]["sip"].get("registered") is True,
        )

    async def token(self, entity: str, id_: str, secret: str) -> str:
        body = await self.request(
            self.api,
            "exoplane",
            "POST",
            "/v2/integrations/token",
            json={"Id": id_, "Secret": secret, "Entity": entity},
            note=lambda _: f"{entity} token",
        )
        return str(body["Data"])

    async def seed_voicebot(self, settings: Settings) -> None:
        t = self.t
        t.section("2. Setting up the voice bot: Exotel credentials, a DID for the echo bot")
        api_key, password = await _create_operator(settings)
        self.values["operator_password"] = password
        t.line("cli", "exoplane operators create --role super_admin → API key and password")
        t.line("console", f"{self.urls['exoplane']}/console: {OPERATOR_EMAIL}, password {password}")
        auth = {"Authorization": f"Bearer {api_key}"}
        await self.request(
            self.api,
            "exoplane",
            "PUT",
            "/api/v1/integrations/exotel",
            headers=auth,
            json={
                "account_sid": ACCOUNT_SID,
                "api_key": EXOTEL_KEY,
                "api_token": EXOTEL_TOKEN,
                "api_base_url": self.urls["sandbox"],
            },
            note=lambda body: f"credentials stored: {body.get('credentials_configured')}",
        )
        await self.request(
            self.api,
            "exoplane",
            "PUT",
            "/api/v1/settings",
            headers=auth,
            json={"core_fleet": [self.urls["exoplane"]]},
            note=lambda _: "core fleet: this exoplane",
        )
        did = await self.request(
            self.api,
            "exoplane",
            "POST",
            "/api/v1/integrations/exotel/dids",
            headers=auth,
            expect=201,
            json={
                "number": BOT_EXOPHONE,
                "bot_id": "echo",
                "flow_url": f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/{BOT_FLOW}",
            },
            note=lambda body: f"DID → {_path_of(body['websocket_url'])}",
        )
        await self.request(
            self.sandbox,
            "sandbox",
            "POST",
            "/_sandbox/flows",
            expect=201,
            json={
                "account_sid": ACCOUNT_SID,
                "id": BOT_FLOW,
                "name": "Voicebot",
                "applets": [{"type": "voicebot", "url": did["websocket_url"]}],
            },
            note=lambda body: f"flow {body['id']}: Voicebot → the DID's websocket_url",
        )
        self.values.update(operator_auth=auth, did_id=did["id"])

    # --- the calls ------------------------------------------------------------------------

    async def finished_call(self, call_sid: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            call: dict[str, Any] = (await self.sandbox.get(f"/_sandbox/calls/{call_sid}")).json()
            if call.get("Status") in TERMINAL:
                return call
            await asyncio.sleep(0.05)
        raise DemoFailed(f"call {call_sid} did not end within {WAIT_SECONDS:.0f} s")

    def show_steps(self, call: dict[str, Any]) -> None:
        for step in call["Steps"]:
            request = f" GET {_path_of(step['request'])}" if step.get("request") else ""
            status = f" {step['status']}" if step.get("status") else ""
            self.t.line("sandbox", f"{step['type']:<9}{request}{status} → {step['outcome']}")
        self.t.line("sandbox", f"call {_short(call['Sid'])} ended: {call['Status']}")

    async def show_webhooks(self, call_sid: str, expected: list[str]) -> None:
        """The call's webhooks in the order exoplane raised them (its delivery log's order:
        events raised together may arrive in either order), each with its signature check."""
        received = await self.webhooks.wait_for(call_sid, expected)
        log = await self.request(
            self.api,
            "exoplane",
            "GET",
            self.values["base"] + "/webhooks/deliveries",
            headers={"Authorization": self.values["app_token"]},
            params={"limit": 100},
            note=_fixed("the delivery log: the order events were raised"),
        )
        raised = [delivery["event_id"] for delivery in reversed(log["data"]["deliveries"])]
        received.sort(key=lambda item: raised.index(item["payload"]["event_id"]))
        verifier = Webhook(self.values["signing_secret"])
        order = []
        for item in received:
            payload = item["payload"]
            try:
                verifier.verify(item["body"], item["headers"])
                signed = True
            except WebhookVerificationError:
                signed = False
            order.append(payload["event"])
            detail = {k: v for k, v in payload.items() if k not in ("event", "call_sid")}
            self.t.line(
                "webhook",
                f"{payload['event']:<16} → {item['path']:<11} signature "
                f"{'valid' if signed else 'INVALID'}  {json.dumps(detail)}",
            )
            self.t.check(f"{payload['event']} is signed with the app's secret", signed)
        self.t.check(f"webhooks raised in order: {' → '.join(expected)}", order == expected)

    async def inbound_call(self, title: str, exophone: str, note: str) -> dict[str, Any]:
        """Somebody calls ``exophone``; the finished call, with its flow steps shown."""
        self.t.section(title)
        started = await self.request(
            self.sandbox,
            "sandbox",
            "POST",
            "/_sandbox/inbound",
            expect=201,
            json={"from": CALLER, "to": exophone},
            note=_fixed(f"{CALLER} dials {exophone}{note}"),
        )
        call = await self.finished_call(started["Sid"])
        self.show_steps(call)
        return call

    async def inbound_answered(self) -> None:
        call = await self.inbound_call(
            f"3. Inbound call to alice's ExoPhone {ALICE_EXOPHONE}: answered", ALICE_EXOPHONE, ""
        )
        connect = next(step for step in call["Steps"] if step["type"] == "connect")
        self.t.check(
            "routing rang alice's SIP client only (her phone is off)",
            connect["detail"].get("numbers") == ["sip:" + self.values["alice_sip"].split("@")[0]],
        )
        await self.show_webhooks(
            call["Sid"], ["incoming_call", "call_completed", "recording_ready"]
        )

    async def inbound_missed(self) -> None:
        call = await self.inbound_call(
            f"4. Inbound call to bob's ExoPhone {BOB_EXOPHONE}: nobody answers",
            BOB_EXOPHONE,
            "; bob's phone ends in 0002",
        )
        await self.show_webhooks(call["Sid"], ["incoming_call", "call_missed"])

    async def test_call(self, mode: str = "flow") -> None:
        if mode == "flow":
            title = "5. Voice-bot test call: ring a phone, run the DID's flow to the echo bot"
            how = "Calls/connect with Url"
        else:
            title = "6. Stream-mode test call: ring a phone, connect it straight to the echo bot"
            how = "Calls/connect with StreamUrl (Connect Voice AI)"
        self.t.section(title)
        placed = await self.request(
            self.api,
            "exoplane",
            "POST",
            f"/api/v1/integrations/exotel/dids/{self.values['did_id']}/test-call",
            headers=self.values["operator_auth"],
            json={"to_number": CALLER, "mode": mode},
            note=lambda body: f"{how} → CallSid {_short(body['call_sid'])}",
        )
        call = await self.finished_call(placed["call_sid"])
        self.show_steps(call)
        if not call["Streams"]:
            raise DemoFailed("the test call opened no stream")
        stream = call["Streams"][0]
        for event in stream["events"]:
            details = {k: v for k, v in event.items() if k not in ("t_ms", "dir", "event")}
            arrow = "→ bot" if event["dir"] == "out" else "← bot"
            self.t.line(
                "stream",
                f"{event['t_ms']:>6} ms {arrow} {event['event']}"
                + (f" {json.dumps(details)}" if details else ""),
            )
        self.t.line(
            "stream",
            f"sent {stream['bytes_sent']} bytes of audio in {stream['frames_sent']} frames, "
            f"received {stream['bytes_received']} bytes back, ended by {stream['ended_by']}",
        )
        self.t.check("the stream connected and ended cleanly", stream["error"] is None)
        audio = await self.sandbox.get(f"/_sandbox/calls/{call['Sid']}/audio")
        with wave.open(io.BytesIO(audio.content)) as recording:
            heard = recording.readframes(recording.getnframes())
        turns = len(stream["turns"])
        self.t.check(
            f"audio round trip: the echo bot returned each of the caller's {turns} utterances "
            "byte for byte",
            turns > 0 and echoed(builtin_clip(stream["sample_rate"]), heard) == turns,
        )
        self.t.check(
            "the bot's messages kept Exotel's rules and chunk sizes",
            not stream["violations"] and not stream["chunk_warnings"],
        )

    async def click_to_call(self) -> None:
        self.t.section("7. Click-to-call: alice calls a customer from her browser")
        placed = await self.request(
            self.api,
            "exoplane",
            "POST",
            "/v2/integrations/call/outbound_call",
            headers={"Authorization": self.values["app_token"]},
            json={"app_id": self.values["app_id"], "user_id": "alice", "to": CALLER},
            note=lambda body: f"rings {body['Data']['FromNumber']} then {CALLER}",
        )
        call_sid = placed["Data"]["CallSid"]
        call = await self.finished_call(call_sid)
        legs = ", ".join(f"{leg['number']} {leg['status']}" for leg in call["Legs"])
        self.t.line("sandbox", f"legs: {legs}; call {call['Status']}")
        for callback in call["Callbacks"]:
            self.t.line(
                "sandbox",
                f"StatusCallback {callback['event']:<8} → exoplane {callback.get('status')}",
            )
        await self.show_webhooks(call_sid, ["call_answered", "call_completed"])


async def run_demo(
    write: Callable[[str], None], *, as_json: bool = False, keep: bool = False
) -> bool:
    """Play the demo; ``True`` when every check passed. With ``keep`` everything keeps
    running afterwards (until Ctrl-C) so that the console can be browsed."""
    transcript = Transcript(write, as_json)
    started = time.monotonic()
    socks = {name: listening_socket() for name in ("exoplane", "sandbox", "receiver")}
    urls = {name: url_of(sock) for name, sock in socks.items()}
    webhooks = Webhooks()
    ok = False
    with tempfile.TemporaryDirectory(prefix="exoplane-demo-") as home:
        # Every setting that could send the demo elsewhere or stop it is given here, so that
        # EXOPLANE_* variables meant for a real deployment neither leak in nor get seeded.
        settings = Settings(
            _env_file=None,
            home=Path(home),
            database_url=f"sqlite+aiosqlite:///{Path(home) / 'exoplane.db'}",
            redis_url=None,
            secret_key=None,
            public_url=urls["exoplane"],
            core_fleet=[],
            exotel_api_base_url=urls["sandbox"],
            allow_private_networks=True,
            rate_limit=DEFAULT_RATE_LIMIT,
            media_basic_auth=None,
            media_require_signature=False,
            log_level="error",
            webhook_poll_seconds=0.1,
            webhook_retry_schedule=list(DEFAULT_RETRY_SCHEDULE),
        )
        from exoplane.app import create_app

        engine = create_engine(settings.database_url)
        try:
            await upgrade_schema(engine)
        finally:
            await engine.dispose()
        sandbox_settings = SandboxSettings(
            _env_file=None,
            time_scale=TIME_SCALE,
            ring_seconds=3,
            talk_seconds=5,
            calls_per_minute=200,
            database=None,
        )
        transcript.section("exoplane demo: everything on 127.0.0.1, nothing leaves this machine")
        for name, url in urls.items():
            transcript.line(name, url)
        try:
            async with (
                serving(
                    create_app(settings, run_worker=True), socks["exoplane"], timeout=WAIT_SECONDS
                ),
                serving(
                    create_sandbox_app(sandbox_settings), socks["sandbox"], timeout=WAIT_SECONDS
                ),
                _receiver(webhooks, socks["receiver"]),
                httpx.AsyncClient(base_url=urls["exoplane"], timeout=WAIT_SECONDS) as api,
                httpx.AsyncClient(base_url=urls["sandbox"], timeout=WAIT_SECONDS) as sandbox,
            ):
                demo = Demo(transcript, api, sandbox, webhooks, urls)
                await demo.seed(settings)
                await demo.seed_voicebot(settings)
                await demo.inbound_answered()
                await demo.inbound_missed()
                await demo.test_call()
                await demo.test_call("stream")
                await demo.click_to_call()
                ok = all(passed for _, passed in transcript.checks)
                if keep:
                    console_url = f"{urls['exoplane']}/console"
                    await _hold(transcript, console_url, demo.values["operator_password"])
        except DemoFailed as exc:
            transcript.line("error", str(exc))
        finally:
            for sock in socks.values():
                sock.close()
    failed = [what for what, passed in transcript.checks if not passed]
    seconds = time.monotonic() - started
    transcript.section("Result")
    transcript.line(
        "demo",
        f"{len(transcript.checks) - len(failed)}/{len(transcript.checks)} checks passed "
        f"in {seconds:.1f} s" + ("" if ok else " - FAILED"),
        ok=ok,
        seconds=round(seconds, 2),
    )
    if as_json:
        write(json.dumps({"ok": ok, "seconds": round(seconds, 2), "events": transcript.events}))
    return ok


async def _create_customer(settings: Settings) -> tuple[str, str]:
    from exoplane.integrations.service import create_customer

    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            vault = Vault(load_secret_key(settings))
            customer, secret = await create_customer(session, vault, "Demo customer")
            return customer.id, secret
    finally:
        await engine.dispose()


async def _create_operator(settings: Settings) -> tuple[str, str]:
    """The demo operator's API key and (for the console) password."""
    from exoplane.voicebot.service import create_operator

    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            created = await create_operator(session, OPERATOR_EMAIL, "super_admin")
            return created.api_key, created.password
    finally:
        await engine.dispose()


async def _hold(transcript: Transcript, console_url: str, password: str) -> None:
    """Keep everything running until Ctrl-C or SIGTERM, so the console can be browsed."""
    transcript.section("Still running: the console is yours to browse")
    transcript.line("console", f"open {console_url} and sign in as {OPERATOR_EMAIL}")
    transcript.line("console", f"password {password}")
    transcript.line("demo", "Ctrl-C stops everything and removes the demo's database")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await stop.wait()
    finally:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)
