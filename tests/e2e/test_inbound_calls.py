"""Inbound calls to an agent's ExoPhone: the sandbox runs the helpdesk flow against exoplane's
Passthru hooks and Connect URL, exoplane routes per the agent's devices, and the integrator's
receiver gets seed 02's webhooks, signed."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import (
    ACCOUNT_SID,
    CALLER,
    NO_ANSWER_SUFFIX,
    CallCentre,
    verified,
    webhooks_for,
)
from tests.e2e.servers import Sandbox
from tests.webhooks.receiver import Receiver

EXOPHONE = "+918047491801"
AGENT_PHONE = "+919876500011"
PATHS = {
    "incoming_call": "/popup",
    "call_missed": "/missed",
    "call_completed": "/callback",
    "recording_ready": "/recording",
}


async def webhooks(
    centre: CallCentre, receiver: Receiver, call_sid: str, expected: list[str]
) -> dict[str, dict[str, Any]]:
    """The call's webhooks, each signed and at its event's URL, and no others; exoplane
    raised them in the ``expected`` order (its delivery log, oldest first, says so)."""
    arrived = await webhooks_for(receiver, call_sid, expected)
    assert sorted(arrived) == sorted(expected)
    payloads = {}
    for event, item in arrived.items():
        assert item.path == PATHS[event]
        payloads[event] = verified(item, centre.signing_secret)
    ids = {payload["event_id"] for payload in payloads.values()}
    raised = [d["event"] for d in await centre.deliveries() if d["event_id"] in ids]
    assert raised == expected
    return payloads


def connect_step(call: dict[str, Any]) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [step for step in call["Steps"] if step["type"] == "connect"]
    assert len(steps) == 1, steps
    return steps[0]


async def test_an_answered_call_to_a_phone_only_agent_rings_the_phone_and_raises_three_webhooks(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    sip = await call_centre.add_agent(
        "asha", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )

    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)

    call = await sandbox.finished_call(call_sid)
    connect = connect_step(call)
    assert connect["status"] == 200
    assert connect["outcome"] == f"answered by {AGENT_PHONE}"
    assert connect["detail"]["numbers"] == [AGENT_PHONE]
    assert connect["detail"]["parallel"] is False
    assert connect["detail"]["record"] is True
    hooks = [step["request"] for step in call["Steps"] if step["type"] == "passthru"]
    assert all("/v2/integrations/call/inbound_call/" in hook for hook in hooks)
    assert "type=popup" in hooks[0]
    assert "type=incomingcallhungup" in hooks[-1]
    payloads = await webhooks(
        call_centre, receiver, call_sid, ["incoming_call", "call_completed", "recording_ready"]
    )
    # Seed 02 names the agent by their SIP address, whichever device took the call.
    for event in ("incoming_call", "call_completed"):
        assert (payloads[event]["from"], payloads[event]["to"]) == (CALLER, "sip:" + sip)
    completed = payloads["call_completed"]
    assert completed["status"] == "completed"
    assert completed["duration"] > 0
    recording = payloads["recording_ready"]
    assert recording["recording_url"] == call["RecordingUrl"]
    assert recording["recording_url"].endswith(f"/{call_sid}.mp3")


async def test_a_call_nobody_answers_raises_incoming_call_then_call_missed(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    unanswered = "+91987650" + NO_ANSWER_SUFFIX
    await call_centre.add_agent(
        "bilal", phone=unanswered, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )

    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)

    call = await sandbox.finished_call(call_sid)
    assert connect_step(call)["outcome"] == "no-answer"
    assert "type=missedcall" in call["Steps"][-1]["request"]
    payloads = await webhooks(call_centre, receiver, call_sid, ["incoming_call", "call_missed"])
    assert payloads["call_missed"]["status"] == "no-answer"
    assert payloads["call_missed"]["from"] == CALLER


async def test_a_sip_only_agent_whose_client_is_not_registered_misses_the_call(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    sip = await call_centre.add_agent(
        "chen", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": False, "sip": True}
    )

    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)

    call = await sandbox.finished_call(call_sid)
    connect = connect_step(call)
    assert connect["detail"]["numbers"] == ["sip:" + sip.split("@")[0]]
    assert [(leg["status"], leg["cause"]) for leg in connect["detail"]["legs"]] == [
        ("failed", "USER_NOT_REGISTERED")
    ]
    payloads = await webhooks(call_centre, receiver, call_sid, ["incoming_call", "call_missed"])
    assert payloads["call_missed"]["status"] == "failed"


async def test_a_sip_registration_reported_through_the_sandbox_reaches_exoplane_and_the_call(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    sip = await call_centre.add_agent(
        "dana", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": False, "sip": True}
    )
    devices_path = f"{call_centre.base}/users/dana/devices"

    registration = await sandbox.post(
        "/_sandbox/sip/registrations",
        {
            "account_sid": ACCOUNT_SID,
            "username": sip,
            "registered": True,
            "report_url": call_centre.exoplane.url + devices_path + "/sip/registration",
            "report_token": call_centre.app.token,
        },
        status=200,
    )

    assert registration["report"] == {"status": 200}
    devices = await call_centre.exoplane.http.get(devices_path, headers=call_centre.auth)
    assert devices.json()["data"]["devices"]["sip"]["registered"] is True
    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)
    call = await sandbox.finished_call(call_sid)
    assert connect_step(call)["outcome"] == "answered by sip:" + sip.split("@")[0]
    await webhooks(
        call_centre, receiver, call_sid, ["incoming_call", "call_completed", "recording_ready"]
    )


async def test_an_agent_with_both_devices_is_rung_on_both_in_parallel(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    sip = await call_centre.add_agent(
        "emil", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": True}
    )
    sip_uri = "sip:" + sip.split("@")[0]

    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)

    call = await sandbox.finished_call(call_sid)
    connect = connect_step(call)
    assert connect["detail"]["parallel"] is True
    assert connect["detail"]["numbers"] == [AGENT_PHONE, sip_uri]
    # The phone picks up; the browser, never registered, could not ring.
    assert [(leg["number"], leg["status"]) for leg in connect["detail"]["legs"]] == [
        (AGENT_PHONE, "completed"),
        (sip_uri, "failed"),
    ]
    await webhooks(
        call_centre, receiver, call_sid, ["incoming_call", "call_completed", "recording_ready"]
    )
