"""A voice-bot test call (seed 04) end to end: exoplane asks the sandbox to ring a number, the
sandbox runs the DID's flow, and its Voicebot applet streams to exoplane's echo bot."""

from __future__ import annotations

import hashlib
import io
import wave
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from exoplane.sandbox.audio import builtin_clip, echoed
from tests.e2e.conftest import ACCOUNT_SID, BUSY_SUFFIX, CALLER, Exoplane, Platform
from tests.e2e.servers import Sandbox
from tests.waiting import polled

BOT_EXOPHONE = "+918047491803"
BOT_FLOW = "2001"
BOT_FLOW_URL = f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/{BOT_FLOW}"


@pytest.fixture
async def echo_did(exoplane: Exoplane, sandbox: Sandbox, platform: Platform) -> dict[str, Any]:
    """A DID for the echo bot; its flow in the sandbox is one Voicebot applet at the DID's
    websocket_url, exactly as an operator would paste it into Exotel."""
    response = await exoplane.http.post(
        "/api/v1/integrations/exotel/dids",
        headers=platform.auth,
        json={"number": BOT_EXOPHONE, "bot_id": "echo", "flow_url": BOT_FLOW_URL},
    )
    assert response.status_code == 201, response.text
    did: dict[str, Any] = response.json()
    await sandbox.add_flow(BOT_FLOW, [{"type": "voicebot", "url": did["websocket_url"]}])
    return did


async def place_test_call(
    exoplane: Exoplane,
    platform: Platform,
    did: dict[str, Any],
    to_number: str,
    mode: str = "flow",
) -> httpx.Response:
    return await exoplane.http.post(
        f"/api/v1/integrations/exotel/dids/{did['id']}/test-call",
        headers=platform.auth,
        json={"to_number": to_number, "mode": mode},
    )


async def test_a_test_call_streams_the_callers_audio_through_the_echo_bot_and_back(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform, echo_did: dict[str, Any]
) -> None:
    answer = await place_test_call(exoplane, platform, echo_did, CALLER)

    assert answer.status_code == 200, answer.text
    call = await sandbox.finished_call(answer.json()["call_sid"])
    assert call["Status"] == "completed"
    assert [(leg["number"], leg["status"]) for leg in call["Legs"]] == [(CALLER, "completed")]
    [stream] = call["Streams"]
    assert stream["connected"] is True
    assert stream["error"] is None
    assert stream["ended_by"] == "caller"
    assert stream["stop_reason"] == "callended"
    assert stream["end_reason"] == "the caller hung up after its last turn (3)"
    assert [turn["reply_after_ms"] is not None for turn in stream["turns"]] == [True] * 3
    assert stream["violations"] == []
    assert stream["chunk_warnings"] == []
    [opened] = [entry for entry in await sandbox.requests() if entry.get("kind") == "stream"]
    assert opened["url"].startswith(exoplane.url.replace("http://", "ws://") + "/exotel/echo?")
    assert "sig=%2A%2A%2A" in opened["url"]  # the media capability went out, and was redacted
    assert "sig=%2A%2A%2A" in stream["url"]
    assert "sig=%2A%2A%2A" in call["Steps"][0]["request"]

    audio = await sandbox.http.get(f"/_sandbox/calls/{call['Sid']}/audio")

    assert audio.status_code == 200
    assert audio.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.content)) as recording:
        assert (recording.getnchannels(), recording.getsampwidth()) == (1, 2)
        assert recording.getframerate() == stream["sample_rate"]
        pcm = recording.readframes(recording.getnframes())
    assert hashlib.sha256(pcm).hexdigest() == stream["received_sha256"]
    # The echo bot returned each of the caller's three utterances byte for byte.
    assert echoed(builtin_clip(stream["sample_rate"]), pcm) == 3


async def test_a_stream_mode_test_call_connects_straight_to_the_echo_bot_and_back(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform, echo_did: dict[str, Any]
) -> None:
    answer = await place_test_call(exoplane, platform, echo_did, CALLER, mode="stream")

    assert answer.status_code == 200, answer.text
    call = await sandbox.finished_call(answer.json()["call_sid"])
    assert call["Status"] == "completed"
    assert [step["type"] for step in call["Steps"]] == ["stream"]  # no flow ran
    [stream] = call["Streams"]
    assert stream["connected"] is True
    assert stream["ended_by"] == "caller"
    assert stream["violations"] == []
    assert "sig=%2A%2A%2A" in stream["url"]
    [request] = [entry for entry in await sandbox.requests() if entry["direction"] == "in"]
    assert request["fields"]["StreamType"] == "bidirectional"
    assert "Url" not in request["fields"]
    audio = await sandbox.http.get(f"/_sandbox/calls/{call['Sid']}/audio")
    with wave.open(io.BytesIO(audio.content)) as recording:
        pcm = recording.readframes(recording.getnframes())
    assert echoed(builtin_clip(stream["sample_rate"]), pcm) == 3


async def test_the_test_call_asks_the_sandbox_for_exactly_the_documented_calls_connect(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform, echo_did: dict[str, Any]
) -> None:
    answer = await place_test_call(exoplane, platform, echo_did, "98123 45678")

    assert answer.status_code == 200, answer.text
    [placed] = await sandbox.calls()
    assert answer.json() == {"call_sid": placed["Sid"], "provider_status": "queued"}
    [request] = [entry for entry in await sandbox.requests() if entry["direction"] == "in"]
    assert request["path"] == f"/v1/Accounts/{ACCOUNT_SID}/Calls/connect"
    assert request["status"] == 200
    assert request["fields"] == {
        "From": CALLER,
        "CallerId": BOT_EXOPHONE,
        "Url": BOT_FLOW_URL,
        "CallType": "trans",
        "CustomField": f"cxb-test:{echo_did['id']}",
    }


async def test_a_busy_number_never_opens_a_stream_and_the_call_ends_busy(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform, echo_did: dict[str, Any]
) -> None:
    busy = "+91987650" + BUSY_SUFFIX

    answer = await place_test_call(exoplane, platform, echo_did, busy)

    assert answer.status_code == 200, answer.text
    call = await sandbox.finished_call(answer.json()["call_sid"])
    assert call["Status"] == "busy"
    assert call["Legs"] == [
        {"number": busy, "status": "busy", "cause": "USER_BUSY", "on_call_seconds": 0}
    ]
    assert call["Streams"] == []
    assert call["Steps"] == []
    assert not [entry for entry in await sandbox.requests() if entry.get("kind") == "stream"]
    audio = await sandbox.http.get(f"/_sandbox/calls/{call['Sid']}/audio")
    assert audio.status_code == 404


async def test_a_test_calls_timeline_shows_the_stream_and_the_time_to_first_bot_audio(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform, echo_did: dict[str, Any]
) -> None:
    answer = await place_test_call(exoplane, platform, echo_did, CALLER)
    call_sid = answer.json()["call_sid"]
    await sandbox.finished_call(call_sid)

    async def fetch() -> dict[str, Any]:
        response = await exoplane.http.get(f"/api/v1/calls/{call_sid}", headers=platform.auth)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    call = await polled(
        fetch,
        lambda call: call["timeline"][-1]["kind"] == "stream_closed",
        what="the stream's steps, written once it has closed",
    )
    kinds = [entry["kind"] for entry in call["timeline"]]
    assert kinds[:5] == [
        "test_call_placed",
        "stream_handshake",
        "stream_connected",
        "stream_start",
        "first_inbound_media",
    ]
    assert kinds[-2:] == ["stream_stop", "stream_closed"]
    assert kinds.count("first_outbound_media") == 1
    details = {entry["kind"]: entry["detail"] for entry in call["timeline"]}
    assert details["test_call_placed"]["to"] == CALLER
    assert details["stream_start"]["bot_id"] == "echo"
    assert details["stream_start"]["sample_rate"] == 8000
    # The URL's capability reached the bot as a custom parameter; the call log keeps no copy.
    capability = parse_qs(urlsplit(echo_did["websocket_url"]).query)["sig"][0]
    assert details["stream_start"]["custom_parameters"]["sig"] == "(redacted)"
    assert capability not in orjson.dumps(call).decode()
    assert details["first_outbound_media"]["after_start_ms"] > 0
    assert details["stream_stop"] == {"reason": "callended"}
    assert details["stream_closed"]["code"] == 1000
    assert details["stream_closed"]["malformed_frames"] == 0
    assert (call["direction"], call["agent"], call["outcome"]) == ("outbound", "echo", "answered")
    assert call["duration"] >= 0
    listed = await exoplane.http.get("/api/v1/calls", headers=platform.auth)
    assert [c["call_sid"] for c in listed.json()["calls"]] == [call_sid]
    assert listed.json()["calls"][0]["outcome"] == "answered"
