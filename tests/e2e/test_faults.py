"""Faults injected in the sandbox: Exotel failing a call, and StatusCallbacks that arrive
twice or never."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import (
    ACCOUNT_SID,
    CALLER,
    CallCentre,
    Exoplane,
    Platform,
    webhooks_for,
)
from tests.e2e.servers import Sandbox
from tests.waiting import polled
from tests.webhooks.receiver import Receiver

EXOPHONE = "+918047491804"
BOT_FLOW_URL = f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/3001"


async def echo_did_id(exoplane: Exoplane, sandbox: Sandbox, platform: Platform) -> str:
    response = await exoplane.http.post(
        "/api/v1/integrations/exotel/dids",
        headers=platform.auth,
        json={"number": EXOPHONE, "bot_id": "echo", "flow_url": BOT_FLOW_URL},
    )
    assert response.status_code == 201, response.text
    await sandbox.add_flow("3001", [{"type": "voicebot", "url": response.json()["websocket_url"]}])
    return str(response.json()["id"])


async def agent_with_sip(centre: CallCentre, sandbox: Sandbox) -> None:
    username = await centre.add_agent(
        "gita", phone="+919876500013", exophone=EXOPHONE, devices={"phone": False, "sip": True}
    )
    body = {"account_sid": ACCOUNT_SID, "username": username, "registered": True}
    await sandbox.post("/_sandbox/sip/registrations", body, status=200)


async def click_to_call(centre: CallCentre) -> dict[str, Any]:
    response = await centre.exoplane.http.post(
        "/v2/integrations/call/outbound_call",
        headers=centre.auth,
        json={"app_id": centre.app.id, "user_id": "gita", "to": CALLER},
    )
    body: dict[str, Any] = response.json()
    assert body["Code"] == response.status_code, response.text
    return body


async def test_an_exotel_error_on_calls_connect_fails_the_test_call_with_502(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform
) -> None:
    did = await echo_did_id(exoplane, sandbox, platform)
    await sandbox.add_fault(route="calls_connect", status=500)

    response = await exoplane.http.post(
        f"/api/v1/integrations/exotel/dids/{did}/test-call",
        headers=platform.auth,
        json={"to_number": CALLER},
    )

    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "Injected fault" in error["message"]
    assert await sandbox.calls() == []


async def test_an_exotel_error_on_calls_connect_fails_click_to_call_with_502(
    call_centre: CallCentre, sandbox: Sandbox
) -> None:
    await agent_with_sip(call_centre, sandbox)
    await sandbox.add_fault(route="calls_connect", status=500)

    answer = await click_to_call(call_centre)

    assert (answer["Status"], answer["Code"]) == ("Failed", 502)
    assert "Injected fault" in answer["Error"]
    assert await sandbox.calls() == []


async def test_status_callbacks_sent_twice_raise_each_webhook_once(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    await agent_with_sip(call_centre, sandbox)
    await sandbox.add_fault(route="callbacks", duplicate_callbacks=True)

    call_sid = (await click_to_call(call_centre))["Data"]["CallSid"]

    call = await sandbox.finished_call(call_sid, reports=2)
    assert [(cb["event"], cb["status"]) for cb in call["Callbacks"]] == [
        ("answered", 200),
        ("answered", 200),
        ("terminal", 200),
        ("terminal", 200),
    ]
    await webhooks_for(receiver, call_sid, ["call_answered", "call_completed"])
    deliveries = await call_centre.deliveries()
    assert [d["event"] for d in deliveries] == ["call_answered", "call_completed"]
    # Every delivery has been attempted, so the receiver has seen all it ever will.
    await settled(call_centre, len(deliveries))
    assert [item.json["event"] for item in receiver.received] == [
        "call_answered",
        "call_completed",
    ]


async def test_dropped_status_callbacks_raise_no_webhooks(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    await agent_with_sip(call_centre, sandbox)
    await sandbox.add_fault(route="callbacks", drop_callbacks=True)

    call_sid = (await click_to_call(call_centre))["Data"]["CallSid"]

    call = await sandbox.finished_call(call_sid, reports=1)
    assert call["Callbacks"] == [
        {"event": "answered", "dropped": True},
        {"event": "terminal", "dropped": True},
    ]
    assert not [e for e in await sandbox.requests() if e.get("kind") == "status_callback"]
    # Webhooks are raised only while exoplane handles a report, and none reached it.
    assert await call_centre.deliveries() == []
    assert receiver.received == []


async def settled(centre: CallCentre, count: int) -> None:
    """Wait until ``count`` deliveries have been attempted and recorded."""
    await polled(
        centre.deliveries,
        lambda deliveries: (
            len(deliveries) == count and all(d["status"] != "pending" for d in deliveries)
        ),
        what=f"{count} settled deliveries",
    )
