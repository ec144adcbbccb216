"""Click-to-call end to end: exoplane asks the sandbox to ring the agent's device, then the
customer; the sandbox's StatusCallbacks come back to exoplane and become webhooks."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import (
    ACCOUNT_SID,
    BUSY_SUFFIX,
    CALLER,
    CallCentre,
    verified,
    webhooks_for,
)
from tests.e2e.servers import Sandbox
from tests.webhooks.receiver import Receiver

EXOPHONE = "+918047491802"
AGENT_PHONE = "+919876500012"
OUTBOUND = "/v2/integrations/call/outbound_call"


async def registered_agent(centre: CallCentre, sandbox: Sandbox, *, sip: bool) -> str:
    """Agent ``farah``, whose browser is registered with the sandbox; the address rung first."""
    username = await centre.add_agent(
        "farah", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": sip}
    )
    body = {"account_sid": ACCOUNT_SID, "username": username, "registered": True}
    await sandbox.post("/_sandbox/sip/registrations", body, status=200)
    return "sip:" + username.split("@")[0] if sip else AGENT_PHONE


async def click_to_call(centre: CallCentre, to: str) -> httpx.Response:
    return await centre.exoplane.http.post(
        OUTBOUND, headers=centre.auth, json={"app_id": centre.app.id, "user_id": "farah", "to": to}
    )


async def placed_call_sid(centre: CallCentre, to: str, first: str) -> str:
    response = await click_to_call(centre, to)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["Data"]
    assert (data["AppUserID"], data["FromNumber"]) == ("farah", first)
    return str(data["CallSid"])


async def test_click_to_call_rings_the_sip_client_then_the_customer_and_reports_both_events(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    first = await registered_agent(call_centre, sandbox, sip=True)

    call_sid = await placed_call_sid(call_centre, CALLER, first)

    call = await sandbox.finished_call(call_sid, reports=1)
    assert call["Status"] == "completed"
    assert [(leg["number"], leg["status"]) for leg in call["Legs"]] == [
        (first, "completed"),
        (CALLER, "completed"),
    ]
    assert [(cb["event"], cb["status"]) for cb in call["Callbacks"]] == [
        ("answered", 200),
        ("terminal", 200),
    ]
    [request] = [entry for entry in await sandbox.requests() if entry["direction"] == "in"]
    assert request["path"] == f"/v1/Accounts/{ACCOUNT_SID}/Calls/connect"
    fields = request["fields"]
    assert (fields["From"], fields["To"], fields["CallerId"]) == (first, CALLER, EXOPHONE)
    assert fields["CallType"] == "trans"
    assert fields["CustomField"].startswith("exoplane:")
    assert fields["StatusCallback"].startswith(
        call_centre.exoplane.url + "/v2/integrations/call/status/"
    )
    assert fields["StatusCallbackContentType"] == "application/json"
    assert (fields["StatusCallbackEvents[0]"], fields["StatusCallbackEvents[1]"]) == (
        "answered",
        "terminal",
    )
    arrived = await webhooks_for(receiver, call_sid, ["call_answered", "call_completed"])
    assert sorted(arrived) == ["call_answered", "call_completed"]
    answered = verified(arrived["call_answered"], call_centre.signing_secret)
    completed = verified(arrived["call_completed"], call_centre.signing_secret)
    assert arrived["call_answered"].path == arrived["call_completed"].path == "/callback"
    assert (answered["from"], answered["to"], answered["status"]) == (first, CALLER, "answered")
    assert (completed["from"], completed["to"], completed["status"]) == (first, CALLER, "completed")
    assert completed["duration"] == call["Duration"]
    assert [d["event"] for d in await call_centre.deliveries()] == [
        "call_answered",
        "call_completed",
    ]


async def test_click_to_call_rings_the_phone_first_when_the_sip_device_is_off(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    first = await registered_agent(call_centre, sandbox, sip=False)

    call_sid = await placed_call_sid(call_centre, "98123 45678", first)

    call = await sandbox.finished_call(call_sid, reports=1)
    assert [(leg["number"], leg["status"]) for leg in call["Legs"]] == [
        (AGENT_PHONE, "completed"),
        (CALLER, "completed"),
    ]
    await webhooks_for(receiver, call_sid, ["call_answered", "call_completed"])


async def test_a_busy_customer_gives_call_completed_with_status_busy_and_no_call_answered(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    first = await registered_agent(call_centre, sandbox, sip=True)
    busy = "+91987650" + BUSY_SUFFIX

    call_sid = await placed_call_sid(call_centre, busy, first)

    call = await sandbox.finished_call(call_sid, reports=1)
    assert call["Status"] == "busy"
    assert [(leg["number"], leg["status"]) for leg in call["Legs"]] == [
        (first, "completed"),
        (busy, "busy"),
    ]
    assert [(cb["event"], cb["status"]) for cb in call["Callbacks"]] == [("terminal", 200)]
    arrived = await webhooks_for(receiver, call_sid, ["call_completed"])
    completed = verified(arrived["call_completed"], call_centre.signing_secret)
    assert (completed["to"], completed["status"]) == (busy, "busy")
    # The terminal report was the last thing exoplane heard: nothing else can follow.
    assert [d["event"] for d in await call_centre.deliveries()] == ["call_completed"]
    assert sorted(arrived) == ["call_completed"]
