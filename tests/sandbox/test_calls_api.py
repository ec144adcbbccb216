"""The sandbox's v1 Calls API: Exotel's formats, errors, rate limit, simulated outcomes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from defusedxml import ElementTree

from exoplane.sandbox.app import SandboxSettings, create_sandbox_app
from tests.sandbox.conftest import signed_in
from tests.waiting import polled
from tests.webhooks.receiver import Receiver, running_receiver

SID, KEY, TOKEN = "exoteldemo", "sandbox-key", "sandbox-token"
CONNECT = f"/v1/Accounts/{SID}/Calls/connect"


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    settings = SandboxSettings(_env_file=None, time_scale=0.01, calls_per_minute=200)
    flow = {"account_sid": SID, "id": "1234", "applets": [{"type": "hangup"}]}
    async with signed_in(settings, SID, KEY, TOKEN, flow) as http:
        yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


FLOW_CALL = {
    "From": "09876543210",
    "CallerId": "08047491899",
    "Url": f"http://my.exotel.com/{SID}/exoml/start_voice/1234",
    "CallType": "trans",
}


def sandbox_calls(sandbox: httpx.AsyncClient) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """Reads the sandbox's calls, for ``polled``."""

    async def calls() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = (await sandbox.get("/_sandbox/calls")).json()
        return listed

    return calls


async def test_connect_to_flow_answers_exotels_xml_by_default(
    sandbox: httpx.AsyncClient,
) -> None:
    response = await sandbox.post(CONNECT, data=FLOW_CALL)

    root = ElementTree.fromstring(response.text)
    call = root.find("Call")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert root.tag == "TwilioResponse"
    assert call is not None
    assert len(call.findtext("Sid") or "") == 32
    assert call.findtext("AccountSid") == SID
    assert call.findtext("From") == "09876543210"
    assert call.findtext("Direction") == "outbound-api"
    assert call.findtext("Status") == "queued"


async def test_connect_json_answers_exotels_json_shape(sandbox: httpx.AsyncClient) -> None:
    response = await sandbox.post(CONNECT + ".json", data=FLOW_CALL)

    call = response.json()["Call"]
    assert response.status_code == 200
    assert {"Sid", "AccountSid", "To", "From", "Status", "Direction", "Uri", "RecordingUrl"} <= set(
        call
    )
    assert call["Uri"] == f"/v1/Accounts/{SID}/Calls/{call['Sid']}.json"


async def test_connect_two_numbers_is_accepted(sandbox: httpx.AsyncClient) -> None:
    response = await sandbox.post(
        CONNECT + ".json", data={"From": "sip:agent", "To": "09876543210", "CallerId": "080474"}
    )

    assert response.status_code == 200
    assert response.json()["Call"]["To"] == "09876543210"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"CallerId": "080", "Url": "http://x"}, "From"),
        ({"From": "0987", "Url": "http://x"}, "CallerId"),
        ({"From": "0987", "CallerId": "080"}, "To, Url or StreamUrl"),
        ({**FLOW_CALL, "To": "0987"}, "not both"),
        ({**FLOW_CALL, "CustomField": "x" * 129}, "128"),
    ],
)
@pytest.mark.parametrize("suffix", ["", ".json"])
async def test_bad_parameters_are_a_400_rest_exception(
    sandbox: httpx.AsyncClient, fields: dict[str, str], words: str, suffix: str
) -> None:
    response = await sandbox.post(CONNECT + suffix, data=fields)

    assert response.status_code == 400
    assert words in _rest_exception_message(response, suffix)


async def test_wrong_credentials_are_a_401_rest_exception(sandbox: httpx.AsyncClient) -> None:
    response = await sandbox.post(CONNECT + ".json", data=FLOW_CALL, auth=("sandbox-key", "wrong"))

    assert response.status_code == 401
    assert response.json()["RestException"]["Status"] == 401


async def test_an_unknown_account_or_call_is_404(sandbox: httpx.AsyncClient) -> None:
    unknown_account = await sandbox.post("/v1/Accounts/nobody/Calls/connect.json", data=FLOW_CALL)
    unknown_call = await sandbox.get(f"/v1/Accounts/{SID}/Calls/{'0' * 32}")

    assert unknown_account.status_code == 404
    assert unknown_call.status_code == 404
    assert "not found" in _rest_exception_message(unknown_call, "")


async def test_the_201st_call_in_a_minute_is_429(sandbox: httpx.AsyncClient) -> None:
    statuses = [
        (await sandbox.post(CONNECT + ".json", data=FLOW_CALL)).status_code for _ in range(200)
    ]
    limited = await sandbox.post(CONNECT + ".json", data=FLOW_CALL)

    assert statuses == [200] * 200
    assert limited.status_code == 429
    assert limited.json()["RestException"]["Status"] == 429


async def test_status_callback_events_arrive_in_both_array_forms(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    indexed = {
        **FLOW_CALL,
        "StatusCallback": receiver.url("/indexed"),
        "StatusCallbackEvents[0]": "answered",
        "StatusCallbackEvents[1]": "terminal",
    }
    repeated = httpx.QueryParams(
        [
            *FLOW_CALL.items(),
            ("StatusCallback", receiver.url("/repeated")),
            ("StatusCallbackEvents[]", "answered"),
            ("StatusCallbackEvents[]", "terminal"),
        ]
    )

    await sandbox.post(CONNECT, data=indexed)
    await sandbox.post(
        CONNECT,
        content=str(repeated),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    received = await receiver.wait_for(4)

    by_path: dict[str, list[str]] = {}
    for item in received:
        by_path.setdefault(item.path, []).append(_field(item.body, "EventType"))
    assert by_path == {"/indexed": ["answered", "terminal"], "/repeated": ["answered", "terminal"]}


@pytest.mark.parametrize(
    ("number", "outcome"),
    [
        ("09876543210", "completed"),
        ("09876540001", "busy"),
        ("09876540002", "no-answer"),
        ("09876540003", "failed"),
    ],
)
@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/json"])
async def test_each_outcome_reaches_call_details_and_the_status_callback(
    sandbox: httpx.AsyncClient, receiver: Receiver, number: str, outcome: str, content_type: str
) -> None:
    placed = await sandbox.post(
        CONNECT + ".json",
        data={
            **FLOW_CALL,
            "From": number,
            "StatusCallback": receiver.url("/status"),
            "StatusCallbackEvents[0]": "terminal",
            "StatusCallbackContentType": content_type,
            "Record": "true",
        },
    )
    sid = placed.json()["Call"]["Sid"]
    (terminal,) = await receiver.wait_for(1)
    details = (await sandbox.get(f"/v1/Accounts/{SID}/Calls/{sid}.json")).json()["Call"]

    expected_type = "application/json" if content_type == "application/json" else "multipart"
    assert terminal.headers["Content-Type"].startswith(expected_type)
    assert _field(terminal.body, "CallSid") == sid
    assert _field(terminal.body, "Status") == outcome
    assert _field(terminal.body, "EventType") == "terminal"
    assert details["Status"] == outcome
    assert bool(details["RecordingUrl"]) is (outcome == "completed")


async def test_a_time_out_shorter_than_the_ringing_rings_out_as_no_answer(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    rung_out = {**FLOW_CALL, "TimeOut": "2", "StatusCallback": receiver.url("/short")}
    answered = {**FLOW_CALL, "TimeOut": "30", "StatusCallback": receiver.url("/long")}

    await sandbox.post(CONNECT + ".json", data=rung_out)
    await sandbox.post(CONNECT + ".json", data=answered)
    received = await receiver.wait_for(2)

    statuses = {item.path: _field(item.body, "Status") for item in received}
    assert statuses == {"/short": "no-answer", "/long": "completed"}


async def test_an_explicit_outcome_overrides_the_magic_number(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    slow = SandboxSettings(_env_file=None, time_scale=0.05)
    async with LifespanManager(create_sandbox_app(slow)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://s", auth=(KEY, TOKEN)
        ) as http:
            await http.post(
                "/_sandbox/accounts", json={"sid": SID, "api_key": KEY, "api_token": TOKEN}
            )
            flow = {"account_sid": SID, "id": "1234", "applets": [{"type": "hangup"}]}
            await http.post("/_sandbox/flows", json=flow)
            placed = await http.post(
                CONNECT + ".json", data={**FLOW_CALL, "StatusCallback": receiver.url("/s")}
            )
            sid = placed.json()["Call"]["Sid"]
            decided = await http.post(f"/_sandbox/calls/{sid}/outcome", json={"status": "busy"})
            (terminal,) = await receiver.wait_for(1)

    assert decided.status_code == 200
    assert _field(terminal.body, "Status") == "busy"


async def test_injected_faults_answer_with_their_status(sandbox: httpx.AsyncClient) -> None:
    await sandbox.post("/_sandbox/faults", json={"route": "calls_connect", "status": 503})

    response = await sandbox.post(CONNECT + ".json", data=FLOW_CALL)

    assert response.status_code == 503


async def test_a_reply_latency_places_the_call_before_the_answer_leaves(
    sandbox: httpx.AsyncClient,
) -> None:
    fault = {"route": "calls_connect", "reply_latency_seconds": 0.5}
    assert (await sandbox.post("/_sandbox/faults", json=fault)).status_code == 201

    placing = asyncio.create_task(sandbox.post(CONNECT + ".json", data=FLOW_CALL))
    calls = await polled(sandbox_calls(sandbox), bool, what="the call being placed", every=0.01)
    placed_at = time.monotonic()
    response = await placing

    assert time.monotonic() - placed_at >= 0.4
    assert response.status_code == 200
    assert response.json()["Call"]["Sid"] == calls[0]["Sid"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            {"route": "callbacks", "reply_latency_seconds": 1},
            "reply_latency_seconds applies to the calls_connect route only",
        ),
        (
            {"route": "callbacks", "status": 503},
            "status applies to the calls_connect and call_details routes only",
        ),
        (
            {"route": "calls_connect", "drop_callbacks": True},
            "drop_callbacks applies to the callbacks route only",
        ),
        (
            {"route": "call_details", "duplicate_callbacks": True},
            "duplicate_callbacks applies to the callbacks route only",
        ),
    ],
)
async def test_a_fault_field_on_a_route_it_does_not_apply_to_is_refused_naming_it(
    sandbox: httpx.AsyncClient, fault: dict[str, Any], message: str
) -> None:
    response = await sandbox.post("/_sandbox/faults", json=fault)

    assert response.status_code == 422
    assert message in response.text
    assert (await sandbox.get("/_sandbox/faults")).json() == []


async def test_dropped_callbacks_are_recorded_but_not_sent(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    await sandbox.post("/_sandbox/faults", json={"route": "callbacks", "drop_callbacks": True})

    await sandbox.post(CONNECT, data={**FLOW_CALL, "StatusCallback": receiver.url("/s")})
    calls = await polled(
        sandbox_calls(sandbox),
        lambda calls: bool(calls and calls[0]["Callbacks"]),
        what="the terminal callback being dropped",
    )

    assert receiver.received == []
    assert calls[0]["Callbacks"] == [{"event": "terminal", "dropped": True}]


async def test_every_request_is_inspectable_and_reset_forgets_everything(
    sandbox: httpx.AsyncClient,
) -> None:
    await sandbox.post(CONNECT, data={**FLOW_CALL, "CustomField": "order-42"})

    requests = (await sandbox.get("/_sandbox/requests")).json()
    await sandbox.post("/_sandbox/reset")
    after = await sandbox.post(CONNECT, data=FLOW_CALL)

    assert requests[0]["fields"]["CustomField"] == "order-42"
    assert after.status_code == 404  # the account is gone too


def _rest_exception_message(response: httpx.Response, suffix: str) -> str:
    if suffix == ".json":
        return str(response.json()["RestException"]["Message"])
    root = ElementTree.fromstring(response.text)
    return root.findtext("RestException/Message") or ""


def _field(body: str, name: str) -> Any:
    """A field of a StatusCallback, JSON or multipart."""
    if body.lstrip().startswith("{"):
        import json

        return json.loads(body)[name]
    marker = f'name="{name}"'
    start = body.index(marker) + len(marker)
    return body[start:].split("\r\n\r\n", 1)[1].split("\r\n", 1)[0]
