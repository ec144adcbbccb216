"""The sandbox's AgentStream client, playing Exotel's part against real peers on 127.0.0.1:
exoplane's own media core in a child process, and scripted bots."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import shutil
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exoplane.sandbox import agentstream
from exoplane.sandbox.agentstream import StreamCall, StreamReport, redact, run_stream
from exoplane.sandbox.audio import builtin_clip, frames
from tests.conftest import (
    BACKEND,
    POSTGRES_URL,
    REDIS_URL,
    ServerProcess,
    _admin,
    _with_database,
    free_port,
)
from tests.sandbox.bot_peer import BotPeer, PeerCall, b64, media_text

CALL = StreamCall(
    call_sid="c0ffee", account_sid="acme", from_number="+919876543210", to_number="+918047491899"
)
QUIET_S = 0.3
ONE_FRAME = builtin_clip(8000)[:1600]  # 100 ms: the caller says little, the bot is the test


def seconds_of(seconds: float, rate: int = 8000) -> bytes:
    """Non-silent PCM16 of a whole number of 20 ms blocks."""
    return (builtin_clip(rate) * 4)[: int(seconds * rate) * 2]


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


@pytest.fixture(scope="module")
def media_core(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """``exoplane serve`` with default settings, shared by this module's tests."""
    env = {
        "EXOPLANE_LOG_LEVEL": "info",
        "EXOPLANE_REDIS_KEY_PREFIX": f"exoplane-test-{uuid.uuid4().hex[:12]}",
    }
    database = None
    if BACKEND == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path_factory.mktemp("agentstream-db") / "exoplane.db"
        shutil.copyfile(template, path)
        env["EXOPLANE_DATABASE_URL"] = f"sqlite+aiosqlite:///{path}"
    else:
        template_name: str = request.getfixturevalue("postgres_template")
        database = f"exoplane_agentstream_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(f'CREATE DATABASE "{database}" TEMPLATE "{template_name}"'))
        env["EXOPLANE_DATABASE_URL"] = _with_database(POSTGRES_URL, database)
        env["EXOPLANE_REDIS_URL"] = REDIS_URL
    process = ServerProcess(tmp_path_factory.mktemp("agentstream-core"), env)
    yield process
    process.stop()
    if database is not None:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def core_url(core: ServerProcess, path: str) -> str:
    return "ws://" + core.base_url.removeprefix("http://") + path


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_the_echo_bot_returns_the_builtin_clip_byte_exact(
    media_core: ServerProcess, http: aiohttp.ClientSession, rate: int
) -> None:
    url = core_url(media_core, f"/exotel/echo?sample-rate={rate}&k1=v1")

    report, received = await run_stream(url, CALL, http=http, quiet_seconds=0.5)

    clip = builtin_clip(rate)
    # 1.2 s is six whole 200 ms chunks: the echo bot sends them back unpadded.
    assert received == clip
    assert report.connected is True
    assert report.error is None
    assert report.sample_rate == rate
    assert report.custom_parameters == {"k1": "v1"}
    assert report.ended_by == "caller"
    assert report.stop_reason == "callended"
    assert report.close_code == 1000
    assert report.violations == []
    assert report.frames_sent == 12
    assert report.bytes_sent == report.bytes_received == report.bytes_played == len(clip)
    assert report.sent_sha256 == report.received_sha256 == hashlib.sha256(clip).hexdigest()
    assert report.media_messages_received == 6
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


async def test_the_bot_receives_connected_start_paced_media_and_stop_as_exotel_sends_them(
    http: aiohttp.ClientSession,
) -> None:
    clip = builtin_clip(8000)[:4800]  # three 100 ms frames

    async with BotPeer() as peer:
        report, _ = await run_stream(
            peer.url(query="sample-rate=8000&k1=v1"),
            CALL,
            http=http,
            clip=clip,
            quiet_seconds=QUIET_S,
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
    media = messages[2:5]
    assert [m["sequence_number"] for m in media] == ["2", "3", "4"]
    assert [m["media"]["chunk"] for m in media] == ["1", "2", "3"]
    assert [m["media"]["timestamp"] for m in media] == ["100", "200", "300"]
    assert all(m["stream_sid"] == sid for m in media)
    assert b"".join(base64.b64decode(m["media"]["payload"]) for m in media) == clip
    assert messages[5:] == [
        {
            "event": "stop",
            "sequence_number": "5",
            "stream_sid": sid,
            "stop": {"call_sid": "c0ffee", "account_sid": "acme", "reason": "callended"},
        }
    ]
    arrivals = [a.at for a in call.all("media")]
    assert arrivals[2] - arrivals[0] == pytest.approx(0.2, abs=0.05)
    # The caller hangs up once the bot has been quiet for quiet_seconds after the clip.
    assert call.all("stop")[0].at - arrivals[2] == pytest.approx(QUIET_S, abs=0.1)


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
        report, received = await run_stream(
            peer.url(), CALL, http=http, clip=ONE_FRAME, quiet_seconds=QUIET_S
        )
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
        report, received = await run_stream(
            peer.url(), CALL, http=http, clip=ONE_FRAME, quiet_seconds=QUIET_S
        )
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


async def test_a_short_chunk_and_bad_base64_are_violations_and_the_stream_goes_on(
    http: aiohttp.ClientSession,
) -> None:
    async def bot(call: PeerCall) -> None:
        await call.started()
        await call.send_audio(bytes(100))
        await call.send_text(media_text(call.stream_sid, "not base64!"))
        await call.send_audio(seconds_of(0.2))
        await call.send_mark("still-here")

    async with BotPeer(bot) as peer:
        report, received = await run_stream(
            peer.url(), CALL, http=http, clip=ONE_FRAME, quiet_seconds=QUIET_S
        )

    assert report.violation_count == 2
    assert "100 bytes" in report.violations[0]
    assert "multiple of 320" in report.violations[0]
    assert "3200-byte minimum" in report.violations[0]
    assert "base64" in report.violations[1]
    assert report.marks_echoed == ["still-here"]
    assert len(received) == 100 + 3200
    assert report.ended_by == "caller"
    assert report.stop_reason == "callended"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (lambda sid: media_text(sid, b64(bytes(3520 + 100))), "not a multiple of 320"),
        (lambda sid: media_text(sid, b64(bytes(320))), "under the 3200-byte minimum"),
        (lambda sid: media_text(sid, b64(bytes(321 * 320))), "over the 102400-byte maximum"),
        (lambda sid: "{not json", "not JSON"),
        (lambda sid: json.dumps({"event": "dance", "stream_sid": sid}), "unknown event"),
        (lambda sid: media_text("someone-else", b64(bytes(3200))), "'someone-else'"),
        (lambda sid: media_text("", b64(bytes(3200))), "without a stream_sid"),
        (lambda sid: json.dumps({"event": "stop", "stream_sid": sid}), "'stop' is sent by"),
    ],
    ids=[
        "misaligned",
        "too-small",
        "too-big",
        "not-json",
        "unknown",
        "other-sid",
        "no-sid",
        "stop",
    ],
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
        report, _ = await run_stream(peer.url(), CALL, http=http, clip=ONE_FRAME, quiet_seconds=0.2)

    assert report.violation_count == 1, report.violations
    assert report.violations[0].startswith("message 1: ")
    assert expected in report.violations[0]
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
        report, _ = await run_stream(peer.url(), CALL, http=http, quiet_seconds=QUIET_S)
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
        report, received = await run_stream(peer.url(), CALL, http=http, quiet_seconds=QUIET_S)

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
            peer.url(userinfo=secret), CALL, http=http, clip=ONE_FRAME, quiet_seconds=0.1
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
                url, CALL, http=http, clip=builtin_clip(16000)[:3200], quiet_seconds=0.1
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

    assert time.monotonic() - began < 1.0
    assert_clean_failure(report, received)
    assert report.error == "the WebSocket handshake did not complete within 0.3 s"


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
