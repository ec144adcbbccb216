"""``/exotel/{bot_id}`` over a real socket: a WebSocket client plays Exotel's part against
``exoplane serve`` in a child process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import random
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import (
    BACKEND,
    POSTGRES_URL,
    REDIS_URL,
    SECRET_KEY,
    ServerProcess,
    _admin,
    _with_database,
)

FRAME_MS = 100  # Exotel sends about one media frame every 100 ms
RECEIVE_TIMEOUT_S = 3.0
QUIET_S = 0.6  # no frame for this long: the server has nothing more to send

Server = Callable[..., ServerProcess]


# --- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One migrated database for this module's servers (they barely use it)."""
    if BACKEND == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path_factory.mktemp("media-db") / "exoplane.db"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template_name: str = request.getfixturevalue("postgres_template")
    name = f"exoplane_media_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    yield _with_database(POSTGRES_URL, name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def start_server(
    module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Start ``exoplane serve`` with extra settings; one process per distinct setting."""
    running: dict[tuple[tuple[str, str], ...], ServerProcess] = {}

    def start(**extra: str) -> ServerProcess:
        key = tuple(sorted(extra.items()))
        if key not in running:
            env = {
                "EXOPLANE_DATABASE_URL": module_database,
                # The processes share one database, so they share its key.
                "EXOPLANE_SECRET_KEY": SECRET_KEY,
                "EXOPLANE_LOG_LEVEL": "info",
                "EXOPLANE_REDIS_KEY_PREFIX": f"exoplane-test-{uuid.uuid4().hex[:12]}",
                **extra,
            }
            if BACKEND == "postgres":
                env["EXOPLANE_REDIS_URL"] = REDIS_URL
            running[key] = ServerProcess(tmp_path_factory.mktemp("media-server"), env)
        return running[key]

    yield start
    for process in running.values():
        process.stop()


@pytest.fixture
def media(start_server: Server) -> ServerProcess:
    """The server with default settings, shared by the tests of this module."""
    return start_server()


def ws_url(server: ServerProcess, path: str, *, userinfo: str = "") -> str:
    host = server.base_url.removeprefix("http://")
    return f"ws://{userinfo + '@' if userinfo else ''}{host}{path}"


# --- playing Exotel's part ----------------------------------------------------------------


def pcm(seconds: float, rate: int = 8000, seed: int = 1) -> bytes:
    """Deterministic noise as PCM16: every byte checks that the echo is exact."""
    return random.Random(seed).randbytes(int(seconds * rate) * 2)


def chunk_size(rate: int) -> int:
    return rate * 2 // 5  # 200 ms


class ExotelCall:
    """One AgentStream as Exotel drives it."""

    def __init__(self, socket: ClientConnection, sid: str, rate: int) -> None:
        self.socket = socket
        self.sid = sid
        self.rate = rate
        self.sequence = 0
        self.chunk = 0

    async def send(self, document: dict[str, Any]) -> None:
        self.sequence += 1
        await self.socket.send(json.dumps({**document, "sequence_number": str(self.sequence)}))

    async def start(
        self, custom: dict[str, str] | None = None, *, rate_in_start: bool = True
    ) -> None:
        await self.send({"event": "connected"})
        start: dict[str, Any] = {
            "stream_sid": self.sid,
            "call_sid": f"call-{self.sid}",
            "account_sid": "acme",
            "from": "+919876543210",
            "to": "+918047491899",
            "custom_parameters": custom or {},
        }
        if rate_in_start:
            start["media_format"] = {
                "encoding": "raw",
                "sample_rate": str(self.rate),
                "bit_rate": "128",
            }
        await self.send({"event": "start", "stream_sid": self.sid, "start": start})

    def media_frame(self, audio: bytes) -> dict[str, Any]:
        self.chunk += 1
        return {
            "event": "media",
            "stream_sid": self.sid,
            "media": {
                "chunk": str(self.chunk),
                "timestamp": str((self.chunk - 1) * FRAME_MS),
                "payload": base64.b64encode(audio).decode(),
            },
        }

    async def send_audio(self, audio: bytes, *, real_time: bool = False) -> None:
        """``audio`` as 100 ms media frames, at real time or as fast as possible."""
        frame = self.rate * 2 * FRAME_MS // 1000
        began = time.monotonic()
        for index, offset in enumerate(range(0, len(audio), frame)):
            if real_time:
                await asyncio.sleep(max(0.0, began + index * FRAME_MS / 1000 - time.monotonic()))
            await self.send(self.media_frame(audio[offset : offset + frame]))

    async def mark(self, name: str) -> None:
        await self.send({"event": "mark", "stream_sid": self.sid, "mark": {"name": name}})

    async def dtmf(self, digit: str) -> None:
        await self.send(
            {"event": "dtmf", "stream_sid": self.sid, "dtmf": {"digit": digit, "duration": "100"}}
        )

    async def stop(self) -> None:
        await self.send(
            {
                "event": "stop",
                "stream_sid": self.sid,
                "stop": {
                    "call_sid": f"call-{self.sid}",
                    "account_sid": "acme",
                    "reason": "callended",
                },
            }
        )

    async def receive(self, timeout: float = RECEIVE_TIMEOUT_S) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
        return message

    async def receive_audio(self, size: int) -> bytes:
        """Media until ``size`` bytes have come back; anything else fails the test."""
        audio = b""
        while len(audio) < size:
            message = await self.receive()
            assert message["event"] == "media", message
            audio += audio_of(message)
        return audio

    async def receive_until_quiet(self, quiet: float = QUIET_S) -> list[dict[str, Any]]:
        messages = []
        while True:
            try:
                messages.append(await self.receive(quiet))
            except TimeoutError:
                return messages

    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the server to close the socket; its close code and reason."""
        try:
            while True:
                await asyncio.wait_for(self.socket.recv(), RECEIVE_TIMEOUT_S)
        except ConnectionClosed:
            return self.socket.close_code, self.socket.close_reason


def audio_of(message: dict[str, Any]) -> bytes:
    return base64.b64decode(message["media"]["payload"])


@asynccontextmanager
async def exotel_call(
    server: ServerProcess,
    bot: str = "echo",
    *,
    rate: int = 8000,
    query: str = "",
    custom: dict[str, str] | None = None,
    start: bool = True,
    userinfo: str = "",
    headers: dict[str, str] | None = None,
) -> AsyncIterator[ExotelCall]:
    """A connected stream, started unless ``start`` is false."""
    if not query and rate != 8000:
        query = f"sample-rate={rate}"
    path = f"/exotel/{bot}" + (f"?{query}" if query else "")
    async with connect(
        ws_url(server, path, userinfo=userinfo), additional_headers=headers, max_size=None
    ) as socket:
        call = ExotelCall(socket, f"stream-{uuid.uuid4().hex[:10]}", rate)
        if start:
            await call.start(custom)
        yield call


async def refusal(
    server: ServerProcess, path: str, **options: Any
) -> tuple[int | None, str | None]:
    """Connect to ``path`` and return how the server closed the socket."""
    async with connect(
        ws_url(server, path, userinfo=options.get("userinfo", "")),
        additional_headers=options.get("headers"),
    ) as socket:
        return await ExotelCall(socket, "refused", 8000).closed()


# --- metrics ------------------------------------------------------------------------------


async def metric(server: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.get("/metrics")
    match = re.search(rf"^{name} (\S+)$", response.text, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


async def metric_becomes(server: ServerProcess, name: str, value: float) -> float:
    """Poll until ``name`` reads ``value`` (teardown runs after the client sees the close)."""
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while (current := await metric(server, name)) != value and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return current


ACTIVE = "exoplane_media_active_streams"
MALFORMED = "exoplane_media_malformed_frames_total"


# --- echo ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
async def test_echo_returns_the_callers_audio_byte_exact(media: ServerProcess, rate: int) -> None:
    audio = pcm(0.6, rate)  # six 100 ms frames: three whole chunks, so nothing is padded

    async with exotel_call(media, rate=rate, custom={"lang": "hi", "campaign": "c7"}) as call:
        await call.send_audio(audio, real_time=True)
        echoed = await call.receive_audio(len(audio))

    assert echoed == audio


async def test_a_stream_whose_start_names_no_sid_gets_replies_without_an_empty_one(
    media: ServerProcess,
) -> None:
    audio = pcm(0.2, 8000)

    async with exotel_call(media, "echo", start=False) as call:
        call.sid = ""
        await call.start()
        await call.send_audio(audio)
        await call.mark("after")
        replies = [await call.receive(), await call.receive()]

    assert [reply["event"] for reply in replies] == ["media", "mark"]
    assert audio_of(replies[0]) == audio
    assert all("stream_sid" not in reply for reply in replies), replies


async def test_the_url_sample_rate_applies_when_start_does_not_name_one(
    media: ServerProcess,
) -> None:
    async with exotel_call(media, rate=16000, start=False) as call:
        await call.start(rate_in_start=False)
        await call.send_audio(pcm(0.4, 16000))
        message = await call.receive()

    assert len(audio_of(message)) == 6400


async def test_an_unsupported_sample_rate_is_closed_with_4400(media: ServerProcess) -> None:
    code, reason = await refusal(media, "/exotel/echo?sample-rate=44100")

    assert code == 4400
    assert reason is not None
    assert "44100" in reason


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
async def test_every_outbound_chunk_is_whole_320_byte_blocks_of_at_least_3200(
    media: ServerProcess, rate: int
) -> None:
    audio = pcm(0.77, rate)  # not a whole number of chunks: the mark makes the last one padded

    async with exotel_call(media, rate=rate) as call:
        await call.send_audio(audio)
        await call.mark("end")
        messages = await call.receive_until_quiet()

    sizes = [len(audio_of(m)) for m in messages if m["event"] == "media"]
    assert sizes, messages
    assert all(size % 320 == 0 and size >= 3200 for size in sizes), sizes
    assert set(sizes) == {chunk_size(rate)}


async def test_a_partial_chunk_is_padded_with_silence_before_a_mark(media: ServerProcess) -> None:
    audio = pcm(0.3)  # 4,800 bytes: one chunk and a half

    async with exotel_call(media) as call:
        await call.send_audio(audio)
        await call.mark("end")
        messages = await call.receive_until_quiet()

    assert [m["event"] for m in messages] == ["media", "media", "mark"]
    echoed = audio_of(messages[0]) + audio_of(messages[1])
    assert echoed[: len(audio)] == audio
    assert echoed[len(audio) :] == bytes(6400 - len(audio))


async def test_marks_come_back_after_the_audio_that_preceded_them(media: ServerProcess) -> None:
    first, second = pcm(0.4, seed=1), pcm(0.2, seed=2)

    async with exotel_call(media) as call:
        await call.send_audio(first)
        await call.mark("first-played")
        await call.send_audio(second)
        await call.mark("second-played")
        messages = await call.receive_until_quiet()

    shape = [m["mark"]["name"] if m["event"] == "mark" else m["event"] for m in messages]
    assert shape == ["media", "media", "first-played", "media", "second-played"]
    audio = b"".join(audio_of(m) for m in messages if m["event"] == "media")
    assert audio == first + second


async def test_outbound_audio_is_paced_at_real_time(media: ServerProcess) -> None:
    async with exotel_call(media) as call:
        began = time.monotonic()
        await call.send_audio(pcm(2.0))  # ten chunks, sent at once
        arrivals = []
        for _ in range(10):
            assert (await call.receive())["event"] == "media"
            arrivals.append(time.monotonic())

    # Chunks leave one chunk (200 ms) ahead of their playing time: the first two at once,
    # then one every 200 ms, so the tenth leaves 1.6 s in (it plays from 1.8 s).
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)][1:]
    assert arrivals[-1] - began >= 1.55
    assert arrivals[-1] - began < 2.1
    assert sum(gaps) / len(gaps) == pytest.approx(0.2, abs=0.02)
    assert min(gaps) > 0.1


async def test_dtmf_clears_and_drops_the_queued_audio(media: ServerProcess) -> None:
    audio = pcm(5.0)  # 25 chunks, sent far faster than they can be played

    async with exotel_call(media) as call:
        await call.send_audio(audio)
        first = await call.receive()
        await call.dtmf("5")
        messages = [first, *await call.receive_until_quiet()]

    events = [m["event"] for m in messages]
    echoed = b"".join(audio_of(m) for m in messages if m["event"] == "media")
    assert "clear" in events
    assert messages[events.index("clear")] == {"event": "clear", "stream_sid": call.sid}
    assert len(echoed) <= len(audio) // 5
    assert audio.startswith(echoed)


async def test_no_audio_queued_before_a_clear_is_sent_after_it(media: ServerProcess) -> None:
    async with exotel_call(media) as call:
        await call.send_audio(pcm(3.0))
        await call.receive()
        await call.dtmf("5")
        messages = await call.receive_until_quiet()

    events = [m["event"] for m in messages]
    assert "media" not in events[events.index("clear") :], events


async def test_stop_closes_the_socket_with_1000(media: ServerProcess) -> None:
    async with exotel_call(media) as call:
        await call.send_audio(pcm(0.2))
        await call.receive()
        await call.stop()
        code, _reason = await call.closed()

    assert code == 1000


async def test_the_server_survives_a_client_disconnect_mid_stream(media: ServerProcess) -> None:
    before = await metric(media, ACTIVE)
    async with exotel_call(media) as call:
        await call.send_audio(pcm(2.0))
        await call.receive()
        call.socket.transport.abort()  # the network goes; no close frame

    active_after = await metric_becomes(media, ACTIVE, before)
    audio = pcm(0.4, seed=9)
    async with exotel_call(media) as call:
        await call.send_audio(audio)
        echoed = await call.receive_audio(len(audio))

    assert active_after == before
    assert echoed == audio


# --- refusals and bad frames --------------------------------------------------------------


async def test_an_unknown_bot_is_closed_with_4404_naming_the_known_bots(
    media: ServerProcess,
) -> None:
    code, reason = await refusal(media, "/exotel/no-such-bot")

    assert code == 4404
    assert reason is not None
    assert "no-such-bot" in reason
    assert "echo" in reason
    assert "tone" in reason


async def test_media_before_start_is_skipped_and_counted(media: ServerProcess) -> None:
    before = await metric(media, MALFORMED)
    audio = pcm(0.2)

    async with exotel_call(media, start=False) as call:
        await call.send({"event": "connected"})
        await call.send(call.media_frame(pcm(0.2, seed=5)))
        await call.start()
        await call.send_audio(audio)
        echoed = await call.receive_audio(len(audio))

    assert echoed == audio
    assert await metric(media, MALFORMED) == before + 1


BAD_FRAMES = {
    "bad-json": '{"event": "media", "media": {',
    "bad-base64": json.dumps({"event": "media", "media": {"payload": "%%%% not base64"}}),
    "odd-length-pcm": json.dumps(
        {"event": "media", "media": {"payload": base64.b64encode(b"\x01\x02\x03").decode()}}
    ),
    "unknown-event": json.dumps({"event": "transfer", "stream_sid": "x"}),
    "infinite-number": '{"event": "media", "media": {"payload": "", "chunk": 1e999}}',
    "deeply-nested": '{"event": "media", "media": ' + "[" * 50_000 + "]" * 50_000 + "}",
}


@pytest.mark.parametrize("kind", list(BAD_FRAMES))
async def test_a_bad_frame_is_skipped_counted_and_the_stream_carries_on(
    media: ServerProcess, kind: str
) -> None:
    before = await metric(media, MALFORMED)
    audio = pcm(0.4)

    async with exotel_call(media) as call:
        await call.send_audio(audio[:3200])
        await call.socket.send(BAD_FRAMES[kind])
        await call.send_audio(audio[3200:])
        echoed = await call.receive_audio(len(audio))

    assert echoed == audio
    assert await metric(media, MALFORMED) == before + 1


async def test_bad_frames_on_one_stream_do_not_disturb_another(media: ServerProcess) -> None:
    audio = pcm(1.6, seed=3)

    async def healthy() -> bytes:
        async with exotel_call(media) as call:
            await call.send_audio(audio, real_time=True)
            return await call.receive_audio(len(audio))

    async def garbage() -> None:
        async with exotel_call(media, start=False) as call:
            await call.send(call.media_frame(pcm(0.1)))  # before start
            await call.start()
            for _ in range(3):
                for frame in BAD_FRAMES.values():
                    await call.socket.send(frame)
                    await asyncio.sleep(0.05)

    echoed, _ = await asyncio.gather(healthy(), garbage())

    assert echoed == audio


# --- what the server refuses before a frame reaches the stream -----------------------------

LIMIT = 262_144  # EXOPLANE_MEDIA_MAX_MESSAGE_BYTES's default


def text_frame_header(length: int) -> bytes:
    """A client's text frame header declaring ``length`` payload bytes, with a zero mask (so
    the payload goes as it is)."""
    return struct.pack("!BBQ", 0x81, 0x80 | 127, length) + bytes(4)


def padded_media_frame(call: ExotelCall, audio: bytes, size: int) -> str:
    """A media frame of exactly ``size`` bytes: JSON allows trailing white space."""
    frame = json.dumps({**call.media_frame(audio), "sequence_number": "9"})
    assert len(frame) <= size
    return frame + " " * (size - len(frame))


async def log_lines_after(server: ServerProcess, offset: int, needle: str) -> list[str]:
    """The server's log lines from ``offset`` on, once one of them contains ``needle``."""
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while needle not in (output := server.output()[offset:]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return output.splitlines()


def only_json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Every line parsed as one JSON object; a plain line or a traceback fails the test."""
    return [json.loads(line) for line in lines if line.strip()]


async def test_a_message_over_the_limit_is_refused_from_its_header_with_1009(
    media: ServerProcess,
) -> None:
    offset = len(media.output())

    async with exotel_call(media) as call:
        await call.send_audio(pcm(0.2))
        await call.receive_audio(3200)  # the stream has started
        # The header and the first kilobyte of a message one byte over the limit; the rest
        # never comes. A server that read messages whole before checking would wait for it.
        assert call.socket.transport is not None
        call.socket.transport.write(text_frame_header(LIMIT + 1) + b"{" * 1024)
        code, _reason = await call.closed()

    assert code == 1009
    lines = only_json_lines(await log_lines_after(media, offset, "stream closed on a bad frame"))
    faults = [line for line in lines if line["event"] == "stream closed on a bad frame"]
    assert len(faults) == 1
    assert faults[0]["close_code"] == 1009
    assert faults[0]["call_sid"] == f"call-{call.sid}"


async def test_a_message_at_the_limit_is_handled_and_one_byte_more_closes_with_1009(
    media: ServerProcess,
) -> None:
    audio = pcm(0.2)  # one whole chunk: it comes back without waiting for more

    async with exotel_call(media) as call:
        await call.socket.send(padded_media_frame(call, audio, LIMIT))
        echoed = await call.receive_audio(len(audio))
        await call.socket.send(padded_media_frame(call, audio, LIMIT + 1))
        code, _reason = await call.closed()

    assert echoed == audio
    assert code == 1009


async def test_a_binary_message_under_the_limit_that_decodes_past_it_is_skipped(
    media: ServerProcess,
) -> None:
    offset = len(media.output())
    before = await metric(media, MALFORMED)
    audio = pcm(0.4)

    async with exotel_call(media) as call:
        await call.send_audio(audio[:3200])
        # Each invalid byte decodes to a three-byte replacement character.
        await call.socket.send(b"\xff" * (LIMIT - 1))
        await call.send_audio(audio[3200:])
        echoed = await call.receive_audio(len(audio))

    assert echoed == audio
    assert await metric(media, MALFORMED) == before + 1
    lines = only_json_lines(await log_lines_after(media, offset, "skipped a frame"))
    (skipped,) = [line for line in lines if line["event"] == "skipped a frame"]
    assert skipped["reason"] == f"frame of {3 * (LIMIT - 1)} bytes is over the limit"


async def test_a_text_frame_that_is_not_utf8_closes_with_1007_and_logs_one_json_line(
    media: ServerProcess,
) -> None:
    offset = len(media.output())

    async with exotel_call(media) as call:
        await call.send_audio(pcm(0.2))
        await call.receive_audio(3200)  # the stream has started
        await call.socket.send(b'{"event": "media", "x": "\xff\xfe"}', text=True)
        code, _reason = await call.closed()

    assert code == 1007
    lines = await log_lines_after(media, offset, "stream closed on a bad frame")
    assert not any("Traceback" in line for line in lines)
    records = only_json_lines(lines)
    mentions = [line for line in lines if "utf-8" in line.lower()]
    assert len(mentions) == 1
    (fault,) = [record for record in records if "utf-8" in json.dumps(record).lower()]
    assert fault["event"] == "stream closed on a bad frame"
    assert fault["level"] == "warning"
    assert fault["close_code"] == 1007
    assert fault["bot_id"] == "echo"
    assert fault["call_sid"] == f"call-{call.sid}"


# --- timeouts -----------------------------------------------------------------------------


@pytest.fixture
def limited(start_server: Server) -> ServerProcess:
    return start_server(
        EXOPLANE_MEDIA_IDLE_TIMEOUT_SECONDS="1", EXOPLANE_MEDIA_SESSION_LIMIT_SECONDS="2.5"
    )


async def test_an_idle_stream_is_closed_with_4408_while_a_busy_one_carries_on(
    limited: ServerProcess,
) -> None:
    audio = pcm(1.6, seed=4)

    async def idle() -> tuple[int | None, str | None, float]:
        async with exotel_call(limited) as call:
            began = time.monotonic()
            code, reason = await call.closed()
            return code, reason, time.monotonic() - began

    async def busy() -> bytes:
        async with exotel_call(limited) as call:
            await call.send_audio(audio, real_time=True)
            return await call.receive_audio(len(audio))

    (code, reason, after), echoed = await asyncio.gather(idle(), busy())

    assert code == 4408
    assert reason
    assert 0.9 <= after < 2.0
    assert echoed == audio


async def busy_streams_until_closed(
    server: ServerProcess, count: int
) -> list[tuple[int | None, str | None, float]]:
    """``count`` streams talking at real time until the server closes them: code, reason and
    seconds from before the handshake (the limit runs from the server's accept)."""

    async def one() -> tuple[int | None, str | None, float]:
        began = time.monotonic()
        async with exotel_call(server) as call:
            keep_talking = asyncio.create_task(call.send_audio(pcm(4.0), real_time=True))
            code, reason = await call.closed()
            keep_talking.cancel()
        return code, reason, time.monotonic() - began

    return await asyncio.gather(*(one() for _ in range(count)))


async def test_the_session_limit_closes_a_busy_stream_on_time(limited: ServerProcess) -> None:
    [(code, _reason, lasted)] = await busy_streams_until_closed(limited, 1)

    assert code == 4429
    assert 2.5 <= lasted < 3.5


async def test_the_session_limit_closes_every_busy_stream_with_4429(
    limited: ServerProcess,
) -> None:
    closes = await busy_streams_until_closed(limited, 20)

    assert {(code, reason) for code, reason, _lasted in closes} == {(4429, "session limit reached")}


# --- Basic auth ---------------------------------------------------------------------------


@pytest.fixture
def guarded(start_server: Server) -> ServerProcess:
    return start_server(EXOPLANE_MEDIA_BASIC_AUTH="key:token")


async def test_without_basic_credentials_the_socket_is_closed_with_4401(
    guarded: ServerProcess,
) -> None:
    code, _reason = await refusal(guarded, "/exotel/echo")

    assert code == 4401


async def test_wrong_basic_credentials_are_closed_with_4401(guarded: ServerProcess) -> None:
    code, _reason = await refusal(guarded, "/exotel/echo", userinfo="key:wrong")

    assert code == 4401


async def test_basic_credentials_in_the_url_as_exotel_sends_them_are_accepted(
    guarded: ServerProcess,
) -> None:
    audio = pcm(0.2)

    async with exotel_call(guarded, userinfo="key:token") as call:
        await call.send_audio(audio)
        echoed = await call.receive_audio(len(audio))

    assert echoed == audio


async def test_a_basic_authorization_header_is_accepted(guarded: ServerProcess) -> None:
    header = "Basic " + base64.b64encode(b"key:token").decode()
    audio = pcm(0.2)

    async with exotel_call(guarded, headers={"Authorization": header}) as call:
        await call.send_audio(audio)
        echoed = await call.receive_audio(len(audio))

    assert echoed == audio


# --- metrics and the bot list -------------------------------------------------------------


async def test_metrics_count_the_active_streams(media: ServerProcess) -> None:
    before = await metric_becomes(media, ACTIVE, 0)

    async with exotel_call(media) as one, exotel_call(media) as two:
        for call in (one, two):
            await call.send_audio(pcm(0.2))
            await call.receive()
        during = await metric(media, ACTIVE)
    after = await metric_becomes(media, ACTIVE, before)

    assert during == before + 2
    assert after == before


def operator_api_key(server: ServerProcess) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exoplane",
            "operators",
            "create",
            "--email",
            f"ops-{uuid.uuid4().hex[:8]}@example.com",
            "--role",
            "admin",
            "--json",
        ],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key: str = json.loads(result.stdout)["api_key"]
    return key


async def bots(server: ServerProcess, api_key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        return await client.get("/api/v1/bots", headers=headers)


async def test_the_bot_list_names_echo_and_tone_with_descriptions(media: ServerProcess) -> None:
    response = await bots(media, operator_api_key(media))

    assert response.status_code == 200
    listed = {bot["id"]: bot["description"] for bot in response.json()["bots"]}
    assert {"echo", "tone"} <= set(listed)
    assert "back" in listed["echo"]
    assert "440" in listed["tone"]


async def test_the_bot_list_needs_an_operator_api_key(media: ServerProcess) -> None:
    response = await bots(media, None)

    assert response.status_code == 401


# --- the tone bot -------------------------------------------------------------------------


def zero_crossings(audio: bytes) -> int:
    samples = memoryview(audio).cast("h")
    return sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))


def beeps(audio: bytes, rate: int = 8000) -> int:
    """Runs of sound separated by silence, in 10 ms windows."""
    window = rate // 100 * 2
    loud = [any(audio[i : i + window]) for i in range(0, len(audio), window)]
    return sum(1 for before, now in zip([False, *loud], loud, strict=False) if now and not before)


async def test_the_tone_bot_greets_with_a_second_of_440_hz_then_a_mark(
    media: ServerProcess,
) -> None:
    async with exotel_call(media, "tone") as call:
        tone = await call.receive_audio(16_000)
        mark = await call.receive()

    assert mark["event"] == "mark"
    assert mark["mark"]["name"] == "greeting"
    assert zero_crossings(tone) == pytest.approx(880, abs=4)


async def test_the_tone_bot_answers_a_digit_with_that_many_beeps(media: ServerProcess) -> None:
    async with exotel_call(media, "tone") as call:
        await call.receive_audio(16_000)
        assert (await call.receive())["mark"]["name"] == "greeting"
        await call.dtmf("3")
        messages = await call.receive_until_quiet()

    assert messages[-1] == {"event": "mark", "stream_sid": call.sid, "mark": {"name": "dtmf-3"}}
    audio = b"".join(audio_of(m) for m in messages[:-1])
    assert beeps(audio) == 3
    assert math.isclose(len(audio) / 16_000, 0.8)  # 0.75 s of beeps, padded to whole chunks


# --- a bot installed by entry point -------------------------------------------------------

GREETER = """
import asyncio

from exoplane.media.bots import Bot


class GreeterBot(Bot):
    description = "Greets the caller by the name in the stream's custom parameters."

    async def goodbye(self) -> None:
        await self.control.send_audio(b"\\x10\\x00" * 3200)  # 0.4 s at 8 kHz
        await self.control.hang_up()

    async def on_start(self) -> None:
        await self.control.mark("hello-" + self.call.custom_parameters.get("name", "there"))

    async def on_dtmf(self, digit: str) -> None:
        if digit == "#":
            await self.control.hang_up()
        elif digit == "*":  # says goodbye and hangs up later, from a task of its own
            self.farewell = asyncio.get_running_loop().create_task(self.goodbye())
        elif digit == "9":
            raise RuntimeError("the greeter has a bug")
        elif digit == "8":
            raise TimeoutError("the greeter's own backend timed out")
        else:
            await self.control.mark(f"pressed-{digit}")
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bot 'installed' as an unpacked distribution: a module and its .dist-info."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "greeter_bot.py").write_text(GREETER)
    info = root / "greeter_bot-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter-bot\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [exoplane.bots]
            greeter = greeter_bot:GreeterBot
            broken = greeter_bot_missing:Nothing
            """
        )
    )
    return root


@pytest.fixture
def with_plugin(start_server: Server, plugin_path: Path) -> ServerProcess:
    return start_server(PYTHONPATH=str(plugin_path))


async def test_a_bot_installed_by_entry_point_is_listed(with_plugin: ServerProcess) -> None:
    response = await bots(with_plugin, operator_api_key(with_plugin))

    listed = {bot["id"]: bot["description"] for bot in response.json()["bots"]}
    assert listed["greeter"].startswith("Greets the caller")
    assert {"echo", "tone"} <= set(listed)
    assert "broken" not in listed


async def test_a_bot_installed_by_entry_point_serves_calls(with_plugin: ServerProcess) -> None:
    async with exotel_call(with_plugin, "greeter", custom={"name": "Asha"}) as call:
        hello = await call.receive()
        await call.dtmf("4")
        pressed = await call.receive()

    assert hello["mark"]["name"] == "hello-Asha"
    assert pressed["mark"]["name"] == "pressed-4"


async def test_a_bot_that_hangs_up_closes_the_stream_with_1000(with_plugin: ServerProcess) -> None:
    async with exotel_call(with_plugin, "greeter") as call:
        await call.receive()
        await call.dtmf("#")
        code, reason = await call.closed()

    assert code == 1000
    assert reason == "bot hung up"


async def test_a_bot_hanging_up_from_its_own_task_is_heard_out_then_closes_at_once(
    with_plugin: ServerProcess,
) -> None:
    async with exotel_call(with_plugin, "greeter") as call:
        await call.receive()
        await call.dtmf("*")
        asked = time.monotonic()
        goodbye = await call.receive_audio(6400)  # Exotel sends nothing more meanwhile
        code, reason = await call.closed()
        closed = time.monotonic()

    assert goodbye == b"\x10\x00" * 3200
    assert (code, reason) == (1000, "bot hung up")
    assert closed - asked < 1.5  # the goodbye's 0.4 s, then the close, not an idle timeout


async def test_a_bot_that_raises_closes_the_stream_with_1011(with_plugin: ServerProcess) -> None:
    async with exotel_call(with_plugin, "greeter") as call:
        await call.receive()
        await call.dtmf("9")
        code, _reason = await call.closed()

    assert code == 1011


async def test_a_bot_that_raises_timeout_error_is_an_error_not_an_idle_stream(
    with_plugin: ServerProcess,
) -> None:
    async with exotel_call(with_plugin, "greeter") as call:
        await call.receive()
        await call.dtmf("8")
        code, reason = await call.closed()

    assert (code, reason) == (1011, "internal error")
