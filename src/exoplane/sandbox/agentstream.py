"""Exotel's side of a Voicebot applet: the sandbox connects to a bot and streams a caller.

As in Exotel (exotel-facts §4), the sandbox is the WebSocket client. It sends ``connected``,
``start`` and then a 100 ms ``media`` frame every 100 ms for the whole call, as a phone line
does: the caller's utterances, and silence between them. It plays the bot's audio back at
real time (so a ``clear`` can cut it mid-chunk), echoes each ``mark`` once the audio queued
before it has played, and checks every bot message against Exotel's rules. A message that
breaks the protocol is recorded as a violation; audio chunks of a size Exotel plays badly are
counted as warnings, one per kind, each with its fix. Either way the call goes on.

The caller follows a script (``Caller``): it listens while the bot greets, speaks an
utterance, waits for the bot's reply (up to a reply timeout), listens until the bot has been
silent for a while, and takes the next turn. The bot "speaks" while its audio playing back is
louder than silence. The call ends when the caller hangs up (after its last turn, or when a
reply never came), when the hangup event is set, when the bot closes the socket, or at the
time limit. Whatever happens on the network, ``run_stream`` returns a report; it never
raises for it. Credentials in the URL go out as a Basic ``Authorization`` header and appear
nowhere else: not in the report, not in its timeline, not in a log line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import logging
import re
import time
import uuid
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import aiohttp
import pydantic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.frames import Close

from exoplane.logs import get_logger
from exoplane.media.protocol import (
    CHUNK_ALIGNMENT,
    MAX_CUSTOM_PARAMETERS,
    MIN_CHUNK_BYTES,
    SAMPLE_RATES,
    Clear,
    Mark,
    Media,
    ProtocolError,
    Start,
    connected_message,
    inbound_media_message,
    mark_echo_message,
    parse_message,
    sample_rate_from_query,
    start_message,
    stop_message,
)
from exoplane.sandbox.audio import FRAME_MS, builtin_clip, frames

log = get_logger("exoplane.sandbox")

MAX_CHUNK_BYTES = 100 * 1024
CUSTOM_PARAMETERS_MAX_CHARS = 256
SAMPLE_RATE_PARAMETERS = ("sample-rate", "sample_rate")
PLAY_SLICE_MS = 20  # playback granularity: how finely a clear can cut a chunk
MAX_FRAME_BYTES = 1024 * 1024  # a frame this big (about 750 KB of audio) fails the stream
CLOSE_TIMEOUT_SECONDS = 2.0
HANDSHAKE_ATTEMPTS = 2
MAX_VIOLATIONS = 20
MAX_LISTED_MARKS = 100
MAX_EVENTS = 100
NORMAL_CLOSE_CODES = (1000, 1001)
POLL_SECONDS = 0.02  # how often the caller checks whether the bot is speaking
# A 20 ms slice of the bot's audio whose loudest sample is below this (about -36 dBFS) is
# silence: what the bot sends between words, or an echo of the caller's silence.
VOICE_PEAK = 500
MAX_LISTED_TURNS = 100

# The three ways a bot's audio chunk can deviate from Exotel's sizes (exotel-facts §4.4), and
# what to do about each. Exotel plays such chunks, badly: gaps, distortion or time-outs.
CHUNK_WARNINGS = {
    "not_aligned": (
        f"chunks that are not a multiple of {CHUNK_ALIGNMENT} bytes",
        f"send whole multiples of {CHUNK_ALIGNMENT} bytes (20 ms at 8 kHz): Exotel leaves a gap "
        "after misaligned audio; pad the last chunk of an utterance with silence",
    ),
    "under_minimum": (
        f"chunks under Exotel's documented {MIN_CHUNK_BYTES}-byte minimum",
        f"buffer the audio and send at least {MIN_CHUNK_BYTES} bytes (200 ms at 8 kHz) per media "
        "message, or it is distorted; pipecat's default 40 ms (640-byte) chunks need "
        "audio_out_10ms_chunks=20 in the transport's params",
    ),
    "over_maximum": (
        f"chunks over the {MAX_CHUNK_BYTES}-byte maximum",
        f"split the audio into media messages of at most {MAX_CHUNK_BYTES} bytes: Exotel times "
        "out on bigger ones",
    ),
    "implied_rate": (
        "chunks paced as audio of another sample rate",
        "the bot sends audio at one rate while the stream plays another: too fast a rate plays "
        "slow and low-pitched, too slow a rate fast and high; ask for the bot's rate with "
        "?sample-rate= on the stream URL, or resample the bot's audio to the stream's rate",
    ),
}
# How a paced bot's sample rate is read from its chunks: over this many in a row, arriving at
# steady intervals (each within RATE_JITTER of their median, at least RATE_MIN_INTERVAL apart:
# a burst says nothing about a rate), their bytes per second name a rate within RATE_TOLERANCE.
RATE_WINDOW = 8
RATE_JITTER = 0.3
RATE_MIN_INTERVAL = 0.01
RATE_TOLERANCE = 0.12


@dataclass(frozen=True)
class Caller:
    """What the simulated caller does on a stream.

    Waits are in simulated seconds, multiplied by ``time_scale``; audio always plays in real
    time. ``utterances`` are PCM16 mono at the stream's rate (the built-in clip by default);
    turn ``n`` speaks ``utterances[n % len(utterances)]``.
    """

    turns: int = 3
    utterances: tuple[bytes, ...] = ()
    reply_timeout_seconds: float = 10.0
    silence_seconds: float = 1.5
    talk_seconds: float | None = None
    open_line: bool = False
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.turns < 0:
            raise ValueError(f"a caller takes 0 turns or more, not {self.turns}")
        for n, clip in enumerate(self.utterances):
            if not clip or len(clip) % 2:
                raise ValueError(f"utterance {n} must be whole PCM16 samples; got {len(clip)}")

    def wait(self, seconds: float) -> float:
        return seconds * self.time_scale


@dataclass(frozen=True)
class StreamCall:
    call_sid: str
    account_sid: str
    from_number: str
    to_number: str


class StreamReport(pydantic.BaseModel):
    """What happened on one stream, for the sandbox's call record."""

    url: str  # the URL as configured, with any user:password shown as '***'
    stream_sid: str
    sample_rate: int
    custom_parameters: dict[str, str]
    # The bot took the stream: the handshake succeeded and the bot did not at once close it
    # with an error code (the media core accepts, then closes with 4404 for an unknown bot).
    connected: bool
    error: str | None
    ended_by: str  # 'caller', 'hangup', 'bot', 'limit' or 'error'
    end_reason: str  # why, in words
    stop_reason: str | None  # the reason in the ``stop`` we sent; None when we sent none
    close_code: int | None
    duration_ms: int  # from the handshake to the socket's close; 0 without a connection
    frames_sent: int
    bytes_sent: int
    sent_sha256: str
    media_messages_received: int
    bytes_received: int
    received_sha256: str
    bytes_played: int
    bytes_cleared: int
    marks_received: list[str]  # the first MAX_LISTED_MARKS
    marks_echoed: list[str]  # the first MAX_LISTED_MARKS
    clears: int
    violations: list[str]  # the first MAX_VIOLATIONS
    violation_count: int
    # Audio chunks of sizes Exotel plays badly, one entry per kind: what, how many, the first
    # message and the sizes seen, and the fix.
    chunk_warnings: list[dict[str, Any]]
    # One per turn the caller took: when it spoke, how many bytes, and when the bot's reply
    # began, in ms after the utterance ended (negative: the bot spoke over the caller; None:
    # no reply within the reply timeout).
    turns: list[dict[str, Any]]
    events: list[dict[str, Any]]


# --- URLs ---------------------------------------------------------------------------------

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``***@``."""
    return _USERINFO.sub(r"\1***@", url)


class _Failure(Exception):
    """The stream cannot start; the message says why and holds no secret."""


@dataclass(frozen=True, slots=True)
class _Target:
    url: str  # without credentials
    authorization: str | None
    sample_rate: int
    custom_parameters: dict[str, str]


def _without_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its userinfo, and the Basic ``Authorization`` value it stood for."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _Failure("the stream URL is not a valid URL") from None
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def _socket_target(url: str) -> _Target:
    plain, authorization = _without_credentials(url)
    parts = urlsplit(plain)
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
        raise _Failure(f"{redact(url)!r} is not a ws:// or wss:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    try:
        rate = sample_rate_from_query(dict(query))
    except ProtocolError as exc:
        raise _Failure(f"the stream URL's {exc}") from None
    custom = [(key, value) for key, value in query if key not in SAMPLE_RATE_PARAMETERS]
    if len(custom) > MAX_CUSTOM_PARAMETERS:
        raise _Failure(
            f"the stream URL carries {len(custom)} custom parameters; "
            f"Exotel allows at most {MAX_CUSTOM_PARAMETERS}"
        )
    characters = sum(len(key) + 1 + len(value) for key, value in custom)
    if characters > CUSTOM_PARAMETERS_MAX_CHARS:
        raise _Failure(
            f"the stream URL's custom parameters run to {characters} characters; "
            f"Exotel allows at most {CUSTOM_PARAMETERS_MAX_CHARS}"
        )
    return _Target(plain, authorization, rate, dict(custom))


async def _resolve(url: str, call: StreamCall, http: aiohttp.ClientSession, timeout: float) -> str:
    """An https applet URL answers ``{"url": "wss://..."}`` (exotel-facts §4.1)."""
    plain, authorization = _without_credentials(url)
    params = {"CallSid": call.call_sid, "CallFrom": call.from_number, "CallTo": call.to_number}
    headers = {"Authorization": authorization} if authorization else {}
    try:
        async with http.get(
            plain, params=params, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            if response.status != 200:
                raise _Failure(f"the stream URL answered HTTP {response.status}")
            document = await response.json(content_type=None)
    except TimeoutError:
        raise _Failure(f"the stream URL did not answer within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise _Failure(f"the stream URL could not be fetched: {type(exc).__name__}") from None
    except ValueError:
        raise _Failure("the stream URL did not answer with JSON") from None
    socket_url = document.get("url") if isinstance(document, dict) else None
    if not isinstance(socket_url, str):
        raise _Failure('the stream URL\'s JSON has no "url" string')
    return socket_url


# --- the timeline -------------------------------------------------------------------------


class _Timeline:
    """A short, readable account of the stream. Consecutive media frames in one direction
    (with no other event in that direction between them) share one entry with their counts."""

    def __init__(self, began: float) -> None:
        self._began = began
        self.entries: list[dict[str, Any]] = []
        self._media_runs: dict[str, dict[str, Any]] = {}
        self._dropped = 0

    def now_ms(self) -> int:
        return self.ms_at(time.monotonic())

    def ms_at(self, moment: float) -> int:
        return round((moment - self._began) * 1000)

    def add(self, direction: str, event: str, **details: Any) -> None:
        self._media_runs.pop(direction, None)
        self._append({"t_ms": self.now_ms(), "dir": direction, "event": event, **details})

    def media(self, direction: str, size: int) -> None:
        now = self.now_ms()
        run = self._media_runs.get(direction)
        if run is None:
            run = {"t_ms": now, "dir": direction, "event": "media", "frames": 0, "bytes": 0}
            if not self._append(run):
                return
            self._media_runs[direction] = run
        run["frames"] += 1
        run["bytes"] += size
        run["last_t_ms"] = now

    def _append(self, entry: dict[str, Any]) -> bool:
        if len(self.entries) >= MAX_EVENTS:
            self._dropped += 1
            return False
        self.entries.append(entry)
        return True

    def finished(self) -> list[dict[str, Any]]:
        if self._dropped:
            return [
                *self.entries,
                {"t_ms": self.now_ms(), "event": "truncated", "dropped": self._dropped},
            ]
        return list(self.entries)


# --- playback -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _QueuedMark:
    name: str


def voiced(pcm: bytes) -> bool:
    """Whether PCM16 audio holds anything louder than silence."""
    samples = array("h", pcm[: len(pcm) - len(pcm) % 2])
    return bool(samples) and max(max(samples), -min(samples)) >= VOICE_PEAK


class _Player:
    """Plays the bot's audio at real time, in short slices, with marks in their place.

    It also keeps track of when the bot is heard speaking: the caller's turns depend on it.
    """

    def __init__(self, sample_rate: int, echo: Callable[[str], Awaitable[None]]) -> None:
        self._bytes_per_second = sample_rate * 2
        self._slice = self._bytes_per_second * PLAY_SLICE_MS // 1000
        self._echo = echo
        self._queue: deque[bytes | _QueuedMark] = deque()
        self._current = b""
        self._offset = 0
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.bytes_played = 0
        self.bytes_cleared = 0
        self._voiced_queued = 0  # queued chunks that are louder than silence
        self._current_voiced = False
        self._in_voice = False
        self.voice_until = 0.0  # when the last voiced slice heard so far ends
        self.onsets: deque[float] = deque(maxlen=MAX_LISTED_TURNS)  # when the bot began to speak

    def add_audio(self, pcm: bytes) -> None:
        self._queue.append(pcm)
        self._voiced_queued += voiced(pcm)
        self._nudge()

    def add_mark(self, name: str) -> None:
        self._queue.append(_QueuedMark(name))
        self._nudge()

    def _nudge(self) -> None:
        self.idle.clear()
        self._wake.set()

    def speaking(self) -> bool:
        """The bot's voice is playing now, or is queued to play."""
        return (
            self._voiced_queued > 0
            or (self._current_voiced and self._offset < len(self._current))
            or self.voice_until > time.monotonic()
        )

    def onset_since(self, moment: float) -> float | None:
        """When the bot first began to speak at or after ``moment``, if it has."""
        return next((at for at in self.onsets if at >= moment), None)

    def clear(self) -> list[str]:
        """Drop what has not been played; the marks that were waiting, to echo at once."""
        self.bytes_cleared += len(self._current) - self._offset
        self.bytes_cleared += sum(len(item) for item in self._queue if isinstance(item, bytes))
        marks = [item.name for item in self._queue if isinstance(item, _QueuedMark)]
        self._queue.clear()
        self._current, self._offset = b"", 0
        self._voiced_queued, self._current_voiced = 0, False
        self.voice_until = min(self.voice_until, time.monotonic())
        return marks

    async def run(self) -> None:
        next_at: float | None = None
        while True:
            if self._offset >= len(self._current):
                if not self._queue:
                    self._in_voice = False
                    if not self.idle.is_set():
                        self.idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    next_at = None
                    continue
                item = self._queue.popleft()
                if isinstance(item, _QueuedMark):
                    await self._echo(item.name)
                    continue
                self._current, self._offset = item, 0
                self._current_voiced = voiced(item)
                self._voiced_queued -= self._current_voiced
            # A slice counts as played once it starts; the sleep is the time it takes to hear.
            size = min(self._slice, len(self._current) - self._offset)
            piece = self._current[self._offset : self._offset + size]
            self._offset += size
            self.bytes_played += size
            now = time.monotonic()
            if next_at is None:
                next_at = now
            next_at += size / self._bytes_per_second
            if self._current_voiced and voiced(piece):
                if not self._in_voice:
                    self.onsets.append(now)
                self._in_voice = True
                self.voice_until = next_at
            else:
                self._in_voice = False
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


# --- one stream ---------------------------------------------------------------------------


class _NoDebugLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs every handshake header at debug level, ``Authorization`` included."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WEBSOCKETS_LOG = _NoDebugLog(logging.getLogger("exoplane.sandbox.websockets"), {})


class _Stream:
    def __init__(
        self,
        socket: ClientConnection,
        call: StreamCall,
        stream_sid: str,
        target: _Target,
        caller: Caller,
        timeline: _Timeline,
    ) -> None:
        self.socket = socket
        self.call = call
        self.stream_sid = stream_sid
        self.target = target
        self.rate = target.sample_rate
        self.caller = caller
        self.utterances = caller.utterances or (builtin_clip(self.rate),)
        self.timeline = timeline
        self.opened_at = time.monotonic()
        self.closed_at: float | None = None
        self.player = _Player(self.rate, self._echo_mark)
        self._sequence = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._receiver: asyncio.Task[Any] | None = None
        # What the line sends next: frames of an utterance, and an event set once the last
        # of them has left. With nothing queued, the line sends silence.
        self._outgoing: deque[bytes | asyncio.Event] = deque()
        self.turns: list[dict[str, Any]] = []
        self.frames_sent = 0
        self.bytes_sent = 0
        self.sent_hash = hashlib.sha256()
        self.frames_received = 0
        self.media_messages_received = 0
        self.received = bytearray()
        self.marks_received: list[str] = []
        self.marks_echoed: list[str] = []
        self.clears = 0
        self.violations: list[str] = []
        self.violation_count = 0
        self.chunk_warnings: dict[str, dict[str, Any]] = {}
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=RATE_WINDOW)
        self.ended_by = "error"
        self.end_reason = ""
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.refused = False

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def _send(self, text: str) -> bool:
        try:
            await self.socket.send(text)
        except ConnectionClosed:
            return False
        return True

    # -- the call ------------------------------------------------------------------------

    async def run(self, hangup: asyncio.Event | None, max_seconds: float) -> None:
        limit = max_seconds
        if self.caller.talk_seconds is not None:
            limit = min(limit, self.caller.wait(self.caller.talk_seconds))
        deadline = self.opened_at + limit
        receiver = self._spawn(self._receive())
        self._receiver = receiver
        if await self._send(connected_message()):
            self.timeline.add("out", "connected")
        custom = self.target.custom_parameters
        start = start_message(
            self._next_sequence(),
            Start(
                stream_sid=self.stream_sid,
                call_sid=self.call.call_sid,
                account_sid=self.call.account_sid,
                from_number=self.call.from_number,
                to_number=self.call.to_number,
                custom_parameters=custom,
                sample_rate=self.rate,
            ),
        )
        if await self._send(start):
            self.timeline.add("out", "start", sample_rate=self.rate, custom_parameters=custom)
        caller = self._spawn(self._converse())
        ending = {receiver, caller}
        if hangup is not None:
            ending.add(self._spawn(hangup.wait()))
        watched = {*ending, self._spawn(self.player.run()), self._spawn(self._line())}
        while True:
            done, _ = await asyncio.wait(
                watched,
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                task.result()  # a task that failed is a bug: let it surface
            if not done or done & ending:
                break
            # The line stops once a send fails (the socket is closing): the receiver, or
            # the deadline, tells how the call ended.
            watched -= done
        if receiver in done:
            self._bot_closed()
            return
        if caller in done:
            self.ended_by, self.end_reason, reason = "caller", caller.result(), "callended"
        elif done:
            self.ended_by, reason = "hangup", "callended"
            self.end_reason = "the call was hung up"
        else:
            self.ended_by, reason = "limit", "stopped"
            self.end_reason = (
                f"the call reached its talk time of {self.caller.talk_seconds:g} s"
                if limit < max_seconds
                else f"the stream reached its limit of {max_seconds:g} s"
            )
        self._cancel_all_but_receiver()
        if await self._send(
            stop_message(
                self._next_sequence(),
                self.stream_sid,
                call_sid=self.call.call_sid,
                account_sid=self.call.account_sid,
                reason=reason,
            )
        ):
            self.stop_reason = reason
            self.timeline.add("out", "stop", reason=reason)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.append(task)
        return task

    def _cancel_all_but_receiver(self) -> None:
        for task in self._tasks:
            if task is not self._receiver:
                task.cancel()

    async def _line(self) -> None:
        """A 100 ms frame every 100 ms on a monotonic schedule, each leaving once its audio is
        complete: the caller's utterance when one is queued, silence otherwise."""
        began = time.monotonic()
        elapsed_bytes = 0
        silence = bytes(self.rate * 2 * FRAME_MS // 1000)
        chunk = 0
        while True:
            item = self._outgoing.popleft() if self._outgoing else silence
            if isinstance(item, asyncio.Event):
                item.set()
                continue
            chunk += 1
            elapsed_bytes += len(item)
            due = elapsed_bytes / (self.rate * 2)
            await asyncio.sleep(max(0.0, began + due - time.monotonic()))
            message = inbound_media_message(
                self._next_sequence(),
                self.stream_sid,
                item,
                chunk=chunk,
                timestamp_ms=round(due * 1000),
            )
            if not await self._send(message):
                return
            self.frames_sent += 1
            self.bytes_sent += len(item)
            self.sent_hash.update(item)
            self.timeline.media("out", len(item))

    async def _speak(self, clip: bytes) -> None:
        spoken = asyncio.Event()
        self._outgoing.extend(frames(clip, self.rate))
        self._outgoing.append(spoken)
        await spoken.wait()

    async def _converse(self) -> str:
        """The caller's script; returns why the caller hung up (in open-line mode it never
        does)."""
        caller = self.caller
        await self._until_quiet(time.monotonic())  # the bot may greet first
        for turn in range(1, caller.turns + 1):
            clip = self.utterances[(turn - 1) % len(self.utterances)]
            began = time.monotonic()
            self.timeline.add("out", "turn", turn=turn, bytes=len(clip))
            await self._speak(clip)
            spoke = time.monotonic()
            reply = await self._reply(began, spoke + caller.wait(caller.reply_timeout_seconds))
            record: dict[str, Any] = {
                "turn": turn,
                "t_ms": self.timeline.ms_at(began),
                "bytes": len(clip),
                "reply_after_ms": None if reply is None else round((reply - spoke) * 1000),
            }
            if len(self.turns) < MAX_LISTED_TURNS:
                self.turns.append(record)
            if reply is None:
                self.timeline.add("in", "no_reply", turn=turn)
                if not caller.open_line:
                    return (
                        f"the bot did not reply within {caller.reply_timeout_seconds:g} s "
                        f"of turn {turn}"
                    )
                continue
            self.timeline.add("in", "reply", turn=turn, after_ms=record["reply_after_ms"])
            await self._until_quiet(spoke)
        if caller.open_line:
            await asyncio.Event().wait()  # until the bot, a hang-up or the limit ends it
        return f"the caller hung up after its last turn ({caller.turns})"

    async def _reply(self, since: float, until: float) -> float | None:
        """When the bot began to speak after ``since``; None if it had not by ``until``."""
        while True:
            onset = self.player.onset_since(since)
            if onset is not None:
                return onset
            remaining = until - time.monotonic()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(POLL_SECONDS, remaining))

    async def _until_quiet(self, since: float) -> None:
        """Returns once the bot has been silent for the caller's silence threshold, counted
        from ``since`` at the earliest."""
        threshold = self.caller.wait(self.caller.silence_seconds)
        while True:
            if self.player.speaking():
                await asyncio.sleep(POLL_SECONDS)
                continue
            remaining = max(since, self.player.voice_until) + threshold - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(POLL_SECONDS, remaining))

    def _bot_closed(self) -> None:
        protocol = self.socket.protocol
        if protocol.close_sent is not None and not protocol.close_rcvd_then_sent:
            # We closed first: a frame broke the WebSocket protocol or was too big.
            self.ended_by = "error"
            self.error = f"the stream failed: {_described(protocol.close_sent)}"
        elif protocol.close_rcvd is None:
            self.ended_by = "bot"
            self.error = "the connection dropped without a closing handshake"
        elif protocol.close_rcvd.code in NORMAL_CLOSE_CODES:
            self.ended_by = "bot"
            self.end_reason = f"the bot hung up ({_described(protocol.close_rcvd)})"
        elif self.frames_received == 0:
            self.ended_by, self.refused = "error", True
            self.error = f"the bot refused the stream: {_described(protocol.close_rcvd)}"
        else:
            self.ended_by = "bot"
            self.error = f"the bot closed the stream with {_described(protocol.close_rcvd)}"
        self.end_reason = self.end_reason or self.error or ""

    async def shutdown(self) -> None:
        """Cancel the tasks, close the socket within a bound, collect the receiver."""
        self._cancel_all_but_receiver()
        try:
            await asyncio.wait_for(self.socket.close(), CLOSE_TIMEOUT_SECONDS)
        except (TimeoutError, OSError, WebSocketException):
            self.socket.transport.abort()
        finally:
            if self._receiver is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._receiver), CLOSE_TIMEOUT_SECONDS)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.closed_at = time.monotonic()
        direction = "in" if self.socket.protocol.close_rcvd_then_sent else "out"
        self.timeline.add(
            direction, "close", code=self.socket.close_code, reason=self.socket.close_reason or ""
        )

    # -- the bot's messages --------------------------------------------------------------

    async def _receive(self) -> None:
        try:
            while True:
                frame = await self.socket.recv()
                self.frames_received += 1
                await self._handle(self.frames_received, frame)
        except ConnectionClosed:
            return

    async def _handle(self, number: int, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self._violation(number, "a binary frame; AgentStream messages are JSON text")
            return
        try:
            message = parse_message(frame)
        except ProtocolError as exc:
            self._violation(number, str(exc))
            return
        event = type(message).__name__.lower()
        if not isinstance(message, Media | Mark | Clear):
            self._violation(number, f"'{event}' is sent by Exotel, never to it")
            return
        if not message.stream_sid:
            self._violation(number, f"{event} without a stream_sid")
        elif message.stream_sid != self.stream_sid:
            self._violation(number, f"{event} for stream_sid {message.stream_sid!r}")
        if isinstance(message, Media):
            self._on_media(number, message.payload)
        elif isinstance(message, Mark):
            if len(self.marks_received) < MAX_LISTED_MARKS:
                self.marks_received.append(message.name)
            self.timeline.add("in", "mark", name=message.name)
            self.player.add_mark(message.name)
        else:
            await self._on_clear()

    def _on_media(self, number: int, pcm: bytes) -> None:
        size = len(pcm)
        if size % CHUNK_ALIGNMENT:
            self._chunk_warning("not_aligned", number, size)
        if size < MIN_CHUNK_BYTES:
            self._chunk_warning("under_minimum", number, size)
        if size > MAX_CHUNK_BYTES:
            self._chunk_warning("over_maximum", number, size)
        self._check_rate(number, size)
        # Exotel plays such chunks, badly; so does the sandbox.
        self.media_messages_received += 1
        self.received += pcm
        self.timeline.media("in", size)
        self.player.add_audio(pcm)

    async def _on_clear(self) -> None:
        """Drop the audio not yet played and echo the marks that were waiting behind it.

        Exotel documents nothing about marks queued behind cleared audio; echoing them at
        once tells the bot its turn is over, where dropping them would leave it waiting.
        """
        cleared_before = self.player.bytes_cleared
        marks = self.player.clear()
        self.clears += 1
        self.timeline.add("in", "clear", bytes_cleared=self.player.bytes_cleared - cleared_before)
        for name in marks:
            await self._echo_mark(name)

    async def _echo_mark(self, name: str) -> None:
        if await self._send(mark_echo_message(self._next_sequence(), self.stream_sid, name)):
            if len(self.marks_echoed) < MAX_LISTED_MARKS:
                self.marks_echoed.append(name)
            self.timeline.add("out", "mark", name=name)

    def _check_rate(self, number: int, size: int) -> None:
        """Flag a bot whose steadily paced chunks carry audio of another sample rate."""
        self._arrivals.append((time.monotonic(), size))
        if len(self._arrivals) < RATE_WINDOW or "implied_rate" in self.chunk_warnings:
            return
        times = [at for at, _ in self._arrivals]
        intervals = sorted(later - earlier for earlier, later in itertools.pairwise(times))
        median = intervals[len(intervals) // 2]
        if median < RATE_MIN_INTERVAL or any(
            abs(interval - median) > RATE_JITTER * median for interval in intervals
        ):
            return
        sizes = sorted(size for _, size in self._arrivals)
        implied = sizes[len(sizes) // 2] / 2 / median
        rate = next(
            (rate for rate in SAMPLE_RATES if abs(implied - rate) <= RATE_TOLERANCE * rate), None
        )
        if rate is None or rate == self.rate:
            return
        self._chunk_warning("implied_rate", number, size)
        self.chunk_warnings["implied_rate"].update(
            what=f"chunks paced as {rate} Hz audio on a {self.rate} Hz stream",
            implied_rate=rate,
        )

    def _chunk_warning(self, kind: str, number: int, size: int) -> None:
        warning = self.chunk_warnings.get(kind)
        if warning is None:
            what, fix = CHUNK_WARNINGS[kind]
            warning = {
                "kind": kind,
                "what": what,
                "count": 0,
                "first_message": number,
                "smallest_bytes": size,
                "largest_bytes": size,
                "fix": fix,
            }
            self.chunk_warnings[kind] = warning
        warning["count"] += 1
        warning["smallest_bytes"] = min(warning["smallest_bytes"], size)
        warning["largest_bytes"] = max(warning["largest_bytes"], size)

    def _violation(self, number: int, reason: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(f"message {number}: {reason}"[:200])

    # -- the result ----------------------------------------------------------------------

    def report(self, url: str) -> StreamReport:
        ended = self.closed_at if self.closed_at is not None else time.monotonic()
        return StreamReport(
            url=url,
            stream_sid=self.stream_sid,
            sample_rate=self.rate,
            custom_parameters=self.target.custom_parameters,
            connected=not self.refused,
            error=self.error,
            ended_by=self.ended_by,
            end_reason=self.end_reason,
            stop_reason=self.stop_reason,
            close_code=self.socket.close_code,
            duration_ms=round((ended - self.opened_at) * 1000),
            frames_sent=self.frames_sent,
            bytes_sent=self.bytes_sent,
            sent_sha256=self.sent_hash.hexdigest(),
            media_messages_received=self.media_messages_received,
            bytes_received=len(self.received),
            received_sha256=hashlib.sha256(self.received).hexdigest(),
            bytes_played=self.player.bytes_played,
            bytes_cleared=self.player.bytes_cleared,
            marks_received=self.marks_received,
            marks_echoed=self.marks_echoed,
            clears=self.clears,
            violations=self.violations,
            violation_count=self.violation_count,
            chunk_warnings=[
                self.chunk_warnings[kind] for kind in CHUNK_WARNINGS if kind in self.chunk_warnings
            ],
            turns=self.turns,
            events=self.timeline.finished(),
        )


# --- the entry point ----------------------------------------------------------------------


async def run_stream(
    url: str,
    call: StreamCall,
    *,
    http: aiohttp.ClientSession,
    caller: Caller | None = None,
    hangup: asyncio.Event | None = None,
    max_seconds: float = 3600.0,
    connect_timeout: float = 10.0,
) -> tuple[StreamReport, bytes]:
    """Stream one call to the bot at ``url``; the report and all the PCM the bot sent.

    ``caller`` is the caller's script (``Caller()`` by default). Cancelling this coroutine
    closes the socket and re-raises.
    """
    timeline = _Timeline(time.monotonic())
    shown = redact(url)
    stream_sid = uuid.uuid4().hex
    rate, custom = 8000, dict[str, str]()

    def failed(error: str | None, ended_by: str = "error") -> tuple[StreamReport, bytes]:
        report = _unconnected_report(shown, stream_sid, rate, custom, error, ended_by, timeline)
        log.info("voicebot stream not started", call_sid=call.call_sid, url=shown, error=error)
        return report, b""

    try:
        socket_url = url
        if urlsplit(url).scheme.lower() in ("http", "https"):
            timeline.add("out", "resolve", url=shown)
            socket_url = await _resolve(url, call, http, connect_timeout)
            timeline.add("in", "resolved", url=redact(socket_url))
        target = _socket_target(socket_url)
    except (_Failure, ValueError) as exc:
        message = str(exc) if isinstance(exc, _Failure) else "the stream URL is not a valid URL"
        timeline.add("out", "error", error=message)
        return failed(message)
    rate, custom = target.sample_rate, target.custom_parameters
    if hangup is not None and hangup.is_set():
        return failed(None, "hangup")
    headers = {"Authorization": target.authorization} if target.authorization else {}
    # Exotel retries a failed handshake once (exotel-facts §4.1).
    for attempt in range(1, HANDSHAKE_ATTEMPTS + 1):
        timeline.add("out", "connect", url=redact(socket_url), attempt=attempt)
        try:
            socket = await connect(
                target.url,
                additional_headers=headers,
                compression=None,
                open_timeout=connect_timeout,
                close_timeout=CLOSE_TIMEOUT_SECONDS,
                max_size=MAX_FRAME_BYTES,
                logger=_WEBSOCKETS_LOG,
            )
            break
        except (OSError, TimeoutError, WebSocketException) as exc:
            message = _handshake_error(exc, connect_timeout)
            timeline.add("in", "error", error=message)
            if attempt == HANDSHAKE_ATTEMPTS:
                return failed(f"{message} (tried {HANDSHAKE_ATTEMPTS} times)")
            if hangup is not None and hangup.is_set():
                return failed(None, "hangup")
    timeline.add("in", "handshake")
    stream = _Stream(
        socket,
        call,
        stream_sid,
        target,
        caller or Caller(),
        timeline,
    )
    try:
        await stream.run(hangup, max_seconds)
    finally:
        await stream.shutdown()
    report = stream.report(shown)
    log.info(
        "voicebot stream ended",
        call_sid=call.call_sid,
        url=shown,
        ended_by=report.ended_by,
        end_reason=report.end_reason,
        stop_reason=report.stop_reason,
        close_code=report.close_code,
        error=report.error,
        violations=report.violation_count,
        chunk_warnings=sum(warning["count"] for warning in report.chunk_warnings),
    )
    return report, bytes(stream.received)


def _described(close: Close) -> str:
    return f"close code {close.code}" + (f" ({close.reason[:120]})" if close.reason else "")


def _handshake_error(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"the WebSocket handshake did not complete within {timeout:g} s"
    if isinstance(exc, InvalidStatus):
        return f"the bot rejected the WebSocket handshake with HTTP {exc.response.status_code}"
    if isinstance(exc, OSError):
        return f"could not connect: {exc.strerror or exc}"
    return f"the WebSocket handshake failed: {exc}"


def _unconnected_report(
    url: str,
    stream_sid: str,
    sample_rate: int,
    custom: dict[str, str],
    error: str | None,
    ended_by: str,
    timeline: _Timeline,
) -> StreamReport:
    empty = hashlib.sha256().hexdigest()
    return StreamReport(
        url=url,
        stream_sid=stream_sid,
        sample_rate=sample_rate,
        custom_parameters=custom,
        connected=False,
        error=error,
        ended_by=ended_by,
        end_reason=error or "the call was hung up before the stream began",
        stop_reason=None,
        close_code=None,
        duration_ms=0,
        frames_sent=0,
        bytes_sent=0,
        sent_sha256=empty,
        media_messages_received=0,
        bytes_received=0,
        received_sha256=empty,
        bytes_played=0,
        bytes_cleared=0,
        marks_received=[],
        marks_echoed=[],
        clears=0,
        violations=[],
        violation_count=0,
        chunk_warnings=[],
        turns=[],
        events=timeline.finished(),
    )
