"""An inbound call the caller gives up on while the agent's phone rings: missed, and its
timeline shows every step, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.conftest import ACCOUNT_SID, CALLER, EXOTEL_KEY, EXOTEL_TOKEN, CallCentre
from tests.e2e.servers import Sandbox, running_sandbox
from tests.e2e.test_call_timeline import (
    AGENT_PHONE,
    EXOPHONE,
    assert_each_webhook_settled,
    settled_call,
    steps,
)
from tests.waiting import polled


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """Phones ring for 1000 simulated seconds (20 s here): the caller hangs up first."""
    async with running_sandbox(ACCOUNT_SID, EXOTEL_KEY, EXOTEL_TOKEN, ring_seconds=1000) as running:
        yield running


async def test_a_call_the_caller_hangs_up_while_it_rings_is_missed_with_every_step(
    call_centre: CallCentre, sandbox: Sandbox
) -> None:
    await call_centre.add_agent(
        "gita", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )
    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)

    async def timeline() -> list[dict[str, Any]]:
        response = await call_centre.exoplane.http.get(
            f"{call_centre.base}/calls/{call_sid}", headers=call_centre.auth
        )
        entries: list[dict[str, Any]] = (
            response.json()["data"]["timeline"] if response.status_code == 200 else []
        )
        return entries

    await polled(
        timeline,
        lambda entries: any(e["kind"] == "routing_answered" for e in entries),
        what="exoplane answering whom to ring",
    )
    hung_up = await sandbox.http.post(f"/_sandbox/calls/{call_sid}/hangup")
    assert hung_up.status_code == 200, hung_up.text
    finished = await sandbox.finished_call(call_sid)
    call = await settled_call(call_centre, call_sid, webhooks=2)

    assert [leg["status"] for leg in finished["Legs"]] == ["canceled"]
    assert (call["status"], call["outcome"], call["duration"]) == ("missed", "missed", None)
    assert steps(call, webhooks=False) == [
        ("hook_received", "popup"),
        ("routing_answered", [AGENT_PHONE]),
        ("hook_received", "incomingcallhungup"),
        ("hook_received", "missedcall"),
    ]
    assert_each_webhook_settled(call, ["incoming_call", "call_missed"])
    times = [entry["at"] for entry in call["timeline"]]
    assert times == sorted(times)
