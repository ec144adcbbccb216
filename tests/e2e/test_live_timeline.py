"""A call's timeline live, as Server-Sent Events, over real sockets: the sandbox runs the call
against exoplane while the test reads the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from exoplane.sandbox.state import TERMINAL
from tests.e2e.conftest import (
    ACCOUNT_SID,
    CALLER,
    EXOTEL_KEY,
    EXOTEL_TOKEN,
    CallCentre,
    Exoplane,
    Platform,
)
from tests.e2e.servers import Sandbox, running_sandbox
from tests.e2e.test_call_timeline import AGENT_PHONE, EXOPHONE, settled_call
from tests.e2e.test_voicebot_test_call import BOT_EXOPHONE, BOT_FLOW, BOT_FLOW_URL
from tests.factories import customer_with_token, register_app
from tests.waiting import WAIT_SECONDS, polled


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """Its callers talk to a voice bot for 100 turns: the test hangs up on them when it
    has seen what it waits for."""
    async with running_sandbox(ACCOUNT_SID, EXOTEL_KEY, EXOTEL_TOKEN, caller_turns=100) as running:
        yield running


async def echo_test_call(exoplane: Exoplane, sandbox: Sandbox, platform: Platform) -> str:
    """A test call to the echo bot through the sandbox; its CallSid."""
    did = await exoplane.http.post(
        "/api/v1/integrations/exotel/dids",
        headers=platform.auth,
        json={"number": BOT_EXOPHONE, "bot_id": "echo", "flow_url": BOT_FLOW_URL},
    )
    assert did.status_code == 201, did.text
    await sandbox.add_flow(BOT_FLOW, [{"type": "voicebot", "url": did.json()["websocket_url"]}])
    answer = await exoplane.http.post(
        f"/api/v1/integrations/exotel/dids/{did.json()['id']}/test-call",
        headers=platform.auth,
        json={"to_number": CALLER, "mode": "flow"},
    )
    assert answer.status_code == 200, answer.text
    call_sid: str = answer.json()["call_sid"]
    return call_sid


def entry(event: ServerSentEvent) -> dict[str, Any]:
    assert event.event == "message", event
    data: dict[str, Any] = orjson.loads(event.data)
    return data


async def next_event(events: AsyncIterator[ServerSentEvent]) -> ServerSentEvent:
    async with asyncio.timeout(WAIT_SECONDS):
        return await anext(events)


async def rest_of(events: AsyncIterator[ServerSentEvent]) -> list[ServerSentEvent]:
    """Every event until the stream ends by itself (within the bound)."""
    async with asyncio.timeout(WAIT_SECONDS):
        return [event async for event in events]


async def test_the_sse_stream_delivers_entries_while_the_test_call_runs_then_ends(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform
) -> None:
    call_sid = await echo_test_call(exoplane, sandbox, platform)
    url = f"/api/v1/calls/{call_sid}/events"

    async with aconnect_sse(exoplane.http, "GET", url, headers=platform.auth) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        events = source.aiter_sse()
        seen = [await next_event(events)]
        while entry(seen[-1])["kind"] != "stream_start":
            seen.append(await next_event(events))
        # The bot is talking: the call has not ended, and its stream's start is known.
        assert (await sandbox.call(call_sid))["Status"] not in TERMINAL
        hung_up = await sandbox.http.post(f"/_sandbox/calls/{call_sid}/hangup")
        assert hung_up.status_code == 200, hung_up.text
        seen += await rest_of(events)

    assert seen[-1].event == "end"
    live = [entry(event) for event in seen[:-1]]
    detail = await exoplane.http.get(f"/api/v1/calls/{call_sid}", headers=platform.auth)
    assert live == detail.json()["timeline"]
    assert [e["kind"] for e in live[:4]] == [
        "test_call_placed",
        "stream_handshake",
        "stream_connected",
        "stream_start",
    ]
    assert live[-1]["kind"] == "stream_closed"
    ids = [event.id for event in seen[:-1]]
    assert len(set(ids)) == len(ids)


async def test_a_client_resuming_with_last_event_id_gets_the_rest_without_gaps_or_repeats(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform
) -> None:
    call_sid = await echo_test_call(exoplane, sandbox, platform)
    url = f"/api/v1/calls/{call_sid}/events"
    async with aconnect_sse(exoplane.http, "GET", url, headers=platform.auth) as source:
        events = source.aiter_sse()
        first = await next_event(events)
    assert entry(first)["kind"] == "test_call_placed"
    started = await sandbox.call(call_sid)
    hung_up = await sandbox.http.post(f"/_sandbox/calls/{call_sid}/hangup")
    assert hung_up.status_code == 200, (hung_up.text, started)

    resumed = {**platform.auth, "Last-Event-ID": first.id}
    async with aconnect_sse(exoplane.http, "GET", url, headers=resumed) as source:
        rest = await rest_of(source.aiter_sse())

    assert rest[-1].event == "end"
    detail = await exoplane.http.get(f"/api/v1/calls/{call_sid}", headers=platform.auth)
    assert [entry(first), *(entry(event) for event in rest[:-1])] == detail.json()["timeline"]


async def test_an_inbound_calls_stream_has_its_hooks_and_webhooks_then_ends(
    call_centre: CallCentre, sandbox: Sandbox
) -> None:
    await call_centre.add_agent(
        "gita", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )
    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)
    url = f"{call_centre.base}/calls/{call_sid}/events"
    http = call_centre.exoplane.http

    # The call is known from the popup hook on: until then the stream is 404.
    await polled(
        lambda: http.get(f"{call_centre.base}/calls/{call_sid}", headers=call_centre.auth),
        lambda response: response.status_code == 200,
        what="the call in the app's call log",
    )
    async with aconnect_sse(http, "GET", url, headers=call_centre.auth) as source:
        seen = await rest_of(source.aiter_sse())

    assert seen[-1].event == "end"
    call = await settled_call(call_centre, call_sid, webhooks=3)
    live = [entry(event) for event in seen[:-1]]
    assert sorted(live, key=as_text) == sorted(call["timeline"], key=as_text)
    for delivery in {e["detail"]["delivery_id"] for e in live if "delivery_id" in e["detail"]}:
        kinds = [e["kind"] for e in live if e["detail"].get("delivery_id") == delivery]
        assert kinds == ["webhook_queued", "webhook_attempt", "webhook_outcome"]
    hooks = [e["detail"]["type"] for e in live if e["kind"] == "hook_received"]
    assert hooks == ["popup", "incomingcallhungup", "incomingcallhungup"]


def as_text(entry: dict[str, Any]) -> bytes:
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)


async def test_following_an_unknown_call_is_404_as_the_call_log_answers(
    call_centre: CallCentre, exoplane: Exoplane, platform: Platform
) -> None:
    app_side = await exoplane.http.get(
        f"{call_centre.base}/calls/no-such-call/events", headers=call_centre.auth
    )
    operator_side = await exoplane.http.get(
        "/api/v1/calls/no-such-call/events", headers=platform.auth
    )

    assert app_side.status_code == 404, app_side.text
    assert app_side.headers["content-type"] == "application/json"
    assert app_side.json()["error"]["code"] == "call_not_found"
    assert operator_side.status_code == 404, operator_side.text
    assert operator_side.json()["error"]["code"] == "call_not_found"


async def test_following_needs_the_apps_token_or_an_operators_key(
    call_centre: CallCentre, exoplane: Exoplane, sandbox: Sandbox, platform: Platform
) -> None:
    call_sid = await echo_test_call(exoplane, sandbox, platform)
    app_url = f"{call_centre.base}/calls/{call_sid}/events"
    operator_url = f"/api/v1/calls/{call_sid}/events"
    wrong = {"Authorization": "Bearer not-a-key"}

    answers = [
        await exoplane.http.get(app_url),
        await exoplane.http.get(app_url, headers={"Authorization": "not-a-token"}),
        await exoplane.http.get(operator_url),
        await exoplane.http.get(operator_url, headers=wrong),
    ]

    assert [answer.status_code for answer in answers] == [401] * 4
    await sandbox.http.post(f"/_sandbox/calls/{call_sid}/hangup")


async def test_another_apps_call_is_not_found_for_this_app(
    call_centre: CallCentre, sandbox: Sandbox
) -> None:
    await call_centre.add_agent(
        "gita", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )
    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)
    await sandbox.finished_call(call_sid)
    http = call_centre.exoplane.http
    customer = await customer_with_token(http, call_centre.exoplane.settings)
    other = await register_app(http, customer)
    other_base = f"/v2/integrations/{other.customer_id}/apps/{other.id}"

    answer = await http.get(
        f"{other_base}/calls/{call_sid}/events", headers={"Authorization": other.token}
    )
    crossed = await http.get(f"{other_base}/calls/{call_sid}/events", headers=call_centre.auth)

    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "call_not_found"
    assert crossed.status_code == 404, crossed.text  # a token names its own app only


async def test_a_last_event_id_this_stream_never_sent_is_400_naming_the_header(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform
) -> None:
    call_sid = await echo_test_call(exoplane, sandbox, platform)

    answer = await exoplane.http.get(
        f"/api/v1/calls/{call_sid}/events",
        headers={**platform.auth, "Last-Event-ID": "seven"},
    )

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "Last-Event-ID"
    await sandbox.http.post(f"/_sandbox/calls/{call_sid}/hangup")
