"""The sandbox's flows, inbound calls, SIP registrations and store, against real HTTP peers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from asgi_lifespan import LifespanManager

from exoplane.sandbox import state as state_module
from exoplane.sandbox.app import SandboxSettings, create_sandbox_app
from exoplane.sandbox.state import TERMINAL
from exoplane.sandbox.store import SqliteStore
from tests.sandbox.conftest import signed_in
from tests.waiting import polled
from tests.webhooks.receiver import Receiver, running_receiver

SID, KEY, TOKEN = "flowtest", "flow-key", "flow-token"
EXOPHONE = "+918047490100"
CALLER = "+919812340000"


@dataclass
class Integrator:
    """The integrator's side of a flow: Passthru and Connect URLs on a real port."""

    base_url: str = ""
    passthru_status: dict[str, int] = field(default_factory=dict)
    connect_answer: Any = None
    connect_status: int = 200
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append((request.path, dict(request.query)))
        if request.path.startswith("/connect"):
            return web.Response(
                status=self.connect_status,
                text=json.dumps(self.connect_answer),
                content_type="application/json",
            )
        status = self.passthru_status.get(request.path, 200)
        if status == 302:
            return web.Response(status=302, headers={"Location": "/elsewhere"})
        return web.Response(status=status, text="ok")

    def queries(self, path: str) -> list[dict[str, str]]:
        return [query for hit, query in self.hits if hit == path]


@pytest.fixture
async def integrator() -> AsyncIterator[Integrator]:
    peer = Integrator()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", peer.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    peer.base_url = f"http://127.0.0.1:{port}"
    yield peer
    await runner.cleanup()


def sandbox_settings(**overrides: Any) -> SandboxSettings:
    values: dict[str, Any] = {"time_scale": 0.01, "talk_seconds": 5, **overrides}
    return SandboxSettings(_env_file=None, **values)


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(sandbox_settings(), SID, KEY, TOKEN) as http:
        yield http


async def add_flow(http: httpx.AsyncClient, applets: list[dict[str, Any]]) -> str:
    response = await http.post("/_sandbox/flows", json={"account_sid": SID, "applets": applets})
    assert response.status_code == 201, response.text
    flow_id: str = response.json()["id"]
    phone = {"account_sid": SID, "number": EXOPHONE, "flow_id": flow_id}
    assert (await http.post("/_sandbox/exophones", json=phone)).status_code == 201
    return flow_id


async def call_in(http: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    """An inbound call to the ExoPhone, waited for until it ends."""
    response = await http.post("/_sandbox/inbound", json={"from": CALLER, "to": EXOPHONE, **extra})
    assert response.status_code == 201, response.text
    return await finished(http, response.json()["Sid"])


async def finished(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:

    async def fetch() -> dict[str, Any]:
        call: dict[str, Any] = (await http.get(f"/_sandbox/calls/{sid}")).json()
        return call

    return await polled(fetch, lambda call: call["Status"] in TERMINAL, what=f"call {sid} ending")


# --- Passthru -----------------------------------------------------------------------------


async def test_passthru_gets_exotels_parameters_for_an_inbound_call(
    sandbox: httpx.AsyncClient, integrator: Integrator
) -> None:
    flow_id = await add_flow(sandbox, [{"type": "passthru", "url": integrator.url("/p?x=1")}])

    call = await call_in(sandbox, custom_field="ticket-9")

    (query,) = integrator.queries("/p")
    assert query["x"] == "1"  # the configured query survives
    assert query["CallSid"] == call["Sid"]
    assert query["CallFrom"] == query["From"] == CALLER
    assert query["CallTo"] == query["To"] == EXOPHONE
    assert query["Direction"] == "incoming"
    assert query["CallType"] == "call-attempt"
    assert query["EndTime"] == "1970-01-01 05:30:00"
    assert query["flow_id"] == flow_id
    assert query["CustomField"] == "ticket-9"
    assert "DialCallStatus" not in query
    assert call["Direction"] == "inbound"
    assert call["Status"] == "completed"


@pytest.mark.parametrize(("status", "taken"), [(200, "/a"), (302, "/b"), (500, "/a")])
async def test_passthru_branches_on_200_and_302(
    sandbox: httpx.AsyncClient, integrator: Integrator, status: int, taken: str
) -> None:
    integrator.passthru_status["/check"] = status
    await add_flow(
        sandbox,
        [
            {"type": "passthru", "url": integrator.url("/check"), "on_302": "b"},
            {"type": "passthru", "url": integrator.url("/a")},
            {"type": "hangup"},
            {"id": "b", "type": "passthru", "url": integrator.url("/b")},
        ],
    )

    call = await call_in(sandbox)

    assert [path for path, _ in integrator.hits] == ["/check", taken]
    assert call["Steps"][0]["status"] == status


# --- Connect ------------------------------------------------------------------------------


async def test_connect_rings_numbers_in_turn_until_one_answers(
    sandbox: httpx.AsyncClient, integrator: Integrator
) -> None:
    busy, answering = "+919800000001", "+919800000042"
    await add_flow(
        sandbox,
        [
            {"type": "connect", "numbers": [busy, answering], "record": True},
            {"type": "passthru", "url": integrator.url("/after")},
        ],
    )

    call = await call_in(sandbox)

    (after,) = integrator.queries("/after")
    assert [(leg["number"], leg["status"]) for leg in call["Legs"]] == [
        (busy, "busy"),
        (answering, "completed"),
    ]
    assert after["DialCallStatus"] == "completed"
    assert after["DialWhomNumber"] == answering
    assert after["CallType"] == "completed"
    assert int(after["DialCallDuration"]) >= 5
    assert after["RecordingUrl"].endswith(f"{call['Sid']}.mp3")
    assert after["Legs[0][CauseCode]"] == "USER_BUSY"


async def test_connect_follows_the_dynamic_urls_answer_in_parallel(
    sandbox: httpx.AsyncClient, integrator: Integrator
) -> None:
    first, second = "+919800000051", "+919800000052"
    integrator.connect_answer = {
        "destination": {"numbers": [first, second]},
        "parallel_ringing": {"activate": True, "max_parallel_attempts": 2},
        "record": False,
        "dial_passthru_event_url": integrator.url("/event"),
    }
    await add_flow(sandbox, [{"type": "connect", "url": integrator.url("/connect?sig=s3cr3t")}])

    call = await call_in(sandbox)

    (asked,) = integrator.queries("/connect")
    (event,) = integrator.queries("/event")
    connect = next(step for step in call["Steps"] if step["type"] == "connect")
    assert asked["CallTo"] == EXOPHONE
    assert connect["detail"]["parallel"] is True
    assert [leg["status"] for leg in connect["detail"]["legs"]] == ["completed", "canceled"]
    assert event["DialCallStatus"] == "completed"
    assert "s3cr3t" not in json.dumps(call)  # capabilities are redacted from the record
    assert call["RecordingUrl"] is None


@pytest.mark.parametrize(
    ("status", "answer"),
    [(200, {"destination": {}}), (200, "not json"), (500, {"destination": {"numbers": []}})],
)
async def test_a_bad_dynamic_url_answer_takes_the_no_answer_branch(
    sandbox: httpx.AsyncClient, integrator: Integrator, status: int, answer: Any
) -> None:
    integrator.connect_status, integrator.connect_answer = status, answer
    await add_flow(
        sandbox,
        [
            {"type": "connect", "url": integrator.url("/connect"), "on_no_answer": "missed"},
            {"type": "hangup"},
            {"id": "missed", "type": "passthru", "url": integrator.url("/missed")},
        ],
    )

    call = await call_in(sandbox)

    (missed,) = integrator.queries("/missed")
    assert missed["DialCallStatus"] == "failed"
    assert missed["CallType"] == "incomplete"
    assert call["Steps"][0]["outcome"].startswith(("dynamic URL", "destination"))


async def test_sip_destinations_ring_only_while_registered(
    sandbox: httpx.AsyncClient, integrator: Integrator
) -> None:
    await add_flow(
        sandbox,
        [
            {"type": "connect", "numbers": ["sip:alice"], "on_no_answer": "missed"},
            {"type": "hangup"},
            {"id": "missed", "type": "passthru", "url": integrator.url("/missed")},
        ],
    )

    unregistered = await call_in(sandbox)
    register = {"account_sid": SID, "username": "sip:alice@x.exotel.com", "registered": True}
    assert (await sandbox.post("/_sandbox/sip/registrations", json=register)).status_code == 200
    registered = await call_in(sandbox)
    silent = {**register, "answers": False}
    await sandbox.post("/_sandbox/sip/registrations", json=silent)
    not_picking_up = await call_in(sandbox)

    assert unregistered["Legs"][0] == {
        "number": "sip:alice",
        "status": "failed",
        "cause": "USER_NOT_REGISTERED",
        "on_call_seconds": 0,
    }
    assert registered["Legs"][0]["status"] == "completed"
    assert not_picking_up["Legs"][0]["status"] == "no-answer"
    assert [q["DialCallStatus"] for q in integrator.queries("/missed")] == ["failed", "no-answer"]


async def test_the_inbound_answer_option_picks_who_answers(
    sandbox: httpx.AsyncClient, integrator: Integrator
) -> None:
    await add_flow(sandbox, [{"type": "connect", "numbers": ["+919800000061", "+919800000062"]}])

    nobody = await call_in(sandbox, answer="nobody")
    second = await call_in(sandbox, answer="+919800000062")

    assert [leg["status"] for leg in nobody["Legs"]] == ["no-answer", "no-answer"]
    assert [leg["status"] for leg in second["Legs"]] == ["no-answer", "completed"]


async def test_a_hang_up_ends_the_conversation_but_later_passthrus_still_report(
    integrator: Integrator,
) -> None:
    slow = sandbox_settings(time_scale=0.02, talk_seconds=600)
    async with LifespanManager(create_sandbox_app(slow)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as http:
            await http.post(
                "/_sandbox/accounts", json={"sid": SID, "api_key": KEY, "api_token": TOKEN}
            )
            await add_flow(
                http,
                [
                    {"type": "connect", "numbers": ["+919800000071"]},
                    {"type": "passthru", "url": integrator.url("/hungup")},
                    {"type": "connect", "numbers": ["+919800000072"]},
                ],
            )
            sid = (
                await http.post("/_sandbox/inbound", json={"from": CALLER, "to": EXOPHONE})
            ).json()["Sid"]
            await asyncio.sleep(0.2)  # rung (60 ms) and talking
            hung_up = await http.post(f"/_sandbox/calls/{sid}/hangup")
            call = await finished(http, sid)
            again = await http.post(f"/_sandbox/calls/{sid}/hangup")

    assert hung_up.status_code == 200
    assert call["Status"] == "completed"
    assert len(integrator.queries("/hungup")) == 1
    assert [step["type"] for step in call["Steps"]] == ["connect", "passthru"]
    assert again.status_code == 409


# --- control API --------------------------------------------------------------------------


async def test_an_inbound_call_needs_a_known_exophone_with_a_flow(
    sandbox: httpx.AsyncClient,
) -> None:
    unknown = await sandbox.post("/_sandbox/inbound", json={"from": CALLER, "to": "+9180000"})
    await sandbox.post("/_sandbox/exophones", json={"account_sid": SID, "number": EXOPHONE})
    flowless = await sandbox.post("/_sandbox/inbound", json={"from": CALLER, "to": EXOPHONE})

    assert unknown.status_code == 404
    assert unknown.json()["error"]["field"] == "to"
    assert flowless.status_code == 409
    assert flowless.json()["error"]["code"] == "no_flow"


@pytest.mark.parametrize(
    ("applets", "message"),
    [
        ([{"type": "passthru"}], "needs a url"),
        ([{"type": "connect"}], "dynamic url or numbers"),
        ([{"type": "passthru", "url": "http://x", "next": "nowhere"}], "names no applet"),
        ([{"type": "voicebot", "url": "ftp://x"}], "http(s) or ws(s)"),
        ([{"type": "dance"}], "type"),
        ([], "at least 1"),
    ],
)
async def test_a_bad_flow_is_refused_with_the_reason(
    sandbox: httpx.AsyncClient, applets: list[dict[str, Any]], message: str
) -> None:
    response = await sandbox.post("/_sandbox/flows", json={"account_sid": SID, "applets": applets})

    assert response.status_code == 422
    assert message in response.text


async def test_flows_of_unknown_accounts_are_refused(sandbox: httpx.AsyncClient) -> None:
    response = await sandbox.post(
        "/_sandbox/flows", json={"account_sid": "nobody", "applets": [{"type": "hangup"}]}
    )

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "unknown_account",
        "message": "No account nobody: create it first",
        "field": "account_sid",
    }


async def test_a_flow_url_selects_the_flow_for_calls_connect(
    sandbox: httpx.AsyncClient, integrator: Integrator
) -> None:
    created = await sandbox.post(
        "/_sandbox/flows",
        json={
            "account_sid": SID,
            "applets": [{"type": "passthru", "url": integrator.url("/api-call")}],
        },
    )
    url = created.json()["url"]
    wrong_account = url.replace(f"/{SID}/", "/other/")
    unknown_flow = url.rsplit("/", 1)[0] + "/999999"

    placed = await sandbox.post(
        f"/v1/Accounts/{SID}/Calls/connect.json",
        data={"From": "+919800000081", "CallerId": EXOPHONE, "Url": url, "CustomField": "c1"},
    )
    call = await finished(sandbox, placed.json()["Call"]["Sid"])
    refused = [
        await sandbox.post(
            f"/v1/Accounts/{SID}/Calls/connect.json",
            data={"From": "+919800000081", "CallerId": EXOPHONE, "Url": bad},
        )
        for bad in (wrong_account, unknown_flow, "https://example.com/flow")
    ]

    (query,) = integrator.queries("/api-call")
    assert url == f"http://my.exotel.com/{SID}/exoml/start_voice/{created.json()['id']}"
    assert query["Direction"] == "outbound-api"
    assert query["CallFrom"] == "+919800000081"
    assert query["CallTo"] == EXOPHONE
    assert query["CustomField"] == "c1"
    assert call["To"] == EXOPHONE
    assert [r.status_code for r in refused] == [400, 400, 400]
    assert "names account other" in refused[0].json()["RestException"]["Message"]
    assert "No flow 999999" in refused[1].json()["RestException"]["Message"]


async def test_sip_registrations_are_reported_with_the_token_kept_out_of_the_log(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    response = await sandbox.post(
        "/_sandbox/sip/registrations",
        json={
            "account_sid": SID,
            "username": "bob",
            "registered": True,
            "report_url": receiver.url("/registration?sig=capability-value"),
            "report_token": "app-token-value",
            "expires_in": 120,
        },
    )
    (report,) = await receiver.wait_for(1)
    log = json.dumps((await sandbox.get("/_sandbox/requests")).json())

    assert response.json()["report"] == {"status": 200}
    assert report.json == {"registered": True, "expires_in": 120}
    assert report.headers["Authorization"] == "Bearer app-token-value"
    assert "app-token-value" not in log
    assert "capability-value" not in log


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


async def test_status_callbacks_carry_legs_in_both_content_types(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    base = {
        "From": "+919800000091",
        "To": "+919800000001",  # the second leg is busy
        "CallerId": EXOPHONE,
        "StatusCallback": receiver.url("/status"),
        "StatusCallbackEvents[0]": "terminal",
    }
    await sandbox.post(f"/v1/Accounts/{SID}/Calls/connect", data=base)
    json_call = {**base, "StatusCallbackContentType": "application/json"}
    await sandbox.post(f"/v1/Accounts/{SID}/Calls/connect", data=json_call)
    form, as_json = sorted(await receiver.wait_for(2), key=lambda r: r.body.startswith("{"))

    assert 'name="Legs[0][Status]"\r\n\r\ncompleted' in form.body
    assert 'name="Legs[1][Status]"\r\n\r\nbusy' in form.body
    assert as_json.json["Status"] == "busy"
    assert as_json.json["Legs"] == [
        {"OnCallDuration": 0, "Status": "completed"},
        {"OnCallDuration": 0, "Status": "busy"},
    ]


async def test_duplicated_callbacks_arrive_twice(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    await sandbox.post("/_sandbox/faults", json={"route": "callbacks", "duplicate_callbacks": True})
    await sandbox.post(
        f"/v1/Accounts/{SID}/Calls/connect",
        data={
            "From": "+919800000093",
            "To": "+919800000094",
            "CallerId": EXOPHONE,
            "StatusCallback": receiver.url("/status"),
            "StatusCallbackContentType": "application/json",
        },
    )

    first, second = await receiver.wait_for(2)
    faults = (await sandbox.get("/_sandbox/faults")).json()

    assert first.json == second.json
    assert faults[0]["duplicate_callbacks"] is True


async def test_call_details_with_details_true_add_the_legs(sandbox: httpx.AsyncClient) -> None:
    placed = await sandbox.post(
        f"/v1/Accounts/{SID}/Calls/connect.json",
        data={"From": "+919800000095", "To": "+919800000002", "CallerId": EXOPHONE},
    )
    sid = placed.json()["Call"]["Sid"]
    await finished(sandbox, sid)

    details = await sandbox.get(f"/v1/Accounts/{SID}/Calls/{sid}.json?details=true")

    call = details.json()["Call"]
    assert call["Status"] == "no-answer"
    assert call["Details"]["Leg1Status"] == "completed"
    assert call["Details"]["Leg2Status"] == "no-answer"
    assert [leg["Leg"]["Id"] for leg in call["Details"]["Legs"]] == [1, 2]


# --- the SQLite file ----------------------------------------------------------------------


async def test_a_sandbox_file_keeps_its_state_across_restarts(tmp_path: Path) -> None:
    settings = sandbox_settings(database=tmp_path / "sandbox.db", time_scale=1.0)
    async with LifespanManager(create_sandbox_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as http:
            await http.post(
                "/_sandbox/accounts", json={"sid": SID, "api_key": KEY, "api_token": TOKEN}
            )
            flow_id = await add_flow(http, [{"type": "connect", "numbers": ["+919800000099"]}])
            sid = (
                await http.post("/_sandbox/inbound", json={"from": CALLER, "to": EXOPHONE})
            ).json()["Sid"]
            # The sandbox stops while the call rings (three simulated seconds).

    async with LifespanManager(create_sandbox_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://s", auth=(KEY, TOKEN)
        ) as http:
            flows = (await http.get("/_sandbox/flows")).json()
            phones = (await http.get("/_sandbox/exophones")).json()
            call = (await http.get(f"/_sandbox/calls/{sid}")).json()
            requests = (await http.get("/_sandbox/requests")).json()
            authorised = await http.get(f"/v1/Accounts/{SID}/Calls/{sid}.json")
            await http.post("/_sandbox/reset")

    async with LifespanManager(create_sandbox_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://s") as http:
            after_reset = (await http.get("/_sandbox/flows")).json()

    assert [flow["id"] for flow in flows] == [flow_id]
    assert phones[0]["number"] == EXOPHONE
    assert call["Status"] == "failed"  # it was cut off by the stop
    assert authorised.status_code == 200  # the account and its credentials survived
    assert isinstance(requests, list)
    assert after_reset == []


def test_the_request_log_keeps_the_latest_entries_in_memory_and_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "MAX_LOGGED_REQUESTS", 3)
    store = SqliteStore(tmp_path / "sandbox.db")
    state = state_module.SandboxState(store)
    for n in range(5):
        state.log({"n": n})
    store.close()

    reopened = SqliteStore(tmp_path / "sandbox.db")
    again = state_module.SandboxState(reopened)
    again.log({"n": 5})
    reopened.close()

    assert state.requests == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert again.requests == [{"n": 3}, {"n": 4}, {"n": 5}]
