"""A click-to-call or test call Exotel refuses gets no CallSid, yet the call log lists it,
under exoplane's own id for it, with Exotel's message in its timeline."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import CALLER, CallCentre, Exoplane, Platform
from tests.e2e.servers import Sandbox
from tests.e2e.test_faults import agent_with_sip, click_to_call, echo_did_id


async def test_a_click_to_call_exotel_refuses_is_listed_failed_with_exotels_message(
    call_centre: CallCentre, sandbox: Sandbox
) -> None:
    await agent_with_sip(call_centre, sandbox)
    await sandbox.add_fault(route="calls_connect", status=500)

    answer = await click_to_call(call_centre)

    assert answer["Code"] == 502
    http = call_centre.exoplane.http
    listed = await http.get(f"{call_centre.base}/calls", headers=call_centre.auth)
    assert listed.status_code == 200, listed.text
    [call] = listed.json()["data"]["calls"]
    assert (call["direction"], call["status"], call["outcome"]) == ("outbound", "failed", "failed")
    assert call["to"] == CALLER
    key = call["call_sid"]
    assert str(uuid.UUID(key)) == key  # exoplane's id: no Exotel CallSid looks like it
    failed = await http.get(
        f"{call_centre.base}/calls", headers=call_centre.auth, params={"status": "failed"}
    )
    assert [c["call_sid"] for c in failed.json()["data"]["calls"]] == [key]
    detail = await http.get(f"{call_centre.base}/calls/{key}", headers=call_centre.auth)
    assert detail.status_code == 200, detail.text
    [refused] = detail.json()["data"]["timeline"]
    assert refused["kind"] == "call_refused"
    assert refused["detail"]["to"] == CALLER
    assert refused["detail"]["message"] == "Exotel refused the call: Injected fault"
    assert refused["detail"]["message"] in answer["Error"]
    assert "Injected fault" in refused["detail"]["message"]


async def test_a_test_call_exotel_refuses_is_listed_failed_with_exotels_message(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform
) -> None:
    did = await echo_did_id(exoplane, sandbox, platform)
    await sandbox.add_fault(route="calls_connect", status=500)

    answer = await exoplane.http.post(
        f"/api/v1/integrations/exotel/dids/{did}/test-call",
        headers=platform.auth,
        json={"to_number": CALLER},
    )

    assert answer.status_code == 502, answer.text
    listed = await exoplane.http.get("/api/v1/calls", headers=platform.auth)
    [call] = listed.json()["calls"]
    assert (call["direction"], call["status"], call["outcome"]) == ("outbound", "failed", "failed")
    assert (call["to"], call["duration"]) == (CALLER, None)
    key = call["call_sid"]
    assert str(uuid.UUID(key)) == key
    for params in ({"status": "failed"}, {"direction": "outbound"}, {"number": CALLER}):
        found = await exoplane.http.get("/api/v1/calls", headers=platform.auth, params=params)
        assert [c["call_sid"] for c in found.json()["calls"]] == [key], params
    queued = await exoplane.http.get(
        "/api/v1/calls", headers=platform.auth, params={"status": "in-progress"}
    )
    assert queued.json()["calls"] == []
    detail = await exoplane.http.get(f"/api/v1/calls/{key}", headers=platform.auth)
    [refused] = detail.json()["timeline"]
    assert refused["kind"] == "test_call_refused"
    assert refused["detail"]["did_id"] == did
    assert refused["detail"]["message"] == answer.json()["error"]["message"]
    # Following it live gives the one step, and ends: the call is over.
    events = await exoplane.http.get(f"/api/v1/calls/{key}/events", headers=platform.auth)
    assert events.status_code == 200
    assert '"kind":"test_call_refused"' in events.text
    assert "event: end" in events.text
