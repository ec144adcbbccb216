"""The simulated caller on a Voicebot applet, scripted per flow and per call through
``/_sandbox``, against scripted bots on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from exoplane.sandbox.agentstream import voiced
from exoplane.sandbox.audio import builtin_clip
from tests.sandbox.bot_peer import BotPeer, PeerCall, late_bot, seconds_of
from tests.sandbox.conftest import signed_in
from tests.sandbox.test_flows import (
    CALLER,
    EXOPHONE,
    KEY,
    SID,
    TOKEN,
    add_flow,
    call_in,
    finished,
    sandbox_settings,
)
from tests.webhooks.receiver import running_receiver

SCALE = 0.1  # the caller's waits and the bots' lateness alike: 3 s late is 0.3 s


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(sandbox_settings(time_scale=SCALE), SID, KEY, TOKEN) as http:
        yield http


SHORT = base64.b64encode(builtin_clip(8000)[:3200]).decode()


def spoken_turns(call: PeerCall) -> int:
    """How many utterances the bot heard: runs of voiced frames."""
    runs, speaking = 0, False
    for arrival in call.all("media"):
        loud = voiced(base64.b64decode(arrival.message["media"]["payload"]))
        runs += loud and not speaking
        speaking = loud
    return runs


async def test_a_flows_caller_script_sets_the_turns_and_utterances(
    sandbox: httpx.AsyncClient,
) -> None:
    async with BotPeer(late_bot(3 * SCALE, seconds_of(0.2))) as peer:
        script = {"turns": 2, "utterances": [SHORT]}
        await add_flow(sandbox, [{"type": "voicebot", "url": peer.url(), "caller": script}])

        call = await call_in(sandbox)
        bot_side = await peer.only_call()

    [stream] = call["Streams"]
    assert stream["end_reason"] == "the caller hung up after its last turn (2)"
    assert [turn["bytes"] for turn in stream["turns"]] == [3200, 3200]
    assert all(turn["reply_after_ms"] >= 300 for turn in stream["turns"])
    assert spoken_turns(bot_side) == 2
    assert call["Steps"][0]["outcome"] == (
        "stream ended by caller: the caller hung up after its last turn (2)"
    )


async def test_a_bot_that_never_answers_ends_the_call_with_the_reason_on_record(
    sandbox: httpx.AsyncClient,
) -> None:
    async with BotPeer() as peer:
        script = {"utterances": [SHORT], "reply_timeout_seconds": 5}
        await add_flow(sandbox, [{"type": "voicebot", "url": peer.url(), "caller": script}])

        call = await call_in(sandbox)

    [stream] = call["Streams"]
    assert stream["ended_by"] == "caller"
    assert stream["end_reason"] == "the bot did not reply within 5 s of turn 1"
    assert stream["turns"][0]["reply_after_ms"] is None
    assert call["Status"] == "completed"
    assert "did not reply within 5 s" in call["Steps"][0]["outcome"]


async def test_the_calls_script_overrides_the_flows(sandbox: httpx.AsyncClient) -> None:
    async with BotPeer(late_bot(3 * SCALE, seconds_of(0.2))) as peer:
        flow_script = {"turns": 3, "utterances": [SHORT]}
        await add_flow(sandbox, [{"type": "voicebot", "url": peer.url(), "caller": flow_script}])

        call = await call_in(sandbox, caller={"turns": 1})
        bot_side = await peer.only_call()

    assert call["Streams"][0]["end_reason"] == "the caller hung up after its last turn (1)"
    assert spoken_turns(bot_side) == 1


async def test_a_placed_calls_script_is_set_before_its_stream(
    sandbox: httpx.AsyncClient,
) -> None:
    async with BotPeer(late_bot(3 * SCALE, seconds_of(0.2))) as peer:
        flow_id = await add_flow(sandbox, [{"type": "voicebot", "url": peer.url()}])
        placed = await sandbox.post(
            f"/v1/Accounts/{SID}/Calls/connect.json",
            data={
                "From": CALLER,
                "CallerId": EXOPHONE,
                "Url": f"http://my.exotel.com/{SID}/exoml/start_voice/{flow_id}",
            },
        )
        sid = placed.json()["Call"]["Sid"]
        scripted = await sandbox.put(
            f"/_sandbox/calls/{sid}/caller", json={"turns": 2, "utterances": [SHORT]}
        )
        call = await finished(sandbox, sid)

    assert scripted.status_code == 200, scripted.text
    assert call["Streams"][0]["end_reason"] == "the caller hung up after its last turn (2)"


@pytest.mark.parametrize(
    ("script", "field"),
    [
        ({"turns": -1}, "turns"),
        ({"turns": 0}, "open_line"),
        ({"utterances": ["not base64!"]}, "utterances"),
        ({"utterances": [base64.b64encode(b"odd").decode()]}, "utterances"),
        ({"utterances": []}, "utterances"),
        ({"reply_timeout_seconds": 0}, "reply_timeout_seconds"),
        ({"silence_seconds": 61}, "silence_seconds"),
        ({"talk_seconds": -5}, "talk_seconds"),
        ({"mood": "grumpy"}, "mood"),
    ],
)
async def test_a_bad_caller_script_is_refused_naming_the_field(
    sandbox: httpx.AsyncClient, script: dict[str, Any], field: str
) -> None:
    flow = await sandbox.post(
        "/_sandbox/flows",
        json={
            "account_sid": SID,
            "applets": [{"type": "voicebot", "url": "ws://127.0.0.1:9/bot", "caller": script}],
        },
    )
    inbound = await sandbox.post(
        "/_sandbox/inbound", json={"from": CALLER, "to": EXOPHONE, "caller": script}
    )

    for response in (flow, inbound):
        assert response.status_code == 422, response.text
        assert field in response.text


async def test_a_caller_script_on_another_applet_is_refused(sandbox: httpx.AsyncClient) -> None:
    response = await sandbox.post(
        "/_sandbox/flows",
        json={"account_sid": SID, "applets": [{"type": "hangup", "caller": {}}]},
    )

    assert response.status_code == 422
    assert "applets[0].caller applies to voicebot applets only" in response.text


async def test_scripting_an_unknown_or_ended_call_is_refused(sandbox: httpx.AsyncClient) -> None:
    await add_flow(sandbox, [{"type": "hangup"}])
    ended = await call_in(sandbox)

    unknown = await sandbox.put("/_sandbox/calls/nope/caller", json={"turns": 1})
    over = await sandbox.put(f"/_sandbox/calls/{ended['Sid']}/caller", json={"turns": 1})

    assert unknown.status_code == 404
    assert unknown.json()["error"]["field"] == "call_sid"
    assert over.status_code == 409


async def test_a_streams_duration_is_real_time_under_a_time_scale(
    sandbox: httpx.AsyncClient,
) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await asyncio.sleep(2.0)
        await call.socket.close(1000, "goodbye")

    async with BotPeer(bot) as peer:
        await add_flow(sandbox, [{"type": "voicebot", "url": peer.url()}])
        call = await call_in(sandbox)

    [stream] = call["Streams"]
    assert stream["ended_by"] == "bot"
    # Audio plays in real time at any time scale: about 2 s, not 2 s / SCALE.
    assert 2000 <= stream["duration_ms"] < 4000
    assert call["Duration"] in (2, 3, 4)
    assert call["Details"]["ConversationDuration"] == call["Duration"]


async def test_a_bot_closing_its_socket_ends_the_call_and_the_terminal_callback_follows(
    sandbox: httpx.AsyncClient,
) -> None:
    closed: list[float] = []

    async def bot(call: PeerCall) -> None:
        await call.started()
        await asyncio.sleep(0.3)
        await call.socket.close(1000, "goodbye")
        closed.append(time.monotonic())

    async with BotPeer(bot) as peer, running_receiver() as receiver:
        flow_id = await add_flow(sandbox, [{"type": "voicebot", "url": peer.url()}])
        placed = await sandbox.post(
            f"/v1/Accounts/{SID}/Calls/connect.json",
            data={
                "From": CALLER,
                "CallerId": EXOPHONE,
                "Url": f"http://my.exotel.com/{SID}/exoml/start_voice/{flow_id}",
                "StatusCallback": receiver.url("/status"),
                "StatusCallbackEvents[0]": "terminal",
                "StatusCallbackContentType": "application/json",
            },
        )
        [terminal] = await receiver.wait_for(1)
        call = await finished(sandbox, placed.json()["Call"]["Sid"])

    assert terminal.at - closed[0] < 1.0
    assert terminal.json["EventType"] == "terminal"
    assert terminal.json["Status"] == "completed"
    assert call["Status"] == "completed"
    [stream] = call["Streams"]
    assert stream["ended_by"] == "bot"
    assert stream["end_reason"] == "the bot hung up (close code 1000 (goodbye))"
