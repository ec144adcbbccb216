"""Each call's timeline, end to end: the sandbox runs the calls against exoplane, and the call
log shows every step, in order."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import CALLER, NO_ANSWER_SUFFIX, CallCentre, webhooks_for
from tests.e2e.servers import Sandbox
from tests.e2e.test_click_to_call import placed_call_sid, registered_agent
from tests.waiting import polled
from tests.webhooks.receiver import Receiver

EXOPHONE = "+918047491803"
AGENT_PHONE = "+919876500013"


async def settled_call(centre: CallCentre, call_sid: str, webhooks: int) -> dict[str, Any]:
    """The call once each of its ``webhooks`` has an outcome in its timeline."""

    async def fetch() -> dict[str, Any]:
        response = await centre.exoplane.http.get(
            f"{centre.base}/calls/{call_sid}", headers=centre.auth
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def settled(call: dict[str, Any]) -> bool:
        outcomes = [e for e in call["timeline"] if e["kind"] == "webhook_outcome"]
        return len(outcomes) == webhooks

    return await polled(fetch, settled, what=f"the outcomes of {webhooks} webhooks", every=0.05)


def steps(call: dict[str, Any], *, webhooks: bool) -> list[tuple[str, Any]]:
    """The call's own steps (or its webhook steps), each with what tells it apart."""
    shown = []
    for entry in call["timeline"]:
        if entry["kind"].startswith("webhook_") is not webhooks:
            continue
        detail = entry["detail"]
        shown.append((entry["kind"], detail.get("event") or next(iter(detail.values()), None)))
    return shown


async def test_an_answered_inbound_call_has_every_step_in_its_timeline_in_order(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    await call_centre.add_agent(
        "gita", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )

    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)
    await sandbox.finished_call(call_sid)
    events = ["incoming_call", "call_completed", "recording_ready"]
    await webhooks_for(receiver, call_sid, events)
    call = await settled_call(call_centre, call_sid, webhooks=3)

    assert (call["direction"], call["status"], call["outcome"]) == (
        "inbound",
        "completed",
        "answered",
    )
    assert call["agent"] == "gita"
    # The hung-up hook comes twice: from the Connect applet's dial_passthru_event_url, and
    # from the flow's Passthru applet after it; each report is a step.
    assert steps(call, webhooks=False) == [
        ("hook_received", "popup"),
        ("routing_answered", [AGENT_PHONE]),
        ("hook_received", "incomingcallhungup"),
        ("hook_received", "incomingcallhungup"),
    ]
    webhook_steps = steps(call, webhooks=True)
    for event in events:
        assert [kind for kind, about in webhook_steps if about == event] == [
            "webhook_queued",
            "webhook_attempt",
            "webhook_outcome",
        ]
    kinds = [entry["kind"] for entry in call["timeline"]]
    assert kinds.index("webhook_queued") > kinds.index("hook_received")
    times = [entry["at"] for entry in call["timeline"]]
    assert times == sorted(times)


async def test_a_click_to_call_has_every_step_in_its_timeline_in_order(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    first = await registered_agent(call_centre, sandbox, sip=True)

    call_sid = await placed_call_sid(call_centre, CALLER, first)
    await sandbox.finished_call(call_sid, reports=1)
    await webhooks_for(receiver, call_sid, ["call_answered", "call_completed"])
    call = await settled_call(call_centre, call_sid, webhooks=2)

    assert (call["direction"], call["status"], call["outcome"]) == (
        "outbound",
        "completed",
        "answered",
    )
    assert (call["from"], call["to"], call["agent"]) == (first, CALLER, "farah")
    own = steps(call, webhooks=False)
    # Exotel may report on the call before its answer to Calls/connect is recorded.
    assert sorted(own) == sorted(
        [("call_placed", first), ("status_callback", "answered"), ("status_callback", "completed")]
    )
    assert [step for step in own if step[0] == "status_callback"] == [
        ("status_callback", "answered"),
        ("status_callback", "completed"),
    ]
    placed = next(e for e in call["timeline"] if e["kind"] == "call_placed")
    assert placed["detail"]["to"] == CALLER
    webhook_steps = steps(call, webhooks=True)
    for event in ("call_answered", "call_completed"):
        assert [kind for kind, about in webhook_steps if about == event] == [
            "webhook_queued",
            "webhook_attempt",
            "webhook_outcome",
        ]


async def test_an_inbound_call_nobody_answers_has_every_step_in_its_timeline_in_order(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    unanswered = "+91987650" + NO_ANSWER_SUFFIX
    await call_centre.add_agent(
        "bilal", phone=unanswered, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )

    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)
    await sandbox.finished_call(call_sid)
    await webhooks_for(receiver, call_sid, ["incoming_call", "call_missed"])
    call = await settled_call(call_centre, call_sid, webhooks=2)

    assert (call["direction"], call["status"], call["outcome"]) == ("inbound", "missed", "missed")
    assert call["duration"] is None
    # The Connect applet reports the unanswered dial, then the flow's missed-call Passthru.
    assert steps(call, webhooks=False) == [
        ("hook_received", "popup"),
        ("routing_answered", [unanswered]),
        ("hook_received", "incomingcallhungup"),
        ("hook_received", "missedcall"),
    ]
    assert_each_webhook_settled(call, ["incoming_call", "call_missed"])
    times = [entry["at"] for entry in call["timeline"]]
    assert times == sorted(times)


def assert_each_webhook_settled(call: dict[str, Any], events: list[str]) -> None:
    """Each event was queued once, tried, and succeeded, in that order, and no other was."""
    assert {about for _, about in steps(call, webhooks=True)} == set(events)
    assert_each_webhook_settled_once(call, events)


def assert_each_webhook_settled_once(call: dict[str, Any], events: list[str]) -> None:
    webhook_steps = steps(call, webhooks=True)
    for event in events:
        assert [kind for kind, about in webhook_steps if about == event] == [
            "webhook_queued",
            "webhook_attempt",
            "webhook_outcome",
        ]


async def test_a_call_whose_webhook_fails_twice_shows_each_attempt_in_its_timeline(
    call_centre: CallCentre, sandbox: Sandbox, receiver: Receiver
) -> None:
    await call_centre.add_agent(
        "gita", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )
    receiver.script = [500, 503]  # the first webhook, incoming_call, is refused twice

    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)
    await sandbox.finished_call(call_sid)
    call = await settled_call(call_centre, call_sid, webhooks=3)

    assert call["outcome"] == "answered"
    sent = [item.json["event"] for item in receiver.received if item.json["call_sid"] == call_sid]
    assert sent.count("incoming_call") == 3
    webhook_steps = steps(call, webhooks=True)
    assert [kind for kind, about in webhook_steps if about == "incoming_call"] == [
        "webhook_queued",
        "webhook_attempt",
        "webhook_attempt",
        "webhook_attempt",
        "webhook_outcome",
    ]
    tried = [
        (entry["detail"]["attempt"], entry["detail"]["status_code"])
        for entry in call["timeline"]
        if entry["kind"] == "webhook_attempt" and entry["detail"]["event"] == "incoming_call"
    ]
    assert tried == [(1, 500), (2, 503), (3, 200)]
    outcome = next(
        entry["detail"]
        for entry in call["timeline"]
        if entry["kind"] == "webhook_outcome" and entry["detail"]["event"] == "incoming_call"
    )
    assert (outcome["status"], outcome["attempts"]) == ("succeeded", 3)
    assert_each_webhook_settled_once(call, ["call_completed", "recording_ready"])
    assert steps(call, webhooks=False) == [
        ("hook_received", "popup"),
        ("routing_answered", [AGENT_PHONE]),
        ("hook_received", "incomingcallhungup"),
        ("hook_received", "incomingcallhungup"),
    ]
    times = [entry["at"] for entry in call["timeline"]]
    assert times == sorted(times)
