"""``/exotel/{bot_id}``: one AgentStream socket, from handshake to teardown.

The socket goes ``connected`` → ``start`` → streaming → stopped, explicitly. Frames that do
not parse, or that come in the wrong state, are logged (a few per call, then counted) and
skipped: a bad frame never drops the call. Outbound audio is cut into Exotel-sized chunks and
paced at real time, so a ``clear`` (barge-in) drops what has not been played yet.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hmac
import time
from collections import deque
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from exoplane.capabilities import PARAMETER
from exoplane.logs import get_logger
from exoplane.media import metrics
from exoplane.media.bots import Bot, CallInfo
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
    media_message,
    pad_to_chunk,
    parse_message,
    sample_rate_from_query,
)
from exoplane.state import AppState

log = get_logger("exoplane.media")

# Close codes (4000-4999 are the application's own).
CLOSE_NORMAL = 1000
CLOSE_INTERNAL_ERROR = 1011
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
        self._rate = sample_rate
        self._chunk = chunk_bytes(sample_rate)
        self._pending = bytearray()  # audio not yet a whole chunk
        self._queue: deque[bytes | _MarkItem] = deque()
        self._ready = asyncio.Event()
        self._parked = False  # the task waits for audio; callers may send
        self._sending = False
        self._sent_chunks = 0
        self._played_ms = 0
        self._next_at = time.monotonic()  # when the next chunk is due to start playing
        self._lead = duration_seconds(self._chunk, sample_rate)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def add_audio(self, pcm: bytes) -> None:
        self._pending += pcm
        whole = len(self._pending) - len(self._pending) % self._chunk
        for offset in range(0, whole, self._chunk):
            self._queue.append(bytes(self._pending[offset : offset + self._chunk]))
        del self._pending[:whole]
        if whole:
            await self._play()

    async def add_mark(self, name: str) -> None:
        self._flush_pending()
        self._queue.append(_MarkItem(name))
        await self._play()

    async def clear(self) -> None:
        dropped = sum(1 for item in self._queue if isinstance(item, bytes))
        self._queue.clear()
        self._pending.clear()
        metrics.CLEARED_CHUNKS.inc(dropped)
        await self._send(clear_message(self._stream_sid))

    def _flush_pending(self) -> None:
        if self._pending:
            self._queue.append(pad_to_chunk(bytes(self._pending), self._chunk))
            self._pending.clear()

    async def _play(self) -> None:
        """Send what is due now if the task is parked; hand the rest over to the task."""
        if not self._parked or self._sending:
            return  # the task, or a caller sending now, takes the new items with the rest
        self._next_at = max(self._next_at, time.monotonic())
        if await self._send_due() is not None:
            self._parked = False  # from here on the task sends
            self._ready.set()

    async def _run(self) -> None:
        while True:
            delay = await self._send_due()
            if delay is not None:
                await asyncio.sleep(delay)
                continue
            self._ready.clear()
            self._parked = True
            await self._ready.wait()
            self._next_at = max(self._next_at, time.monotonic())

    async def _send_due(self) -> float | None:
        """Send queued items until the next chunk is not yet due; the seconds until it is,
        or None once the queue is empty."""
        self._sending = True
        try:
            while self._queue:
                head = self._queue[0]
                if isinstance(head, _MarkItem):
                    self._queue.popleft()
                    await self._send(mark_message(self._stream_sid, head.name))
                    continue
                # Each chunk leaves one chunk ahead of its playing time, so a little jitter
                # on the way never starves Exotel's playback; it waits for that moment while
                # still queued, so a clear in the meantime drops it too.
                delay = self._next_at - time.monotonic() - self._lead
                if delay > 0:
                    return delay
                metrics.PACING_LATENESS.observe(-delay)
                self._queue.popleft()
                self._sent_chunks += 1
                await self._send(
                    media_message(
                        self._stream_sid,
                        head,
                        chunk=self._sent_chunks,
                        timestamp_ms=self._played_ms,
                    )
                )
                seconds = duration_seconds(len(head), self._rate)
                self._played_ms += round(seconds * 1000)
                self._next_at += seconds
            return None
        finally:
            self._sending = False

    async def _send(self, text: str) -> None:
        if self._socket.application_state != WebSocketState.CONNECTED:
            return
        try:
            await self._socket.send_text(text)
        except WebSocketDisconnect:
            return  # Exotel hung up: the stream's receive loop sees it and ends the call
        metrics.FRAMES_OUT.inc()

    async def stop(self) -> None:
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

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    async def send_audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError("PCM16 audio must be whole samples (an even number of bytes)")
        if self._stream.player is not None:
            await self._stream.player.add_audio(pcm)

    async def mark(self, name: str) -> None:
        if self._stream.player is not None:
            await self._stream.player.add_mark(name)

    async def clear(self) -> None:
        if self._stream.player is not None:
            await self._stream.player.clear()

    async def hang_up(self) -> None:
        self._stream.hang_up_requested = True


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
        self.bad_frames = 0
        self.hang_up_requested = False
        self._stop_reason = "stopped"
        self._disconnected = False
        self._torn_down = False

    async def run(self) -> None:
        settings = self.state.settings
        watchdog = Watchdog(
            settings.media_idle_timeout_seconds, settings.media_session_limit_seconds
        )
        close_code, close_reason, stop_reason = CLOSE_NORMAL, "stream ended", "closed"
        try:
            async with asyncio.timeout(None) as timeout:
                watchdog.start(timeout)
                await self._receive_frames(watchdog)
            if self._disconnected:
                stop_reason = "disconnected"
            elif self.phase is Phase.STOPPED:
                stop_reason = self._stop_reason
            elif self.hang_up_requested:
                close_reason, stop_reason = "bot hung up", "hangup"
        except WebSocketDisconnect:
            stop_reason = "disconnected"
        except TimeoutError:
            if watchdog.expired is None:  # the bot's own, not the watchdog's
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
                return
            text = frame.get("text")
            if text is None and frame.get("bytes") is not None:
                text = frame["bytes"].decode("utf-8", errors="replace")
            if text is None:
                continue
            if len(text) * 4 > limit and len(text.encode()) > limit:
                self._bad_frame(f"frame of {len(text.encode())} bytes is over the limit")
                continue
            started = time.perf_counter()
            await self._handle(text)
            metrics.FRAME_SECONDS.observe(time.perf_counter() - started)

    async def _handle(self, text: str) -> None:
        metrics.FRAMES_IN.inc()
        try:
            message = parse_message(text)
        except ProtocolError as exc:
            self._bad_frame(str(exc))
            return
        if isinstance(message, Connected):
            if self.phase is Phase.AWAITING_CONNECTED:
                self.phase = Phase.AWAITING_START
            return
        if isinstance(message, Start):
            await self._on_start(message)
            return
        if isinstance(message, Stop):
            self._stop_reason = message.reason
            self.phase = Phase.STOPPED
            return
        if self.phase is not Phase.STREAMING or self.bot is None:
            self._bad_frame(f"{type(message).__name__.lower()} before start")
            return
        if isinstance(message, Media):
            await self.bot.on_audio(message.payload)
        elif isinstance(message, Dtmf):
            await self.bot.on_dtmf(message.digit)
        elif isinstance(message, Mark):
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
        self.player = Player(self.socket, start.stream_sid, rate)
        self.player.start()
        self.bot = self.bot_class(call, Control(self))
        self.phase = Phase.STREAMING
        log.info("stream started", bot_id=self.bot_id, call_sid=start.call_sid, sample_rate=rate)
        await self.bot.on_start()

    def _bad_frame(self, reason: str) -> None:
        self.bad_frames += 1
        metrics.MALFORMED_FRAMES.inc()
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
                await asyncio.wait_for(self.bot.on_stop(stop_reason), CLOSE_TIMEOUT_SECONDS)
            except Exception:
                log.exception("bot failed while stopping", bot_id=self.bot_id)
        if self.socket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.socket.close(code, reason), CLOSE_TIMEOUT_SECONDS)


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
    metrics.ACTIVE_STREAMS.inc()
    try:
        await stream.run()
    finally:
        metrics.ACTIVE_STREAMS.dec()


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
