"""``/exotel/{bot_id}``: one AgentStream socket, from handshake to teardown.

The socket goes ``connected`` → ``start`` → streaming → stopped, explicitly. Frames that do
not parse, or that come in the wrong state, are logged (a few per call, then counted) and
skipped: a bad frame never drops the call. Two faults are the transport's, found before a
frame reaches the stream: a message over ``EXOPLANE_MEDIA_MAX_MESSAGE_BYTES`` (uvicorn's
``ws_max_size``, refused from its header, close code 1009) and a text frame that is not UTF-8
(1007). Either ends the call, and the stream logs it as one line.

Outbound audio is cut into Exotel-sized chunks and paced at real time, so a ``clear``
(barge-in) drops what has not been played yet.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hmac
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from exoplane.capabilities import PARAMETER
from exoplane.integrations.calls.service import TimelineEntry, record_platform_steps
from exoplane.logs import get_logger
from exoplane.media.bots import Bot, CallInfo
from exoplane.media.metrics import STATS
from exoplane.media.protocol import (
    Clear,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    chunk_bytes,
    clear_message,
    duration_seconds,
    mark_message,
    media_prefix,
    media_text,
    pad_to_chunk,
    parse_message,
    sample_rate_from_query,
)
from exoplane.models.base import utcnow
from exoplane.state import AppState

log = get_logger("exoplane.media")

# Close codes (4000-4999 are the application's own).
CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHORIZED = 4401
CLOSE_UNKNOWN_BOT = 4404
CLOSE_BAD_REQUEST = 4400
CLOSE_IDLE = 4408
CLOSE_SESSION_LIMIT = 4429
LOGGED_BAD_FRAMES = 5
# How a stream that failed ends: close code, close reason, stop reason.
FAILED = (CLOSE_INTERNAL_ERROR, "internal error", "error")
CLOSE_TIMEOUT_SECONDS = 2.0
# What ended a stream when the server, not the stream, closed the socket with these codes.
TRANSPORT_FAULTS = {
    CLOSE_INVALID_DATA: "a text frame that is not valid UTF-8",
    CLOSE_TOO_BIG: "a message over the size limit",
}


# Steps a stream keeps beyond the ones every stream has (marks and DTMF may be many).
TIMELINE_STEPS = 200


class StreamTimeline:
    """A stream's steps, kept in memory while it runs: no database work on the frame path.
    They are written in two statements: the opening ones once ``start`` has said which call
    it is (so the call log shows a stream that is running), the rest once it has closed."""

    def __init__(self) -> None:
        self.entries: list[TimelineEntry] = []
        self.dropped = 0
        self.opening: asyncio.Task[bool] | None = None
        self.opened = 0  # how many entries the opening write holds

    def note(
        self,
        kind: str,
        detail: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
        always: bool = False,
    ) -> None:
        if not always and len(self.entries) >= TIMELINE_STEPS:
            self.dropped += 1
            return
        self.entries.append(TimelineEntry(at or utcnow(), kind, detail or {}))


class Phase(enum.Enum):
    AWAITING_CONNECTED = "awaiting_connected"
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class _MarkItem:
    name: str


class Player:
    """Plays a bot's audio out to Exotel at real time, with marks in their place.

    Its task sends what is queued as each chunk falls due and, with nothing queued, parks.
    Audio that arrives while it is parked and is already due (as a bot answering at real
    time produces it) is sent at once by the caller instead: waking the task to send it would
    cost every chunk two task switches. Only one of the two sends at any time.
    """

    def __init__(self, socket: WebSocket, stream_sid: str, sample_rate: int) -> None:
        self._socket = socket
        self._stream_sid = stream_sid
        self._media_prefix = media_prefix(stream_sid)
        # Every audio chunk is this long: a short last one is padded with silence.
        self._chunk = chunk_bytes(sample_rate)
        self._chunk_seconds = duration_seconds(self._chunk, sample_rate)
        self._chunk_ms = round(self._chunk_seconds * 1000)
        # Audio not yet a whole chunk, as the bot gave it: joined once a chunk is complete.
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._queue: deque[bytes | _MarkItem] = deque()
        self._ready = asyncio.Event()
        self._parked = False  # the task waits for audio; callers may send
        self._sending = False
        self._sent_chunks = 0
        self.first_audio_at: datetime | None = None
        self._played_ms = 0
        self._next_at = time.monotonic()  # when the next chunk is due to start playing
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def add_audio(self, pcm: bytes) -> None:
        # bytes() keeps a bot's own buffer out of the queue (a bot may reuse it); of a bytes
        # object it is that object, not a copy.
        self._pending.append(bytes(pcm))
        self._pending_bytes += len(pcm)
        if self._pending_bytes < self._chunk:
            return  # not a whole chunk yet
        pending, size = self._pending, self._chunk
        audio = pending[0] if len(pending) == 1 else b"".join(pending)
        whole = len(audio) - len(audio) % size
        # A slice of the whole of a bytes object is that object: an exact chunk is not copied.
        self._queue.extend(audio[at : at + size] for at in range(0, whole, size))
        self._pending = [audio[whole:]] if whole < len(audio) else []
        self._pending_bytes = len(audio) - whole
        await self._play()

    async def add_mark(self, name: str) -> None:
        self._flush_pending()
        self._queue.append(_MarkItem(name))
        await self._play()

    async def clear(self) -> None:
        dropped = sum(1 for item in self._queue if isinstance(item, bytes))
        self._queue.clear()
        self._pending, self._pending_bytes = [], 0
        STATS.cleared_chunks += dropped
        await self._send(clear_message(self._stream_sid))

    async def drain(self) -> None:
        """Returns once everything queued has been sent and has had time to play out (or
        the stream has ended)."""
        self._flush_pending()
        await self._play()
        while (self._queue or self._sending) and not self._stopped:
            await asyncio.sleep(self._chunk_seconds / 4)
        if not self._stopped:
            # The last chunk left one chunk ahead of its playing time.
            await asyncio.sleep(max(0.0, self._next_at - time.monotonic()))

    def _flush_pending(self) -> None:
        if self._pending:
            self._queue.append(pad_to_chunk(b"".join(self._pending), self._chunk))
            self._pending, self._pending_bytes = [], 0

    async def _play(self) -> None:
        """Send what is due now if the task is parked; hand the rest over to the task."""
        if not self._parked or self._sending:
            return  # the task, or a caller sending now, takes the new items with the rest
        now = time.monotonic()
        if self._next_at < now:
            self._next_at = now
        if await self._send_due(now, handed_at=now) is not None:
            self._parked = False  # from here on the task sends
            self._ready.set()

    async def _run(self) -> None:
        while True:
            delay = await self._send_due(time.monotonic())
            if delay is not None:
                await asyncio.sleep(delay)
                continue
            self._ready.clear()
            self._parked = True
            await self._ready.wait()
            self._next_at = max(self._next_at, time.monotonic())

    async def _send_due(self, now: float, *, handed_at: float | None = None) -> float | None:
        """Send queued items until the next chunk is not yet due; the seconds until it is,
        or None once the queue is empty.

        ``handed_at`` is when a caller handed over the audio it sends itself. A chunk cannot
        leave before it exists, so its lateness counts from then if it fell due earlier: a
        bot answering at real time hands each chunk over when it is due to play, one chunk
        later than the lead the player aims for, and that is not the player being late.
        """
        queue = self._queue
        self._sending = True
        try:
            while queue:
                head = queue[0]
                if isinstance(head, _MarkItem):
                    queue.popleft()
                    await self._send(mark_message(self._stream_sid, head.name))
                    now = time.monotonic()
                    continue
                # Each chunk leaves one chunk ahead of its playing time, so a little jitter
                # on the way never starves Exotel's playback; it waits for that moment while
                # still queued, so a clear in the meantime drops it too.
                due = self._next_at - self._chunk_seconds
                if due > now:
                    return due - now
                STATS.pacing_lateness.observe(
                    now - (due if handed_at is None else max(due, handed_at))
                )
                queue.popleft()
                self._sent_chunks += 1
                if self._sent_chunks == 1:
                    self.first_audio_at = utcnow()
                await self._send(
                    media_text(
                        self._media_prefix,
                        head,
                        chunk=self._sent_chunks,
                        timestamp_ms=self._played_ms,
                    )
                )
                self._played_ms += self._chunk_ms
                self._next_at += self._chunk_seconds
                now = time.monotonic()
            return None
        finally:
            self._sending = False

    async def _send(self, text: str) -> None:
        if self._socket.application_state is not WebSocketState.CONNECTED:
            return
        try:
            await self._socket.send_text(text)
        except WebSocketDisconnect:
            return  # Exotel hung up: the stream's receive loop sees it and ends the call
        STATS.frames_out += 1

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class Expiry(enum.Enum):
    """Why the watchdog ended a stream: the close code, the close reason, the stop reason."""

    IDLE = (CLOSE_IDLE, "no frames within the idle timeout", "idle_timeout")
    SESSION_LIMIT = (CLOSE_SESSION_LIMIT, "session limit reached", "session_limit")


class Watchdog:
    """Ends a stream that goes quiet or outlives its session, through one ``asyncio.timeout``.

    A frame only notes the time. The timer is set for the moment the stream would expire;
    when it fires early because frames came in the meantime, it is set again for the new
    moment. A timer per frame would cost every frame a timer cancelled and one scheduled.
    """

    def __init__(self, idle_seconds: float, session_seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = idle_seconds
        self._last_frame = self._loop.time()
        self._session_end = self._last_frame + session_seconds
        self._timeout: asyncio.Timeout | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.expired: Expiry | None = None

    def start(self, timeout: asyncio.Timeout) -> None:
        self._timeout = timeout
        self._check()

    def saw_frame(self) -> None:
        self._last_frame = self._loop.time()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        now = self._loop.time()
        idle_end = self._last_frame + self._idle
        if now >= self._session_end:
            self.expired = Expiry.SESSION_LIMIT
        elif now >= idle_end:
            self.expired = Expiry.IDLE
        if self.expired is not None:
            self._timer = None
            assert self._timeout is not None
            self._timeout.reschedule(now)  # the stream's task gets TimeoutError at once
            return
        self._timer = self._loop.call_at(min(idle_end, self._session_end), self._check)


class Control:
    """The ``CallControl`` a bot gets."""

    def __init__(self, stream: Stream, player: Player) -> None:
        self._stream = stream
        self._player = player

    async def send_audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError("PCM16 audio must be whole samples (an even number of bytes)")
        await self._player.add_audio(pcm)

    async def mark(self, name: str) -> None:
        self._stream.timeline.note("stream_mark", {"name": name, "from": "bot"})
        await self._player.add_mark(name)

    async def clear(self) -> None:
        self._stream.timeline.note("stream_clear")
        await self._player.clear()

    async def hang_up(self) -> None:
        """End the call once the audio already queued has played: the socket closes with
        1000 at once, without waiting for Exotel's next frame."""
        await self._player.drain()
        self._stream.request_hang_up()


class Stream:
    """One socket's life."""

    def __init__(self, socket: WebSocket, state: AppState, bot_id: str, bot: type[Bot]) -> None:
        self.socket = socket
        self.state = state
        self.bot_id = bot_id
        self.bot_class = bot
        self.bot: Bot | None = None
        self.player: Player | None = None
        self.phase = Phase.AWAITING_CONNECTED
        self.sample_rate = sample_rate_from_query(socket.query_params)
        self.call_sid: str | None = None
        self.started_at: datetime | None = None
        self.timeline = StreamTimeline()
        self.timeline.note("stream_handshake", {"bot_id": bot_id, "sample_rate": self.sample_rate})
        self._heard = False  # an inbound media frame has come
        self.bad_frames = 0
        self.hang_up_requested = False
        self._stop_reason = "stopped"
        self._disconnected = False
        self._torn_down = False
        self._timeout: asyncio.Timeout | None = None  # the receive loop's, while it runs

    def request_hang_up(self) -> None:
        """The bot hangs up: the receive loop ends now, not at Exotel's next frame."""
        self.hang_up_requested = True
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    async def run(self) -> None:
        settings = self.state.settings
        watchdog = Watchdog(
            settings.media_idle_timeout_seconds, settings.media_session_limit_seconds
        )
        close_code, close_reason, stop_reason = CLOSE_NORMAL, "stream ended", "closed"
        try:
            async with asyncio.timeout(None) as timeout:
                self._timeout = timeout
                watchdog.start(timeout)
                try:
                    await self._receive_frames(watchdog)
                finally:
                    self._timeout = None
            if self._disconnected:
                stop_reason = "disconnected"
            elif self.phase is Phase.STOPPED:
                stop_reason = self._stop_reason
            elif self.hang_up_requested:
                close_reason, stop_reason = "bot hung up", "hangup"
        except WebSocketDisconnect:
            stop_reason = "disconnected"
        except TimeoutError:
            if self.hang_up_requested and watchdog.expired is None:
                close_reason, stop_reason = "bot hung up", "hangup"
            elif watchdog.expired is None:  # the bot's own, not the watchdog's
                log.exception("stream failed", bot_id=self.bot_id)
                close_code, close_reason, stop_reason = FAILED
            else:
                close_code, close_reason, stop_reason = watchdog.expired.value
        except Exception:
            log.exception("stream failed", bot_id=self.bot_id)
            close_code, close_reason, stop_reason = FAILED
        finally:
            watchdog.stop()
            await self.teardown(close_code, close_reason, stop_reason)

    async def _receive_frames(self, watchdog: Watchdog) -> None:
        limit = self.state.settings.media_max_message_bytes
        while self.phase is not Phase.STOPPED and not self.hang_up_requested:
            frame = await self.socket.receive()
            watchdog.saw_frame()
            if frame["type"] == "websocket.disconnect":
                self._disconnected = True
                self._log_transport_fault(frame.get("code"), frame.get("reason") or "")
                return
            text = frame.get("text")
            if text is None and frame.get("bytes") is not None:
                text = frame["bytes"].decode("utf-8", errors="replace")
            if text is None:
                continue
            # The server refuses messages over the limit; a binary one just under it can still
            # grow past it as its invalid bytes become three-byte replacement characters.
            if len(text) * 4 > limit and len(text.encode()) > limit:
                self._bad_frame(f"frame of {len(text.encode())} bytes is over the limit")
                continue
            started = time.perf_counter()
            await self._handle(text)
            STATS.frame_seconds.observe(time.perf_counter() - started)

    async def _handle(self, text: str) -> None:
        STATS.frames_in += 1
        try:
            message = parse_message(text)
        except ProtocolError as exc:
            self._bad_frame(str(exc))
            return
        if type(message) is Media and self.bot is not None and self.phase is Phase.STREAMING:
            if not self._heard:
                self._heard = True
                self.timeline.note("first_inbound_media")
            await self.bot.on_audio(message.payload)  # nearly every frame: the rest can wait
            return
        if isinstance(message, Connected):
            if self.phase is Phase.AWAITING_CONNECTED:
                self.phase = Phase.AWAITING_START
                self.timeline.note("stream_connected")
            return
        if isinstance(message, Start):
            await self._on_start(message)
            return
        if isinstance(message, Stop):
            self.timeline.note("stream_stop", {"reason": message.reason}, always=True)
            self._stop_reason = message.reason
            self.phase = Phase.STOPPED
            return
        if self.phase is not Phase.STREAMING or self.bot is None:
            self._bad_frame(f"{type(message).__name__.lower()} before start")
            return
        if isinstance(message, Dtmf):  # media, when streaming, was handled first
            self.timeline.note("stream_dtmf", {"digit": message.digit})
            await self.bot.on_dtmf(message.digit)
        elif isinstance(message, Mark):
            self.timeline.note("stream_mark", {"name": message.name, "from": "exotel"})
            await self.bot.on_mark(message.name)
        elif isinstance(message, Clear):
            self._bad_frame("clear is sent by bots, not to them")

    async def _on_start(self, start: Start) -> None:
        if self.phase is Phase.STREAMING:
            self._bad_frame("a second start")
            return
        # The socket URL's rate is what Exotel was told to stream; start may restate it.
        rate = start.sample_rate if start.sample_rate != 8000 else self.sample_rate
        self.sample_rate = rate
        call = CallInfo(
            bot_id=self.bot_id,
            stream_sid=start.stream_sid,
            call_sid=start.call_sid,
            account_sid=start.account_sid,
            from_number=start.from_number,
            to_number=start.to_number,
            sample_rate=rate,
            custom_parameters=start.custom_parameters,
        )
        self.call_sid = start.call_sid
        self.started_at = utcnow()
        started = {
            "bot_id": self.bot_id,
            "stream_sid": start.stream_sid,
            "from": start.from_number,
            "to": start.to_number,
            "sample_rate": rate,
            # The URL's capability is a credential: the call log shows that it came, not what.
            "custom_parameters": {
                name: "(redacted)" if name == PARAMETER else value
                for name, value in start.custom_parameters.items()
            },
        }
        self.timeline.note("stream_start", started, at=self.started_at, always=True)
        self._record_opening(start.call_sid)
        self.player = Player(self.socket, start.stream_sid, rate)
        self.player.start()
        self.bot = self.bot_class(call, Control(self, self.player))
        self.phase = Phase.STREAMING
        log.info("stream started", bot_id=self.bot_id, call_sid=start.call_sid, sample_rate=rate)
        await self.bot.on_start()

    def _log_transport_fault(self, code: int | None, reason: str) -> None:
        fault = TRANSPORT_FAULTS.get(code or 0)
        if fault is None:
            return
        STATS.malformed_frames += 1
        log.warning(
            "stream closed on a bad frame",
            bot_id=self.bot_id,
            call_sid=self.call_sid,
            close_code=code,
            fault=fault,
            detail=reason[:200] or None,
        )

    def _bad_frame(self, reason: str) -> None:
        self.bad_frames += 1
        STATS.malformed_frames += 1
        if self.bad_frames <= LOGGED_BAD_FRAMES:
            log.warning("skipped a frame", bot_id=self.bot_id, reason=reason[:200])
        elif self.bad_frames == LOGGED_BAD_FRAMES + 1:
            log.warning("further bad frames on this stream are counted, not logged")

    async def teardown(self, code: int, reason: str, stop_reason: str) -> None:
        """Idempotent: stop the player, tell the bot, close the socket within a bound."""
        if self._torn_down:
            return
        self._torn_down = True
        self.phase = Phase.STOPPED
        if self.player is not None:
            await self.player.stop()
        if self.bot is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):  # no task, unlike wait_for
                    await self.bot.on_stop(stop_reason)
            except Exception:
                log.exception("bot failed while stopping", bot_id=self.bot_id)
        if self.socket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    await self.socket.close(code, reason)
        await self._record_timeline(code, reason, stop_reason)

    def _record_opening(self, call_sid: str) -> None:
        """Write the steps so far beside the stream, which does not wait for it."""
        timeline = self.timeline
        opening = list(timeline.entries)
        timeline.opened = len(opening)

        async def record() -> bool:
            try:
                await record_platform_steps(self.state.sessions, call_sid, opening)
            except Exception:
                log.exception("could not record the stream's start", call_sid=call_sid)
                return False
            return True

        timeline.opening = asyncio.create_task(record())

    async def _record_timeline(self, code: int, reason: str, stop_reason: str) -> None:
        """Once the socket has closed: a stream that never said which call it was (no
        ``start``) has no timeline to keep."""
        timeline = self.timeline
        first_audio = self.player.first_audio_at if self.player is not None else None
        if first_audio is not None and self.started_at is not None:
            after = round((first_audio - self.started_at).total_seconds() * 1000)
            timeline.note(
                "first_outbound_media", {"after_start_ms": after}, at=first_audio, always=True
            )
        closed = {
            "code": code,
            "reason": reason,
            "stop_reason": stop_reason,
            "malformed_frames": self.bad_frames,
            "steps_not_kept": timeline.dropped,
        }
        timeline.note("stream_closed", closed, always=True)
        if self.call_sid is None:
            return
        rest = timeline.entries
        if timeline.opening is not None and await timeline.opening:
            rest = rest[timeline.opened :]
        rest.sort(key=lambda entry: entry.at)
        try:
            await record_platform_steps(self.state.sessions, self.call_sid, rest)
        except Exception:
            log.exception("could not record the stream's timeline", call_sid=self.call_sid)


class TransportTracebackFilter(logging.Filter):
    """Drops uvicorn's record of a text frame that is not UTF-8.

    uvicorn logs it as an exception, traceback and all, without saying which call it was;
    the stream that the frame was for logs it instead, as one line (``_log_transport_fault``).
    """

    MESSAGE = "Invalid UTF-8 sequence received from client."

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, UnicodeDecodeError) and record.msg == self.MESSAGE)


TRANSPORT_TRACEBACKS = TransportTracebackFilter()


def quiet_transport_tracebacks() -> None:
    """Install :class:`TransportTracebackFilter` on uvicorn's error logger (idempotent)."""
    logging.getLogger("uvicorn.error").addFilter(TRANSPORT_TRACEBACKS)


async def serve_stream(socket: WebSocket, state: AppState, bot_id: str) -> None:
    """Accept the socket (auth, bot, sample rate checked) and run it to the end."""
    problem = _refusal(socket, state, bot_id)
    await socket.accept()
    if problem is not None:
        code, reason = problem
        await socket.close(code, reason)
        return
    bot = state.bots[bot_id]
    stream = Stream(socket, state, bot_id, bot)
    STATS.active_streams += 1
    try:
        # The stream runs as a task of its own. Each frame wakes the task that waits for it,
        # and waking a task resumes every coroutine it is awaiting through: here only the
        # stream's own few rather than the twenty-odd of the server's and the framework's.
        await asyncio.create_task(stream.run())
    finally:
        STATS.active_streams -= 1


def _refusal(socket: WebSocket, state: AppState, bot_id: str) -> tuple[int, str] | None:
    settings = state.settings
    if settings.media_basic_auth is not None:
        expected = (
            "Basic "
            + base64.b64encode(settings.media_basic_auth.get_secret_value().encode()).decode()
        )
        presented = socket.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            return CLOSE_UNAUTHORIZED, "missing or wrong Basic credentials"
    if settings.media_require_signature and not state.capabilities.verify(
        socket.query_params.get(PARAMETER), "media", bot_id
    ):
        return CLOSE_UNAUTHORIZED, f"missing or invalid capability '{PARAMETER}'"
    if bot_id not in state.bots:
        known = ", ".join(sorted(state.bots)) or "none"
        return CLOSE_UNKNOWN_BOT, f"unknown bot {bot_id!r} (known: {known})"[:120]
    try:
        sample_rate_from_query(socket.query_params)
    except ProtocolError as exc:
        return CLOSE_BAD_REQUEST, str(exc)[:120]
    return None
