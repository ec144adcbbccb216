"""Connect Voice AI: Calls/connect with StreamUrl, as Exotel's published OpenAPI describes it,
against exoplane's media core and scripted bots on 127.0.0.1."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from exoplane.sandbox.app import SandboxSettings
from exoplane.sandbox.audio import builtin_clip, echoed
from tests.conftest import ServerProcess
from tests.sandbox.bot_peer import BotPeer, PeerCall
from tests.sandbox.conftest import core_url, signed_in
from tests.waiting import polled
from tests.webhooks.receiver import Receiver, running_receiver

SID, KEY, TOKEN = "voiceai", "voiceai-key", "voiceai-token"
CONNECT = f"/v1/Accounts/{SID}/Calls/connect"
CALLER, EXOPHONE = "+919876543210", "08047491899"


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    settings = SandboxSettings(_env_file=None, time_scale=0.1, caller_turns=1)
    flow = {"account_sid": SID, "id": "1234", "applets": [{"type": "hangup"}]}
    async with signed_in(settings, SID, KEY, TOKEN, flow) as http:
        yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


def voice_ai(stream_url: str, **extra: str) -> dict[str, str]:
    return {
        "From": CALLER,
        "CallerId": EXOPHONE,
        "StreamUrl": stream_url,
        "StreamType": "bidirectional",
        **extra,
    }


async def finished(sandbox: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        call: dict[str, Any] = (await sandbox.get(f"/_sandbox/calls/{sid}")).json()
        return call

    return await polled(
        fetch,
        lambda call: call["Status"] in ("completed", "busy", "no-answer", "failed", "canceled"),
        what=f"call {sid} ending",
    )


def rest_exception(response: httpx.Response) -> dict[str, Any]:
    exception: dict[str, Any] = response.json()["RestException"]
    return exception


# --- streaming ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
async def test_a_connect_voice_ai_call_streams_to_the_echo_bot_and_back_byte_exact(
    sandbox: httpx.AsyncClient, media_core: ServerProcess, receiver: Receiver, rate: int
) -> None:
    url = core_url(media_core, f"/exotel/echo?sample-rate={rate}")

    placed = await sandbox.post(
        CONNECT + ".json",
        data=voice_ai(
            url,
            StreamName="echo-test",
            StatusCallback=receiver.url("/status"),
            **{"StatusCallbackEvents[]": "terminal"},
        ),
    )
    assert placed.status_code == 200, placed.text
    call = await finished(sandbox, placed.json()["Call"]["Sid"])
    audio = await sandbox.get(f"/_sandbox/calls/{call['Sid']}/audio")
    [terminal] = await receiver.wait_for(1)

    assert call["Status"] == "completed"
    assert call["To"] == EXOPHONE
    [stream] = call["Streams"]
    assert stream["connected"] is True
    assert stream["name"] == "echo-test"
    assert stream["sample_rate"] == rate
    assert stream["ended_by"] == "caller"
    assert stream["violations"] == []
    assert stream["chunk_warnings"] == []  # the media core sent whole chunks at the stream's rate
    assert [step["type"] for step in call["Steps"]] == ["stream"]
    with wave.open(io.BytesIO(audio.content)) as recording:
        assert recording.getframerate() == rate
        heard = recording.readframes(recording.getnframes())
    assert echoed(builtin_clip(rate), heard) == 1
    assert "Status" in terminal.body
    assert "completed" in terminal.body


async def test_the_bot_closing_the_socket_ends_a_connect_voice_ai_call(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await call.socket.close(1000, "done")

    async with BotPeer(bot) as peer:
        placed = await sandbox.post(
            CONNECT + ".json",
            data=voice_ai(
                peer.url(),
                StatusCallback=receiver.url("/status"),
                StatusCallbackContentType="application/json",
                **{
                    "StatusCallbackEvents[0]": "ringing",
                    "StatusCallbackEvents[1]": "answered",
                    "StatusCallbackEvents[2]": "terminal",
                },
            ),
        )
        call = await finished(sandbox, placed.json()["Call"]["Sid"])
        callbacks = await receiver.wait_for(3)

    assert call["Streams"][0]["ended_by"] == "bot"
    assert [callback.json["EventType"] for callback in callbacks] == [
        "ringing",
        "answered",
        "terminal",
    ]
    assert [callback.json["Status"] for callback in callbacks] == [
        "ringing",
        "in-progress",
        "completed",
    ]


async def test_the_lowercase_names_of_exotels_developer_guide_are_accepted(
    sandbox: httpx.AsyncClient,
) -> None:
    async with BotPeer() as peer:
        placed = await sandbox.post(
            f"/v1/accounts/{SID}/calls/connect",
            data={
                "from": CALLER,
                "callerid": EXOPHONE,
                "streamurl": peer.url(),
                "streamtype": "bidirectional",
                "streamname": "lower",
                "statuscallbackevents": "terminal",
                "customfield": "ticket-7",
            },
        )
        call = await finished(sandbox, _sid_of_xml(placed.text))
        bot_side = await peer.only_call()

    assert placed.status_code == 200, placed.text
    assert call["Streams"][0]["name"] == "lower"
    assert bot_side.first("start") is not None


def _sid_of_xml(body: str) -> str:
    return body.split("<Sid>", 1)[1].split("</Sid>", 1)[0]


async def test_time_limit_ends_the_stream(sandbox: httpx.AsyncClient) -> None:
    async with BotPeer() as peer:
        placed = await sandbox.post(CONNECT + ".json", data=voice_ai(peer.url(), TimeLimit="1"))
        sid = placed.json()["Call"]["Sid"]
        await sandbox.put(f"/_sandbox/calls/{sid}/caller", json={"turns": 0, "open_line": True})
        call = await finished(sandbox, sid)

    [stream] = call["Streams"]
    assert stream["ended_by"] == "limit"
    assert stream["stop_reason"] == "stopped"
    assert 1000 <= stream["duration_ms"] < 2500


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"StreamUrl": None}, "Missing parameter(s): StreamUrl"),
        ({"StreamType": None}, "Missing parameter(s): StreamType"),
        ({"From": None, "CallerId": None}, "Missing parameter(s): From, CallerId"),
        ({"StreamType": "unidirectional"}, "StreamType must be bidirectional"),
        ({"StreamUrl": "https://bot.example/media"}, "ws:// or wss://"),
        ({"StreamUrl": "wss://bot.example/?q=" + "x" * 580}, "under 600 characters"),
        ({"StreamName": "n" * 33}, "StreamName must be at most 32 characters"),
        ({"CustomField": "c" * 129}, "CustomField is longer than 128 characters"),
        ({"TimeLimit": "14401"}, "TimeLimit must be a whole number of seconds, 1 to 14400"),
        ({"TimeLimit": "0"}, "TimeLimit"),
        ({"TimeLimit": "ten"}, "TimeLimit"),
        ({"Record": "yes"}, "Record must be true or false"),
        ({"RecordingChannels": "stereo"}, "RecordingChannels must be single or dual"),
        ({"StatusCallbackEvents[0]": "hangup"}, "StatusCallbackEvents"),
        ({"To": "+919800000011"}, "not both"),
        ({"Url": f"http://my.exotel.com/{SID}/exoml/start_voice/1234"}, "not both"),
        ({"CallType": "daily"}, "CallType must be trans or promo"),
        ({"WaitUrl": "http://x"}, "WaitUrl is not implemented by the sandbox"),
        ({"Colour": "blue"}, "Unknown parameter Colour"),
        ({"streamurl": "wss://other.example/"}, "StreamUrl is given twice"),
    ],
)
async def test_a_request_exotel_would_refuse_is_a_400_with_the_reason(
    sandbox: httpx.AsyncClient, change: dict[str, str | None], message: str
) -> None:
    fields = {**voice_ai("wss://bot.example/media?sample-rate=8000"), **change}
    data = {name: value for name, value in fields.items() if value is not None}

    response = await sandbox.post(CONNECT + ".json", data=data)

    assert response.status_code == 400, response.text
    assert message in rest_exception(response)["Message"]
    assert rest_exception(response)["Status"] == 400
    assert (await sandbox.get("/_sandbox/calls")).json() == []


async def test_the_documented_limits_themselves_are_accepted(sandbox: httpx.AsyncClient) -> None:
    url = "wss://bot.example/?q=" + "x" * (600 - len("wss://bot.example/?q="))
    fields = voice_ai(
        url,
        StreamName="n" * 32,
        CustomField="c" * 128,
        TimeLimit="14400",
        Record="true",
        RecordingChannels="dual",
    )

    response = await sandbox.post(CONNECT + ".json", data=fields)

    assert len(url) == 600
    assert response.status_code == 200, response.text


async def test_an_account_without_the_feature_gets_403(sandbox: httpx.AsyncClient) -> None:
    account = {"sid": SID, "api_key": KEY, "api_token": TOKEN, "connect_voice_ai": False}
    await sandbox.post("/_sandbox/accounts", json=account)

    refused = await sandbox.post(CONNECT + ".json", data=voice_ai("wss://bot.example/"))
    flow_call = await sandbox.post(
        CONNECT + ".json",
        data={
            "From": CALLER,
            "CallerId": EXOPHONE,
            "Url": f"http://my.exotel.com/{SID}/exoml/start_voice/1234",
        },
    )
    listed = (await sandbox.get("/_sandbox/accounts")).json()

    assert refused.status_code == 403
    assert "not enabled for this account" in rest_exception(refused)["Message"]
    assert flow_call.status_code == 200  # the "with flow" variant needs no such feature
    assert listed == [{"sid": SID, "connect_voice_ai": False}]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://example.com/my-own-flow", "Url must be an Exotel flow URL"),
        (f"https://my.exotel.com/{SID}/exoml/start_voice/999", "No flow 999"),
        ("https://my.exotel.com/someone-else/exoml/start_voice/1234", "names account"),
    ],
)
async def test_the_with_flow_variant_takes_only_an_exotel_flow_url(
    sandbox: httpx.AsyncClient, url: str, message: str
) -> None:
    fields = {"From": CALLER, "CallerId": EXOPHONE, "Url": url, "CallType": "trans"}

    response = await sandbox.post(CONNECT + ".json", data=fields)

    assert response.status_code == 400
    assert message in rest_exception(response)["Message"]


async def test_the_stream_urls_credentials_stay_out_of_the_request_log(
    sandbox: httpx.AsyncClient,
) -> None:
    await sandbox.post(
        CONNECT + ".json", data=voice_ai("wss://KEY9:SECRET9@bot.example/m?token=tok9")
    )

    logged = (await sandbox.get("/_sandbox/requests")).text

    assert "SECRET9" not in logged
    assert "tok9" not in logged
