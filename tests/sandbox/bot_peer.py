"""A scripted voice bot on 127.0.0.1: the far end of the sandbox's AgentStream client.

Each connection runs a script (an async function of the ``PeerCall``) while every message the
sandbox sends is recorded with its arrival time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from exoplane.media.protocol import clear_message, mark_message, media_message
from exoplane.sandbox.agentstream import voiced
from exoplane.sandbox.audio import builtin_clip
from tests.waiting import WAIT_SECONDS


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() when the message arrived
    message: dict[str, Any]

    @property
    def event(self) -> str:
        return str(self.message.get("event"))


class PeerCall:
    """One connection, as the bot sees it."""

    def __init__(self, socket: ServerConnection) -> None:
        self.socket = socket
        self.path = socket.request.path if socket.request else ""
        self.headers = socket.request.headers if socket.request else None
        self.arrivals: list[Arrival] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._chunk = 0

    @property
    def stream_sid(self) -> str:
        start = self.first("start")
        return str(start.message["stream_sid"]) if start else ""

    def first(self, event: str) -> Arrival | None:
        return next((a for a in self.arrivals if a.event == event), None)

    def all(self, event: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.event == event]

    async def read(self) -> None:
        try:
            async for frame in self.socket:
                async with self._changed:
                    self.arrivals.append(Arrival(time.monotonic(), json.loads(frame)))
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    async def wait_until(
        self, condition: Callable[[], bool], timeout: float = WAIT_SECONDS
    ) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    async def started(self) -> None:
        await self.wait_until(lambda: self.first("start") is not None)

    async def send_text(self, text: str) -> float:
        await self.socket.send(text)
        return time.monotonic()

    async def send_audio(self, pcm: bytes) -> float:
        self._chunk += 1
        return await self.send_text(
            media_message(self.stream_sid, pcm, chunk=self._chunk, timestamp_ms=0)
        )

    async def send_mark(self, name: str) -> float:
        return await self.send_text(mark_message(self.stream_sid, name))

    async def send_clear(self) -> float:
        return await self.send_text(clear_message(self.stream_sid))

    def echo_time(self, name: str) -> float:
        for arrival in self.all("mark"):
            if arrival.message["mark"]["name"] == name:
                return arrival.at
        raise AssertionError(f"mark {name!r} was not echoed")


def media_text(stream_sid: str, payload: str) -> str:
    """A media message with ``payload`` as given (it need not be valid base64)."""
    return json.dumps({"event": "media", "stream_sid": stream_sid, "media": {"payload": payload}})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


Script = Callable[[PeerCall], Awaitable[None]]


async def silent(call: PeerCall) -> None:
    """A bot that listens and says nothing."""


def seconds_of(seconds: float, rate: int = 8000) -> bytes:
    """Non-silent PCM16 of a whole number of 20 ms blocks."""
    return (builtin_clip(rate) * 4)[: int(seconds * rate) * 2]


def late_bot(late_seconds: float, reply: bytes, greeting: bytes = b"") -> Script:
    """A bot that answers each utterance ``late_seconds`` after the caller stops speaking,
    as STT, then an LLM, then TTS would; it tells the utterance's end by the first silent
    frame after voiced ones."""

    async def bot(call: PeerCall) -> None:
        await call.started()
        if greeting:
            await call.send_audio(greeting)
        seen, speaking = 0, False
        while not call.closed.is_set():

            def more(already: int = seen) -> bool:
                return len(call.arrivals) > already or call.closed.is_set()

            await call.wait_until(more)
            fresh, seen = call.arrivals[seen:], len(call.arrivals)
            for arrival in fresh:
                if arrival.event != "media":
                    continue
                loud = voiced(base64.b64decode(arrival.message["media"]["payload"]))
                if speaking and not loud:
                    await asyncio.sleep(late_seconds)
                    await call.send_audio(reply)
                speaking = loud

    return bot


class BotPeer:
    """``async with BotPeer(script) as peer``: a bot server on a free port of 127.0.0.1."""

    def __init__(self, script: Script = silent) -> None:
        self.script = script
        self.calls: list[PeerCall] = []
        self._server: Server | None = None
        self._port: int | None = None
        self._arrived = asyncio.Event()
        self.script_errors: list[BaseException] = []

    @property
    def port(self) -> int:
        assert self._port is not None, "the peer is not serving"
        return self._port

    def url(self, path: str = "/bot", query: str = "", userinfo: str = "") -> str:
        credentials = f"{userinfo}@" if userinfo else ""
        return f"ws://{credentials}127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    async def only_call(self) -> PeerCall:
        await asyncio.wait_for(self._arrived.wait(), WAIT_SECONDS)
        assert len(self.calls) == 1, self.calls
        return self.calls[0]

    async def _handle(self, socket: ServerConnection) -> None:
        call = PeerCall(socket)
        self.calls.append(call)
        self._arrived.set()
        reader = asyncio.create_task(call.read())
        try:
            await self.script(call)
            await reader
        except ConnectionClosed:
            await reader
        except Exception as exc:  # reported by __aexit__: the server would only log it
            self.script_errors.append(exc)
        finally:
            reader.cancel()

    async def __aenter__(self) -> BotPeer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        if error is None and self.script_errors:
            raise self.script_errors[0]
