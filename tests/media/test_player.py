"""The player on its own: order, pacing and one sender at a time, against a socket that yields
on every send as a slow network would."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from starlette.websockets import WebSocketDisconnect, WebSocketState

from exoplane.media.metrics import STATS
from exoplane.media.protocol import decode_audio
from exoplane.media.server import Player
from tests.waiting import until

RATE = 8000
CHUNK = 3200  # 200 ms at 8 kHz


class SlowSocket:
    """Records what is sent; each send suspends, so other coroutines run in the middle."""

    application_state = WebSocketState.CONNECTED

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.sent_at: list[float] = []
        self.in_send = 0
        self.overlapping_sends = 0

    async def send_text(self, text: str) -> None:
        self.in_send += 1
        if self.in_send > 1:
            self.overlapping_sends += 1
        await asyncio.sleep(0.001)
        self.sent.append(json.loads(text))
        self.sent_at.append(time.monotonic())
        self.in_send -= 1

    def audio(self) -> bytes:
        return b"".join(
            decode_audio(message["media"]["payload"])
            for message in self.sent
            if message["event"] == "media"
        )


async def started(socket: SlowSocket) -> Player:
    player = Player(socket, "sid-1", RATE)  # type: ignore[arg-type]
    player.start()
    await asyncio.sleep(0)  # the task parks, waiting for audio
    return player


async def test_audio_from_two_coroutines_leaves_whole_in_order_and_one_send_at_a_time() -> None:
    socket = SlowSocket()
    player = await started(socket)
    first = random.Random(1).randbytes(CHUNK * 2)
    second = random.Random(2).randbytes(CHUNK)

    await asyncio.gather(player.add_audio(first), player.add_audio(second))
    await player.add_mark("after")
    await until(lambda: bool(socket.sent) and socket.sent[-1]["event"] == "mark", what="the mark")
    await player.stop()

    assert socket.overlapping_sends == 0
    assert socket.audio() == first + second
    assert [m["media"]["chunk"] for m in socket.sent if m["event"] == "media"] == ["1", "2", "3"]
    assert socket.sent[-1] == {"event": "mark", "stream_sid": "sid-1", "mark": {"name": "after"}}


async def test_audio_ahead_of_real_time_is_paced_one_chunk_ahead_of_playback() -> None:
    socket = SlowSocket()
    player = await started(socket)
    began = time.monotonic()

    await player.add_audio(bytes(CHUNK * 4))  # 800 ms at once, as a TTS engine would
    await until(lambda: len(socket.sent) == 4, what="four chunks sent", every=0.005)
    await player.stop()

    offsets = [at - began for at in socket.sent_at]
    # The first two leave at once (one plays, one waits ahead); then one per 200 ms.
    assert offsets[1] < 0.1
    assert 0.18 <= offsets[2] < 0.3
    assert 0.38 <= offsets[3] < 0.5


async def test_clear_drops_the_chunks_not_yet_sent() -> None:
    socket = SlowSocket()
    player = await started(socket)

    await player.add_audio(bytes(CHUNK * 5))
    await until(lambda: len(socket.sent) == 2, what="the first two chunks", every=0.005)
    await player.clear()
    await asyncio.sleep(0.5)
    await player.stop()

    events = [message["event"] for message in socket.sent]
    assert events == ["media", "media", "clear"]


class HungUpSocket(SlowSocket):
    """Exotel has gone: every send fails as Starlette reports it."""

    async def send_text(self, text: str) -> None:
        self.application_state = WebSocketState.DISCONNECTED
        raise WebSocketDisconnect(code=1006)


async def test_audio_for_a_caller_who_hung_up_is_dropped_without_raising_into_the_bot() -> None:
    socket = HungUpSocket()
    player = await started(socket)

    await player.add_audio(bytes(CHUNK * 2))
    await player.add_mark("after")
    await player.stop()

    assert socket.sent == []


def lateness() -> tuple[int, int]:
    """How many chunks the pacing-lateness histogram has seen, and how many of them left
    more than 100 ms late."""
    buckets = STATS.pacing_lateness
    return sum(buckets.counts), sum(buckets.counts[buckets.bounds.index(0.1) + 1 :])


async def test_a_bot_answering_at_real_time_is_not_counted_late() -> None:
    socket = SlowSocket()
    player = await started(socket)
    count, late = lateness()

    for _ in range(4):  # each chunk handed over as the one before ends, as an echo does
        await player.add_audio(bytes(CHUNK))
        await asyncio.sleep(0.2)
    await player.stop()

    assert len(socket.sent) == 4
    # Each left as it was handed over. (Counted from when it could first have left, one
    # chunk ahead of playing, every one would be 200 ms late.)
    assert lateness() == (count + 4, late)


async def test_chunks_queued_ahead_are_counted_by_how_late_the_player_sent_them() -> None:
    socket = SlowSocket()
    player = await started(socket)
    count, late = lateness()

    await player.add_audio(bytes(CHUNK * 4))
    await until(lambda: len(socket.sent) == 4, what="four chunks sent", every=0.005)
    await player.stop()

    assert lateness() == (count + 4, late)  # the first at once, the rest as they fell due


async def test_a_bots_buffer_reused_after_handing_it_over_does_not_change_queued_audio() -> None:
    socket = SlowSocket()
    player = await started(socket)
    buffer = bytearray(b"\x01" * (CHUNK // 2))

    await player.add_audio(buffer)  # type: ignore[arg-type]  # half a chunk: it waits
    buffer[:] = b"\x02" * len(buffer)  # the bot fills its buffer again
    await player.add_audio(buffer)  # type: ignore[arg-type]
    await until(lambda: bool(socket.sent), what="the first chunk")
    await player.stop()

    assert socket.audio() == b"\x01" * (CHUNK // 2) + b"\x02" * (CHUNK // 2)
