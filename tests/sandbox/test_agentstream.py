"""The sandbox's AgentStream client, playing Exotel's part against real peers on 127.0.0.1:
exoplane's own media core in a child process, and scripted bots."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import struct
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.http11 import Request
from websockets.http11 import Response as WsResponse

from exoplane.sandbox import agentstream
from exoplane.sandbox.agentstream import (
    Caller,
    StreamCall,
    StreamReport,
    redact,
    run_stream,
    voiced,
)
from exoplane.sandbox.audio import builtin_clip, echoed, frames
from tests.conftest import (
    ServerProcess,
    free_port,
)
from tests.sandbox.bot_peer import BotPeer, PeerCall, b64, late_bot, media_text, seconds_of
from tests.sandbox.conftest import core_url

CALL = StreamCall(
    call_sid="c0ffee", account_sid="acme", from_number="+919876543210", to_number="+918047491899"
)
QUIET_S = 0.3
ONE_FRAME = builtin_clip(8000)[1600:3200]  # 100 ms: the caller says little, the bot is the test


def brief(clip: bytes = ONE_FRAME, *, quiet: float = 0.2, reply: float = 0.3) -> Caller:
    """A caller that speaks one short turn, and does not wait long for a reply."""
    return Caller(turns=1, utterances=(clip,), silence_seconds=quiet, reply_timeout_seconds=reply)


def stream_tasks() -> list[asyncio.Task[Any]]:
    """Tasks the client started that are still alive."""
    alive = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and (
            code.co_filename == agentstream.__file__ or code.co_qualname == "Event.wait"
        ):
            alive.append(task)
    return alive


def assert_clean_failure(report: StreamReport, received: bytes) -> None:
    assert report.connected is False
    assert report.ended_by == "error"
    assert report.error
    assert report.stop_reason is None
    assert report.frames_sent == 0
    assert received == b""
    assert stream_tasks() == []


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --- the media core -----------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_the_echo_bot_returns_the_builtin_clip_byte_exact(
    media_core: ServerProcess, http: aiohttp.ClientSession, rate: int
) -> None:
    url = core_url(media_core, f"/exotel/echo?sample-rate={rate}&k1=v1")

    report, received = await run_stream(
        url, CALL, http=http, caller=Caller(turns=1, silence_seconds=0.3)
    )

    clip = builtin_clip(rate)
    # The bot echoes the whole line: the caller's clip, byte-exact, and the silence around it.
    assert echoed(clip, received) == 1
    assert report.connected is True
    assert report.error is None
    assert report.sample_rate == rate
    assert report.custom_parameters == {"k1": "v1"}
    assert report.ended_by == "caller"
    assert report.end_reason == "the caller hung up after its last turn (1)"
    assert report.stop_reason == "callended"
    assert report.close_code == 1000
    assert report.violations == []
    (turn,) = report.turns
    assert turn["bytes"] == len(clip)
    assert turn["reply_after_ms"] is not None
    assert turn["reply_after_ms"] < 0  # an echo begins while the caller is still speaking
    assert report.bytes_sent >= len(clip)
    assert report.bytes_received == len(received) >= report.bytes_played
    assert report.received_sha256 == hashlib.sha256(received).hexdigest()
    assert [e["event"] for e in report.events][:4] == ["connect", "handshake", "connected", "start"]
    assert stream_tasks() == []


async def test_an_unknown_bot_on_the_media_core_is_a_refused_stream(
    media_core: ServerProcess, http: aiohttp.ClientSession
) -> None:
    report, received = await run_stream(
        core_url(media_core, "/exotel/no-such-bot"), CALL, http=http
    )

    assert_clean_failure(report, received)
    assert report.close_code == 4404
    assert report.error is not None
    assert "4404" in report.error
    assert "no-such-bot" in report.error


# --- what the bot receives ----------------------------------------------------------------


async def test_the_bot_receives_connected_start_a_paced_line_and_stop_as_exotel_sends_them(
    http: aiohttp.ClientSession,
) -> None:
    clip = builtin_clip(8000)[1600:6400]  # three 100 ms frames

    async with BotPeer() as peer:
        report, _ = await run_stream(
            peer.url(query="sample-rate=8000&k1=v1"),
            CALL,
            http=http,
            caller=brief(clip, quiet=QUIET_S, reply=0.5),
        )
        call = await peer.only_call()

    sid = report.stream_sid
    messages = [arrival.message for arrival in call.arrivals]
    assert messages[0] == {"event": "connected"}
    assert messages[1] == {
        "event": "start",
        "sequence_number": "1",
        "stream_sid": sid,
        "start": {
            "stream_sid": sid,
            "call_sid": "c0ffee",
            "account_sid": "acme",
            "from": "+919876543210",
            "to": "+918047491899",
            "custom_parameters": {"k1": "v1"},
            "media_format": {"encoding": "raw", "sample_rate": "8000", "bit_rate": "128"},
        },
    }
    media = messages[2:-1]
    # A frame every 100 ms for the whole call: silence, the utterance, silence.
    assert [m["sequence_number"] for m in media] == [str(n) for n in range(2, len(media) + 2)]
    assert [m["media"]["chunk"] for m in media] == [str(n) for n in range(1, len(media) + 1)]
    assert [m["media"]["timestamp"] for m in media] == [
        str(100 * n) for n in range(1, len(media) + 1)
    ]
    assert all(m["stream_sid"] == sid for m in media)
    line = [base64.b64decode(m["media"]["payload"]) for m in media]
    spoken = [n for n, frame in enumerate(line) if any(frame)]
    assert b"".join(line[spoken[0] : spoken[-1] + 1]) == clip
    # The caller waits for a greeting first, as long as its silence threshold.
    assert spoken[0] == pytest.approx(QUIET_S * 10, abs=1)
    assert messages[-1] == {
        "event": "stop",
        "sequence_number": str(len(media) + 2),
        "stream_sid": sid,
        "stop": {"call_sid": "c0ffee", "account_sid": "acme", "reason": "callended"},
    }
    arrivals = [a.at for a in call.all("media")]
    assert arrivals[10] - arrivals[0] == pytest.approx(1.0, abs=0.1)
    # The bot never replied: the caller hangs up once the reply timeout has passed.
    assert call.all("stop")[0].at - arrivals[spoken[-1]] == pytest.approx(0.5, abs=0.15)
    assert report.ended_by == "caller"
    assert report.end_reason == "the bot did not reply within 0.5 s of turn 1"
    assert report.turns == [
        {"turn": 1, "t_ms": report.turns[0]["t_ms"], "bytes": len(clip), "reply_after_ms": None}
    ]


# --- the conversation --------------------------------------------------------------------

SCALE = 0.1  # the caller's waits and the bot's lateness alike: 3 s late becomes 0.3 s


async def test_a_bot_answering_3_s_late_holds_a_three_turn_conversation(
    http: aiohttp.ClientSession,
) -> None:
    reply = seconds_of(0.4)
    greeting = seconds_of(0.6)
    # The defaults: three turns, a 10 s reply timeout, a 1.5 s silence threshold.
    caller = Caller(utterances=(builtin_clip(8000)[:4800],), time_scale=SCALE)

    async with BotPeer(late_bot(3.0 * SCALE, reply, greeting)) as peer:
        report, received = await run_stream(peer.url(), CALL, http=http, caller=caller)
        call = await peer.only_call()

    assert report.ended_by == "caller"
    assert report.end_reason == "the caller hung up after its last turn (3)"
    assert [turn["turn"] for turn in report.turns] == [1, 2, 3]
    for turn in report.turns:
        assert 3.0 * SCALE * 1000 <= turn["reply_after_ms"] < 3.0 * SCALE * 1000 + 400, turn
    assert received == greeting + reply * 3
    assert report.bytes_played == len(received)  # every reply was heard out
    # The caller heard the greeting out before its first turn.
    first_spoken = next(
        a.at for a in call.all("media") if voiced(base64.b64decode(a.message["media"]["payload"]))
    )
    assert first_spoken - call.first("start").at >= 0.6 + 1.5 * SCALE  # type: ignore[union-attr]


async def test_a_bot_slower_than_the_reply_timeout_is_not_waited_for(
    http: aiohttp.ClientSession,
) -> None:
    caller = Caller(utterances=(ONE_FRAME,), reply_timeout_seconds=2, time_scale=SCALE)

    async with BotPeer(late_bot(4 * 2 * SCALE, seconds_of(0.4))) as peer:
        report, received = await run_stream(peer.url(), CALL, http=http, caller=caller)

    assert report.ended_by == "caller"
    assert report.end_reason == "the bot did not reply within 2 s of turn 1"
    assert report.turns[0]["reply_after_ms"] is None
    assert received == b""


async def test_an_open_line_stays_on_until_the_bot_hangs_up(http: aiohttp.ClientSession) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await call.send_audio(seconds_of(0.2))
        await asyncio.sleep(1.0)  # far past the caller's silence threshold and reply timeout
        await call.socket.close(1000, "goodbye")

    caller = Caller(turns=0, open_line=True, silence_seconds=0.1, reply_timeout_seconds=0.1)
    async with BotPeer(bot) as peer:
        report, _ = await run_stream(peer.url(), CALL, http=http, caller=caller)

    assert report.ended_by == "bot"
    assert report.end_reason == "the bot hung up (close code 1000 (goodbye))"
    assert report.duration_ms >= 1000
    assert report.turns == []


async def test_the_talk_time_ends_an_open_line(http: aiohttp.ClientSession) -> None:
    caller = Caller(turns=1, open_line=True, talk_seconds=5, time_scale=SCALE)
    async with BotPeer() as peer:
        report, _ = await run_stream(peer.url(), CALL, http=http, caller=caller)

    assert report.ended_by == "limit"
    assert report.stop_reason == "stopped"
    assert report.end_reason == "the call reached its talk time of 5 s"
    assert 500 <= report.duration_ms < 1500


# --- playback, marks and clear ------------------------------------------------------------


async def test_marks_are_echoed_only_after_the_audio_before_them_has_played(
    http: aiohttp.ClientSession,
) -> None:
    sent: dict[str, float] = {}

    async def bot(call: PeerCall) -> None:
        await call.started()
        sent["audio"] = await call.send_audio(seconds_of(0.4))
        await call.send_mark("first")
        await call.send_audio(seconds_of(0.2))
        await call.send_mark("second")

    async with BotPeer(bot) as peer:
        report, received = await run_stream(peer.url(), CALL, http=http, caller=brief())
        call = await peer.only_call()

    assert report.marks_received == ["first", "second"]
    assert report.marks_echoed == ["first", "second"]
    assert report.bytes_played == len(received) == 9600
    first = call.echo_time("first") - sent["audio"]
    second = call.echo_time("second") - sent["audio"]
    assert 0.37 <= first < 0.55
    assert 0.57 <= second < 0.75
    assert report.ended_by == "caller"


async def test_clear_drops_the_queued_audio_and_echoes_the_waiting_mark_at_once(
    http: aiohttp.ClientSession,
) -> None:
    sent: dict[str, float] = {}
    audio = seconds_of(2.0)

    async def bot(call: PeerCall) -> None:
        await call.started()
        sent["audio"] = await call.send_audio(audio)
        await call.send_mark("end-of-turn")
        await asyncio.sleep(0.3)
        sent["clear"] = await call.send_clear()

    async with BotPeer(bot) as peer:
        report, received = await run_stream(peer.url(), CALL, http=http, caller=brief())
        call = await peer.only_call()

    assert received == audio
    assert report.clears == 1
    assert report.bytes_cleared > 0
    assert report.bytes_played + report.bytes_cleared == len(audio)
    assert 0.2 * 16000 <= report.bytes_played <= 0.45 * 16000
    assert report.marks_echoed == ["end-of-turn"]
    assert call.echo_time("end-of-turn") - sent["clear"] < 0.1
    assert report.ended_by == "caller"
    assert report.violations == []
    clear = next(e for e in report.events if e["event"] == "clear")
    assert clear["bytes_cleared"] == report.bytes_cleared


# --- violations ---------------------------------------------------------------------------


async def test_a_short_chunk_is_a_warning_bad_base64_a_violation_and_the_stream_goes_on(
    http: aiohttp.ClientSession,
) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await call.send_audio(bytes(100))
        await call.send_text(media_text(call.stream_sid, "not base64!"))
        await call.send_audio(seconds_of(0.2))
        await call.send_mark("still-here")

    async with BotPeer(bot) as peer:
        report, received = await run_stream(peer.url(), CALL, http=http, caller=brief())

    assert report.violation_count == 1
    assert "base64" in report.violations[0]
    assert [(w["kind"], w["count"], w["first_message"]) for w in report.chunk_warnings] == [
        ("not_aligned", 1, 1),
        ("under_minimum", 1, 1),
    ]
    assert report.marks_echoed == ["still-here"]
    assert len(received) == 100 + 3200
    assert report.ended_by == "caller"
    assert report.stop_reason == "callended"


async def test_pipecats_default_640_byte_chunks_are_one_warning_with_its_fix(
    http: aiohttp.ClientSession,
) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        audio = seconds_of(1.2)
        for offset in range(0, len(audio), 640):  # 40 ms pieces, as pipecat sends by default
            await call.send_audio(audio[offset : offset + 640])

    async with BotPeer(bot) as peer:
        report, received = await run_stream(peer.url(), CALL, http=http, caller=brief())

    assert report.violations == []
    assert report.violation_count == 0
    [warning] = report.chunk_warnings
    assert warning == {
        "kind": "under_minimum",
        "what": "chunks under Exotel's documented 3200-byte minimum",
        "count": 30,
        "first_message": 1,
        "smallest_bytes": 640,
        "largest_bytes": 640,
        "fix": warning["fix"],
    }
    assert "audio_out_10ms_chunks=20" in warning["fix"]
    assert len(received) == 30 * 640


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (lambda sid: media_text(sid, b64(bytes(3520 + 100))), ["not_aligned"]),
        (lambda sid: media_text(sid, b64(bytes(320))), ["under_minimum"]),
        (lambda sid: media_text(sid, b64(bytes(330))), ["not_aligned", "under_minimum"]),
        (lambda sid: media_text(sid, b64(bytes(321 * 320))), ["over_maximum"]),
    ],
    ids=["misaligned", "too-small", "both", "too-big"],
)
async def test_each_kind_of_chunk_deviation_is_a_warning_not_a_violation(
    http: aiohttp.ClientSession, frame: Any, expected: list[str]
) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await call.send_text(frame(call.stream_sid))
        await call.send_clear()  # whatever was queued need not be heard out

    async with BotPeer(bot) as peer:
        report, _ = await run_stream(peer.url(), CALL, http=http, caller=brief())

    assert report.violations == []
    assert [warning["kind"] for warning in report.chunk_warnings] == expected
    assert all(warning["fix"] for warning in report.chunk_warnings)


def paced_bot(bot_rate: int, seconds: float = 1.2) -> Any:
    """A bot that sends 100 ms chunks of ``bot_rate`` audio at real time, as TTS is streamed."""

    async def bot(call: PeerCall) -> None:
        await call.started()
        chunk = bot_rate * 2 // 10
        audio = seconds_of(seconds, bot_rate)
        began = time.monotonic()
        for n, offset in enumerate(range(0, len(audio), chunk)):
            await asyncio.sleep(max(0.0, began + n * 0.1 - time.monotonic()))
            await call.send_audio(audio[offset : offset + chunk])

    return bot


@pytest.mark.parametrize(("stream_rate", "bot_rate"), [(8000, 24000), (16000, 8000)])
async def test_a_bot_pacing_audio_of_another_sample_rate_is_flagged(
    http: aiohttp.ClientSession, stream_rate: int, bot_rate: int
) -> None:
    async with BotPeer(paced_bot(bot_rate)) as peer:
        report, _ = await run_stream(
            peer.url(query=f"sample-rate={stream_rate}"),
            CALL,
            http=http,
            # Waits generous enough that a loaded machine hears every chunk out.
            caller=brief(builtin_clip(stream_rate)[: stream_rate // 5], quiet=1.0, reply=5.0),
        )

    warnings = {warning["kind"]: warning for warning in report.chunk_warnings}
    assert warnings["implied_rate"]["implied_rate"] == bot_rate
    assert warnings["implied_rate"]["what"] == (
        f"chunks paced as {bot_rate} Hz audio on a {stream_rate} Hz stream"
    )
    assert "?sample-rate=" in warnings["implied_rate"]["fix"]
    assert report.violations == []


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
async def test_a_bot_pacing_audio_at_the_streams_rate_is_not_flagged(
    http: aiohttp.ClientSession, rate: int
) -> None:
    async with BotPeer(paced_bot(rate)) as peer:
        report, _ = await run_stream(
            peer.url(query=f"sample-rate={rate}"),
            CALL,
            http=http,
            caller=brief(builtin_clip(rate)[: rate // 5]),
        )

    # (100 ms chunks are under the 3,200-byte minimum at 8 kHz: that is another warning.)
    assert "implied_rate" not in [warning["kind"] for warning in report.chunk_warnings]
    assert report.bytes_received == len(seconds_of(1.2, rate))


async def test_a_burst_of_audio_says_nothing_about_its_rate(http: aiohttp.ClientSession) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        audio = seconds_of(2.4, 24000)  # as a 24 kHz bot would, but all at once
        for offset in range(0, len(audio), 4800):
            await call.send_audio(audio[offset : offset + 4800])

    async with BotPeer(bot) as peer:
        report, _ = await run_stream(peer.url(), CALL, http=http, caller=brief())

    assert report.chunk_warnings == []


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (lambda sid: "{not json", "not JSON"),
        (lambda sid: json.dumps({"event": "dance", "stream_sid": sid}), "unknown event"),
        (lambda sid: media_text("someone-else", b64(bytes(3200))), "'someone-else'"),
        (lambda sid: media_text("", b64(bytes(3200))), "without a stream_sid"),
        (lambda sid: json.dumps({"event": "stop", "stream_sid": sid}), "'stop' is sent by"),
    ],
    ids=["not-json", "unknown", "other-sid", "no-sid", "stop"],
)
async def test_each_rule_a_bot_message_breaks_is_reported(
    http: aiohttp.ClientSession, frame: Any, expected: str
) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await call.send_text(frame(call.stream_sid))
        await call.send_clear()  # whatever was queued need not be heard out
        await call.send_mark("after")

    async with BotPeer(bot) as peer:
        report, _ = await run_stream(peer.url(), CALL, http=http, caller=brief())

    assert report.violation_count == 1, report.violations
    assert report.violations[0].startswith("message 1: ")
    assert expected in report.violations[0]
    assert report.chunk_warnings == []
    assert report.marks_echoed == ["after"]
    assert report.ended_by == "caller"


# --- how a stream ends --------------------------------------------------------------------


async def test_the_bot_closing_the_socket_ends_the_call_without_a_stop(
    http: aiohttp.ClientSession,
) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await call.socket.close(1000, "goodbye")

    async with BotPeer(bot) as peer:
        report, _ = await run_stream(peer.url(), CALL, http=http, caller=brief())
        call = await peer.only_call()

    assert report.connected is True
    assert report.ended_by == "bot"
    assert report.error is None
    assert report.stop_reason is None
    assert report.close_code == 1000
    assert call.all("stop") == []
    assert report.events[-1] == {**report.events[-1], "dir": "in", "event": "close", "code": 1000}
    assert stream_tasks() == []


async def test_a_frame_over_the_size_limit_fails_the_stream(http: aiohttp.ClientSession) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await call.send_text(media_text(call.stream_sid, "A" * agentstream.MAX_FRAME_BYTES))

    async with BotPeer(bot) as peer:
        report, received = await run_stream(peer.url(), CALL, http=http, caller=brief())

    assert report.connected is True
    assert report.ended_by == "error"
    assert report.error is not None
    assert "1009" in report.error
    assert report.stop_reason is None
    assert received == b""
    assert stream_tasks() == []


async def test_a_hangup_sends_stop_callended_at_once(http: aiohttp.ClientSession) -> None:
    hangup = asyncio.Event()

    async def bot(call: PeerCall) -> None:
        await call.started()
        asyncio.get_running_loop().call_later(0.25, hangup.set)

    async with BotPeer(bot) as peer:
        began = time.monotonic()
        report, _ = await run_stream(peer.url(), CALL, http=http, hangup=hangup)
        call = await peer.only_call()

    assert time.monotonic() - began < 0.6
    assert report.ended_by == "hangup"
    assert report.stop_reason == "callended"
    assert 1 <= report.frames_sent <= 4
    stop = call.arrivals[-1].message
    assert stop["event"] == "stop"
    assert stop["stop"] == {"call_sid": "c0ffee", "account_sid": "acme", "reason": "callended"}
    assert stream_tasks() == []


async def test_the_duration_limit_stops_the_stream_with_reason_stopped(
    http: aiohttp.ClientSession,
) -> None:
    async with BotPeer() as peer:
        report, _ = await run_stream(peer.url(), CALL, http=http, max_seconds=0.35)
        call = await peer.only_call()

    assert report.ended_by == "limit"
    assert report.stop_reason == "stopped"
    assert call.all("stop")[0].message["stop"]["reason"] == "stopped"
    assert 300 <= report.duration_ms < 1000


async def test_cancelling_closes_the_socket_and_leaves_no_task_behind(
    http: aiohttp.ClientSession,
) -> None:
    async with BotPeer() as peer:
        running = asyncio.create_task(run_stream(peer.url(), CALL, http=http))
        call = await peer.only_call()
        await call.started()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await asyncio.wait_for(call.closed.wait(), 2)

    assert stream_tasks() == []


# --- URLs ---------------------------------------------------------------------------------


async def test_url_credentials_go_out_as_basic_auth_and_nowhere_else(
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "KEY-7f3a:TOKEN-9b1c"

    async with BotPeer() as peer:
        report, _ = await run_stream(
            peer.url(userinfo=secret), CALL, http=http, caller=brief(quiet=0.1, reply=0.1)
        )
        call = await peer.only_call()

    assert call.headers is not None
    assert call.headers["Authorization"] == "Basic " + b64(secret.encode())
    assert report.url == f"ws://***@127.0.0.1:{peer.port}/bot"
    captured = capfd.readouterr()
    # The peer's own server logs what it received; only the client's side counts here.
    client_log = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")
    )
    for text in (report.model_dump_json(), client_log, captured.out, captured.err):
        assert "TOKEN-9b1c" not in text
        assert b64(secret.encode()) not in text


def test_redact_hides_userinfo_only() -> None:
    assert redact("wss://k:t@bot.example/x?a=b@c") == "wss://***@bot.example/x?a=b@c"
    assert redact("https://bot.example/x?a=b@c") == "https://bot.example/x?a=b@c"


async def test_an_http_url_is_asked_for_the_socket_url(http: aiohttp.ClientSession) -> None:
    asked: list[dict[str, str]] = []

    async with BotPeer() as peer:
        socket_url = peer.url(query="sample-rate=16000&lang=hi")

        async def answer(request: web.Request) -> web.Response:
            asked.append(dict(request.query))
            return web.json_response({"url": socket_url})

        app = web.Application()
        app.router.add_get("/voicebot", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            url = f"http://127.0.0.1:{port}/voicebot?flow=7"
            report, _ = await run_stream(
                url,
                CALL,
                http=http,
                caller=brief(builtin_clip(16000)[1600:4800], quiet=0.1, reply=0.1),
            )
        finally:
            await runner.cleanup()
        call = await peer.only_call()

    assert asked == [
        {"flow": "7", "CallSid": "c0ffee", "CallFrom": "+919876543210", "CallTo": "+918047491899"}
    ]
    assert report.url == url
    assert report.connected is True
    assert report.sample_rate == 16000
    assert report.custom_parameters == {"lang": "hi"}
    start = call.all("start")[0].message["start"]
    assert start["media_format"]["sample_rate"] == "16000"
    assert start["custom_parameters"] == {"lang": "hi"}
    assert [e["event"] for e in report.events[:2]] == ["resolve", "resolved"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&b=2&c=3&d=4", "4 custom parameters"),
        ("sample-rate=44100", "44100"),
        ("a=" + "x" * 300, "302 characters"),
    ],
)
async def test_a_url_exotel_would_refuse_is_not_connected(
    http: aiohttp.ClientSession, query: str, expected: str
) -> None:
    async with BotPeer() as peer:
        report, received = await run_stream(peer.url(query=query), CALL, http=http)

    assert_clean_failure(report, received)
    assert report.error is not None
    assert expected in report.error
    assert peer.calls == []


# --- connection failures ------------------------------------------------------------------


async def test_a_refused_connection_is_reported(http: aiohttp.ClientSession) -> None:
    report, received = await run_stream(f"ws://127.0.0.1:{free_port()}/bot", CALL, http=http)

    assert_clean_failure(report, received)
    assert report.error is not None
    assert report.error.startswith("could not connect")


async def test_a_handshake_that_never_answers_times_out(http: aiohttp.ClientSession) -> None:
    writers: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(
        lambda _reader, writer: writers.append(writer), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        began = time.monotonic()
        report, received = await run_stream(
            f"ws://127.0.0.1:{port}/bot", CALL, http=http, connect_timeout=0.3
        )
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()

    assert time.monotonic() - began < 1.5
    assert_clean_failure(report, received)
    assert report.error == "the WebSocket handshake did not complete within 0.3 s (tried 2 times)"
    assert len(writers) == 2


async def test_a_failed_handshake_is_retried_once_as_exotel_does(
    http: aiohttp.ClientSession,
) -> None:
    handshakes: list[str] = []

    def first_refused(_socket: ServerConnection, request: Request) -> WsResponse | None:
        handshakes.append(request.path)
        if len(handshakes) == 1:
            return _socket.respond(HTTPStatus.SERVICE_UNAVAILABLE, "warming up\n")
        return None

    async def bot(socket: ServerConnection) -> None:
        await socket.wait_closed()

    async with ws_serve(bot, "127.0.0.1", 0, process_request=first_refused) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        report, _ = await run_stream(
            f"ws://127.0.0.1:{port}/bot", CALL, http=http, caller=brief(reply=0.1)
        )

    assert handshakes == ["/bot", "/bot"]
    assert report.connected is True
    assert report.error is None
    assert report.ended_by == "caller"
    events = [(e["event"], e.get("attempt")) for e in report.events[:4]]
    assert events == [("connect", 1), ("error", None), ("connect", 2), ("handshake", None)]
    assert "HTTP 503" in report.events[1]["error"]


async def test_an_http_rejection_of_the_handshake_is_reported(
    media_core: ServerProcess, http: aiohttp.ClientSession
) -> None:
    report, received = await run_stream(core_url(media_core, "/healthz"), CALL, http=http)

    assert_clean_failure(report, received)
    assert report.error is not None
    assert "HTTP" in report.error


# --- the built-in clip --------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_the_builtin_clip_is_whole_100ms_frames_of_gentle_audio(rate: int) -> None:
    clip = builtin_clip(rate)
    samples = struct.unpack(f"<{len(clip) // 2}h", clip)

    assert len(clip) == rate * 2 * 12 // 10
    assert [len(f) for f in frames(clip, rate)] == [rate * 2 // 10] * 12
    assert builtin_clip(rate) == clip
    assert max(abs(s) for s in samples) > 6000
    assert abs(samples[0]) < 50
    assert abs(samples[-1]) < 300


def test_frames_keep_a_trailing_partial_frame() -> None:
    assert [len(f) for f in frames(bytes(3500), 8000)] == [1600, 1600, 300]
