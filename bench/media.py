"""Concurrent simulated Exotel streams against exoplane's echo bot, a bare WebSocket echo and a
pipecat echo (the peer).

Run from the repository root with ``make bench`` (after ``bench/api.py``) or
``python bench/media.py --help``. All three servers run as child processes under uvicorn with
one worker: ``exoplane serve`` (its ``/exotel/echo`` bot), ``bench/media_bare.py``, a Starlette
WebSocket that sends every frame straight back, and ``bench/media_pipecat.py``, a pipecat
echo wired as Exotel's pipecat sample wires a bot. For each number of streams in the ladder
(pipecat has its own, lower one) the same client plays Exotel's part against one server at a
time: ``connected``, ``start``,
then one 100 ms media frame (1,600 bytes of PCM16 at 8 kHz) per stream every 100 ms for
``--duration`` seconds, then ``stop``. The table goes to stdout; the results are also written
to ``bench/results/media.json`` and ``bench/results/media.md``.

Round trip: from when an outbound message was due to its arrival, where due takes out the
buffering a server does by design and nothing else. A message is due once the inbound frame
holding its last byte has been sent: exoplane sends 200 ms chunks of two frames, so the first
frame of each chunk necessarily waits 100 ms for the second (for the bare echo every message is
one frame, and this is plainly send to echo). exoplane also paces, keeping at most one chunk
ahead of playback, so for it a chunk is due no sooner than the previous one began to play.
The time from the completing frame alone (raw) and the gaps a real-time player would hear
(late) are reported beside it. Only frames due while all N streams are under way are measured:
not the warm-up, nor the last half second, when the first streams already hang up. A rung
whose RT p99 is near the target is run three times and judged by the median. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import (
    HOST,
    REPO_ROOT,
    BenchError,
    _loop_factory,
    _non_negative_float,
    _percentile,
    _positive_float,
    _stop,
    _wait_until_healthy,
    child_env,
    exoplane_command,
    free_port,
    machine_info,
    write_report,
)
from bench.api import bare_command as api_bare_command

SAMPLE_RATE = 8000
FRAME_S = 0.1
FRAME_BYTES = 1600  # 100 ms of PCM16 at 8 kHz
BYTES_PER_S = SAMPLE_RATE * 2


def _steps(first: int, last: int, step: float = 1.1) -> tuple[int, ...]:
    """Rungs from ``first`` to ``last``, each at most ``step`` times the one before: a
    capacity is only known to the nearest rung, so near a limit the rungs are 10 % apart."""
    rungs = [first]
    while rungs[-1] < last:
        rungs.append(min(last, max(rungs[-1] + 1, int(rungs[-1] * step))))
    return tuple(rungs)


# The bare echo and exoplane: coarse up to 500 streams, then 10 % apart up to 2,800.
DEFAULT_LADDER = (100, 250, *_steps(500, 2800))
# pipecat holds tens of streams, not hundreds: its own ladder, 10 % apart from 30.
DEFAULT_PEER_LADDER = (10, 20, *_steps(30, 400))
QUICK_LADDER = (100, 250, 500)
QUICK_PEER_LADDER = (10, 25, 50)
QUICK_DURATION_S = 8.0
QUICK_WARMUP_S = 1.0

CONNECT_BATCH = 50  # handshakes in flight while the streams are being set up
CONNECT_TIMEOUT_S = 30.0
START_DELAY_S = 0.5  # between the last handshake and the first frame
# The last frames of each stream are not measured either: the first streams to finish hang
# up while the last ones still send, N hang-ups within 100 ms, which no real traffic does.
COOLDOWN_S = 0.5
DRAIN_TIMEOUT_S = 3.0  # for the last echoes once sending stops
CLOSE_TIMEOUT_S = 5.0

BASELINE = "bare"
TARGET = "exoplane"
PEER = "pipecat"
SERVERS = (PEER, BASELINE, TARGET)  # the order each rung loads them in
AGAINST_PREFIX = f"{TARGET}@"
AGAINST_RATIO = 0.95  # a change may cost at most 5 % of the streams held
PEER_RATIO = 8.0
TARGET_P99_MS = 20.0
# A rung whose RT p99 lands within this band around the target is run twice more and judged
# by the median of its three runs: near a server's limit a single run's p99 is mostly noise.
RECHECK_P99_MS = (TARGET_P99_MS / 2, TARGET_P99_MS * 2)
RUNS_NEAR_TARGET = 3
TARGET_RATIO = 0.7
TARGET_STREAMS = 500

clock = time.perf_counter

# One frame of audio for every stream: what is measured is moving it, not what it sounds like.
PAYLOAD = base64.b64encode(random.Random(8000).randbytes(FRAME_BYTES)).decode()


# --- one simulated Exotel stream ----------------------------------------------------------


def _compact(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def _media_frame(sid: str, index: int) -> str:
    return (
        f'{{"event":"media","stream_sid":"{sid}","media":{{"chunk":"{index + 1}",'
        f'"timestamp":"{index * 100}","payload":"{PAYLOAD}"}}}}'
    )


def _audio_bytes(payload: str) -> int:
    """The length of base64-encoded audio, without decoding it."""
    return len(payload) * 3 // 4 - (len(payload) - len(payload.rstrip("=")))


@dataclass(frozen=True, slots=True)
class Window:
    """Frames due in [start, end) are measured; the rest is warm-up or set-up."""

    start: float
    end: float

    def __contains__(self, due: float) -> bool:
        return self.start <= due < self.end


@dataclass(slots=True)
class StreamLog:
    sid: str
    due_at: list[float] = field(default_factory=list)  # when each frame should have left
    sent_at: list[float] = field(default_factory=list)  # when it did
    echoed: int = 0  # audio bytes that came back
    previous_starts: float | None = None  # when the last message began to play, played out
    played_until: float | None = None  # when the audio received so far ends, played out
    round_trips: list[float] = field(default_factory=list)  # from when it was due
    raw_round_trips: list[float] = field(default_factory=list)  # from the completing frame
    lateness: list[float] = field(default_factory=list)  # the gap playback waited for it
    echoes: int = 0  # outbound media messages completing a measured frame
    error: str | None = None
    drained: asyncio.Event = field(default_factory=asyncio.Event)


async def _open(
    session: aiohttp.ClientSession, url: str, sid: str
) -> aiohttp.ClientWebSocketResponse:
    socket = await session.ws_connect(url, autoping=True, max_msg_size=0, compress=0)
    await socket.send_str(_compact({"event": "connected"}))
    await socket.send_str(
        _compact(
            {
                "event": "start",
                "sequence_number": "1",
                "stream_sid": sid,
                "start": {
                    "stream_sid": sid,
                    "call_sid": f"call-{sid}",
                    "account_sid": "bench",
                    "from": "+919876543210",
                    "to": "+918047491899",
                    "custom_parameters": {},
                    "media_format": {"encoding": "raw", "sample_rate": "8000", "bit_rate": "128"},
                },
            }
        )
    )
    return socket


async def _receive(
    socket: aiohttp.ClientWebSocketResponse,
    log: StreamLog,
    window: Window,
    expected: int,
    paced: bool,
) -> None:
    async for message in socket:
        if message.type is not aiohttp.WSMsgType.TEXT:
            continue
        now = clock()
        document = json.loads(message.data)
        if document.get("event") != "media":
            continue
        size = _audio_bytes(document["media"]["payload"])
        seconds = size / BYTES_PER_S
        log.echoed += size
        frame = (log.echoed - 1) // FRAME_BYTES  # the inbound frame that completed this one
        if frame < len(log.sent_at) and log.due_at[frame] in window:
            sent = log.sent_at[frame]
            # Due once its audio is all sent and, where the server paces (one message ahead
            # of playback), once the message before it has begun to play.
            starts = log.previous_starts
            due = sent if not paced or starts is None else max(sent, starts)
            log.round_trips.append(max(0.0, now - due))
            log.raw_round_trips.append(now - sent)
            # Played out as Exotel does: each message at real time once the one before ends.
            late = 0.0 if log.played_until is None else max(0.0, now - log.played_until)
            log.lateness.append(late)
            log.echoes += 1
        log.previous_starts = max(now, log.played_until or now)
        log.played_until = log.previous_starts + seconds
        if log.echoed >= expected:
            log.drained.set()


async def _drive(
    socket: aiohttp.ClientWebSocketResponse,
    log: StreamLog,
    first_due: float,
    frames: int,
    window: Window,
    paced: bool,
    closes_on_stop: bool,
) -> None:
    expected = frames * FRAME_BYTES
    receiver = asyncio.create_task(_receive(socket, log, window, expected, paced))
    try:
        for index in range(frames):
            due = first_due + index * FRAME_S
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if receiver.done():
                log.error = f"closed early ({socket.close_code})"
                return
            log.due_at.append(due)
            log.sent_at.append(clock())
            await socket.send_str(_media_frame(log.sid, index))
        try:
            await asyncio.wait_for(log.drained.wait(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.error = "audio not echoed in full"
        await socket.send_str(_compact({"event": "stop", "stream_sid": log.sid}))
        if not closes_on_stop:  # as Exotel does: it hangs up itself after stop
            await socket.close()
        try:
            await asyncio.wait_for(asyncio.shield(receiver), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.error = log.error or "no close after stop"
        if socket.close_code != 1000:
            log.error = log.error or f"closed with {socket.close_code}"
    except (aiohttp.ClientError, ConnectionError) as exc:
        log.error = type(exc).__name__
    finally:
        receiver.cancel()
        await socket.close()


@dataclass(slots=True)
class Load:
    logs: list[StreamLog]
    window: Window
    connected: int = 0
    wall_s: float = 0.0  # from the first frame due to the last socket closed
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None
    failures: Counter[str] = field(default_factory=Counter)


async def offer(
    url: str,
    streams: int,
    duration: float,
    warmup: float,
    server_cpu: Callable[[], float | None],
    *,
    paced: bool,
    closes_on_stop: bool = True,
) -> Load:
    """Open ``streams`` sockets, then stream audio on all of them at real time."""
    logs = [StreamLog(f"bench{index:05d}") for index in range(streams)]
    frames = round(duration / FRAME_S / 2) * 2  # whole 200 ms chunks: nothing is padded
    connector = aiohttp.TCPConnector(limit=0)  # no cap on open sockets
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sockets: list[aiohttp.ClientWebSocketResponse | None] = []
        for batch in range(0, streams, CONNECT_BATCH):
            opened = await asyncio.gather(
                *(_open(session, url, log.sid) for log in logs[batch : batch + CONNECT_BATCH]),
                return_exceptions=True,
            )
            for log, result in zip(logs[batch : batch + CONNECT_BATCH], opened, strict=True):
                if isinstance(result, BaseException):
                    log.error = f"connect: {type(result).__name__}"
                    sockets.append(None)
                else:
                    sockets.append(result)
        started = clock() + START_DELAY_S
        window = Window(started + warmup, started + duration - COOLDOWN_S)
        load = Load(logs, window, connected=sum(s is not None for s in sockets))
        # Every task exists before the first frame is due, so none starts late.
        drivers = [
            asyncio.create_task(
                _drive(
                    socket,
                    log,
                    started + index / streams * FRAME_S,
                    frames,
                    window,
                    paced,
                    closes_on_stop,
                )
            )
            for index, (socket, log) in enumerate(zip(sockets, logs, strict=True))
            if socket is not None
        ]
        await asyncio.sleep(max(0.0, started - clock()))
        client_before, server_before = time.process_time(), server_cpu()
        # A collection pausing the client would delay frames and be charged to the server.
        gc.disable()
        try:
            await asyncio.gather(*drivers)
        finally:
            gc.enable()
        load.wall_s = clock() - started
        load.client_cpu_s = time.process_time() - client_before
        server_after = server_cpu()
        if server_before is not None and server_after is not None:
            load.server_cpu_s = server_after - server_before
    load.failures.update(log.error for log in logs if log.error is not None)
    return load


# --- servers ------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process so far, where /proc says (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Served:
    name: str
    url: str  # the stream URL
    pid: int
    paced: bool  # whether it holds audio back to play at real time
    closes_on_stop: bool  # whether it closes the socket on ``stop`` (else the client does)


@asynccontextmanager
async def serving(
    name: str,
    argv: Sequence[str],
    port: int,
    path: str,
    health: str,
    workdir: Path,
    *,
    paced: bool,
    closes_on_stop: bool = True,
) -> AsyncIterator[Served]:
    """A server as a child process, like ``bench.api.serving``, with its pid for CPU time."""
    log_path = workdir / f"media-{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=workdir, env=child_env(workdir), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://{HOST}:{port}"
        await _wait_until_healthy(name, process, base + health, log_path)
        yield Served(name, f"ws://{HOST}:{port}{path}", process.pid, paced, closes_on_stop)
    finally:
        _stop(process)


def bare_command(port: int) -> list[str]:
    return api_bare_command(port, "bench.media_bare:app")


def pipecat_command(port: int) -> list[str]:
    return api_bare_command(port, "bench.media_pipecat:app")


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rung:
    target: str
    streams: int
    connected: int
    errors: int
    error_kinds: dict[str, int]
    seconds: float
    frames_per_s: float
    echoes_per_s: float
    rt_p50_ms: float
    rt_p99_ms: float
    raw_rt_p50_ms: float
    raw_rt_p99_ms: float
    late_p99_ms: float
    send_lag_p99_ms: float
    server_cpu: float | None
    client_cpu: float
    # RT p99 of every run of this rung, in the order run; the other figures are those of
    # the run with the median RT p99, and errors count those of every run.
    p99_runs_ms: tuple[float, ...] = ()

    @property
    def within_target(self) -> bool:
        return self.errors == 0 and self.echoes_per_s > 0 and self.rt_p99_ms <= TARGET_P99_MS

    @property
    def raw_within_target(self) -> bool:
        return self.within_target and self.raw_rt_p99_ms <= TARGET_P99_MS


def _ms(ordered: Sequence[float], fraction: float) -> float:
    return round(_percentile(ordered, fraction) * 1000, 2)


def summarise(target: str, streams: int, load: Load) -> Rung:
    seconds = load.window.end - load.window.start
    round_trips = sorted(rt for log in load.logs for rt in log.round_trips)
    raw_round_trips = sorted(rt for log in load.logs for rt in log.raw_round_trips)
    lateness = sorted(late for log in load.logs for late in log.lateness)
    lags = sorted(
        sent - due
        for log in load.logs
        for due, sent in zip(log.due_at, log.sent_at, strict=True)
        if due in load.window
    )
    wall = load.wall_s or 1.0
    return Rung(
        target=target,
        streams=streams,
        connected=load.connected,
        errors=sum(load.failures.values()),
        error_kinds=dict(load.failures),
        seconds=round(seconds, 3),
        frames_per_s=round(len(lags) / seconds, 1),
        echoes_per_s=round(sum(log.echoes for log in load.logs) / seconds, 1),
        rt_p50_ms=_ms(round_trips, 0.50),
        rt_p99_ms=_ms(round_trips, 0.99),
        raw_rt_p50_ms=_ms(raw_round_trips, 0.50),
        raw_rt_p99_ms=_ms(raw_round_trips, 0.99),
        late_p99_ms=_ms(lateness, 0.99),
        send_lag_p99_ms=_ms(lags, 0.99),
        server_cpu=None if load.server_cpu_s is None else round(load.server_cpu_s / wall, 2),
        client_cpu=round(load.client_cpu_s / wall, 2),
    )


async def measure(served: Served, streams: int, options: argparse.Namespace) -> Rung:
    """One rung: run once, and twice more when that run's p99 is close to the target."""
    runs = [await measure_once(served, streams, options)]
    low, high = RECHECK_P99_MS
    if runs[0].errors == 0 and low <= runs[0].rt_p99_ms <= high:
        for _ in range(RUNS_NEAR_TARGET - 1):
            runs.append(await measure_once(served, streams, options))
    return median_run(runs)


def median_run(runs: Sequence[Rung]) -> Rung:
    """The run with the median RT p99 (of an even number, the higher), carrying every
    run's p99 and errors."""
    median = sorted(runs, key=lambda run: run.rt_p99_ms)[len(runs) // 2]
    kinds: Counter[str] = Counter()
    for run in runs:
        kinds.update(run.error_kinds)
    return replace(
        median,
        errors=sum(run.errors for run in runs),
        error_kinds=dict(kinds),
        p99_runs_ms=tuple(run.rt_p99_ms for run in runs),
    )


async def measure_once(served: Served, streams: int, options: argparse.Namespace) -> Rung:
    print(f"{served.name}: {streams} streams ...", file=sys.stderr, flush=True)
    load = await offer(
        served.url,
        streams,
        options.duration,
        options.warmup,
        lambda: _cpu_seconds(served.pid),
        paced=served.paced,
        closes_on_stop=served.closes_on_stop,
    )
    return summarise(served.name, streams, load)


# --- the run ------------------------------------------------------------------------------


async def run(options: argparse.Namespace, workdir: Path) -> list[Rung]:
    """The chosen servers up for the whole run; each rung loads one of them at a time, and
    each climbs its ladder (pipecat its own) until it first misses the target."""
    async with contextlib.AsyncExitStack() as stack:
        started = [
            await stack.enter_async_context(start(name, options, workdir))
            for name in options.servers
        ]
        rungs: list[Rung] = []
        ladders = {
            served.name: set(options.peer_ladder if served.name == PEER else options.ladder)
            for served in started
        }
        climbing = list(started)
        for streams in sorted(set().union(*ladders.values())):
            for served in [s for s in climbing if streams in ladders[s.name]]:
                rung = await measure(served, streams, options)
                rungs.append(rung)
                if not rung.within_target:
                    # Its capacity is the rung below: higher rungs cannot change it.
                    climbing.remove(served)
            if not climbing:
                break
    return rungs


def start(
    name: str, options: argparse.Namespace, workdir: Path
) -> contextlib.AbstractAsyncContextManager[Served]:
    """One server by its name in the results, each in a directory (and so a database) of its
    own."""
    port = free_port()
    home = workdir / name.replace("@", "-at-")
    home.mkdir()
    if name == BASELINE:
        return serving(name, bare_command(port), port, "/exotel/echo", "/", home, paced=False)
    if name == PEER:
        argv = pipecat_command(port)
        return serving(
            name, argv, port, "/exotel/echo", "/", home, paced=True, closes_on_stop=False
        )
    if name == TARGET:
        argv = exoplane_command(port)
    else:  # exoplane as it was at --against's revision
        argv = ["env", f"PYTHONPATH={source_at(options.against, workdir)}", *exoplane_command(port)]
    return serving(name, argv, port, "/exotel/echo", "/healthz", home, paced=True)


def source_at(revision: str, workdir: Path) -> Path:
    """exoplane's ``src`` as it was at ``revision`` of this repository, exported beside the
    run (the installed dependencies serve it, so a revision that needs others fails to start)."""
    exported = workdir / "against-source"
    if not exported.exists():
        archive = subprocess.run(
            ["git", "archive", "--format=tar", revision, "src"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise BenchError(f"--against {revision}: {archive.stderr.decode().strip()}")
        exported.mkdir()
        subprocess.run(["tar", "-x", "-C", str(exported)], input=archive.stdout, check=True)
    return exported / "src"


# --- reporting ----------------------------------------------------------------------------


def largest_within_target(rungs: Sequence[Rung], target: str, *, raw: bool = False) -> int:
    """The most streams at which this rung and every smaller one met the p99 target (with
    ``raw``, by the raw round trip too)."""
    largest = 0
    for rung in sorted((r for r in rungs if r.target == target), key=lambda r: r.streams):
        if not (rung.raw_within_target if raw else rung.within_target):
            break
        largest = rung.streams
    return largest


@dataclass(frozen=True, slots=True)
class Target:
    description: str
    measured: float
    passed: bool


def check_targets(rungs: Sequence[Rung], servers: Sequence[str]) -> list[Target]:
    """The targets whose servers ran."""
    exoplane = largest_within_target(rungs, TARGET)
    targets = []
    if PEER in servers:
        pipecat = largest_within_target(rungs, PEER)
        peer_ratio = exoplane / pipecat if pipecat else 0.0
        targets.append(
            Target(
                f"{TARGET} streams at p99 <= {TARGET_P99_MS:g} ms >= {PEER_RATIO:g} x {PEER}'s "
                f"({exoplane} vs {pipecat})",
                round(peer_ratio, 3),
                pipecat > 0 and peer_ratio >= PEER_RATIO,
            )
        )
    if BASELINE in servers:
        bare = largest_within_target(rungs, BASELINE)
        ratio = exoplane / bare if bare else 0.0
        targets.append(
            Target(
                f"{TARGET} streams at p99 <= {TARGET_P99_MS:g} ms >= {TARGET_RATIO} x "
                f"{BASELINE}'s ({exoplane} vs {bare})",
                round(ratio, 3),
                bare > 0 and ratio >= TARGET_RATIO,
            )
        )
    for name in servers:
        if name.startswith(AGAINST_PREFIX):
            earlier = largest_within_target(rungs, name)
            kept = exoplane / earlier if earlier else 0.0
            targets.append(
                Target(
                    f"{TARGET} streams at p99 <= {TARGET_P99_MS:g} ms >= {AGAINST_RATIO:g} x "
                    f"{name}'s ({exoplane} vs {earlier})",
                    round(kept, 3),
                    earlier > 0 and kept >= AGAINST_RATIO,
                )
            )
    targets.append(
        Target(
            f"{TARGET} streams per worker at p99 <= {TARGET_P99_MS:g} ms >= {TARGET_STREAMS}",
            exoplane,
            exoplane >= TARGET_STREAMS,
        )
    )
    return targets


def _cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def markdown_table(rungs: Sequence[Rung]) -> str:
    lines = [
        "| streams | server | frames/s in | echoes/s out | RT p50 ms | RT p99 ms | raw RT p99 ms "
        "| late p99 ms | send lag p99 ms | server CPU | client CPU | errors "
        f"| p99 <= {TARGET_P99_MS:g} ms | RT p99 of each run |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rungs:
        errors = f"**{r.errors}**" if r.errors else "0"
        runs = ", ".join(f"{p99:.2f}" for p99 in r.p99_runs_ms) if len(r.p99_runs_ms) > 1 else ""
        lines.append(
            f"| {r.streams:,} | {r.target} | {r.frames_per_s:,.0f} | {r.echoes_per_s:,.0f} "
            f"| {r.rt_p50_ms:.2f} | {r.rt_p99_ms:.2f} | {r.raw_rt_p99_ms:.2f} "
            f"| {r.late_p99_ms:.2f} | {r.send_lag_p99_ms:.2f} | {_cpu(r.server_cpu)} "
            f"| {_cpu(r.client_cpu)} | {errors} | {'yes' if r.within_target else 'no'} "
            f"| {runs} |"
        )
    return "\n".join(lines)


def target_lines(targets: Sequence[Target]) -> list[str]:
    return [
        f"{'PASS' if t.passed else 'FAIL'}: {t.description} (measured {t.measured:g})"
        for t in targets
    ]


def raw_line(rungs: Sequence[Rung], servers: Sequence[str]) -> str:
    held = ", ".join(f"{name} {largest_within_target(rungs, name, raw=True)}" for name in servers)
    return (
        f"For information: by raw RT p99 <= {TARGET_P99_MS:g} ms (pacing hold included), "
        f"the streams held: {held}"
    )


def cpu_per_stream_lines(rungs: Sequence[Rung], servers: Sequence[str]) -> list[str]:
    """Each server's CPU per stream at its capacity (the largest rung within the target)."""
    lines = []
    for name in servers:
        capacity = largest_within_target(rungs, name)
        rung = next((r for r in rungs if r.target == name and r.streams == capacity), None)
        if rung is None or rung.server_cpu is None:
            lines.append(f"{name}: capacity {capacity} streams, CPU per stream n/a")
            continue
        per_stream = rung.server_cpu / rung.streams * 100
        lines.append(
            f"{name}: capacity {capacity} streams; server CPU there {_cpu(rung.server_cpu)} "
            f"of one CPU, {per_stream:.3f}% of one CPU per stream"
        )
    return lines


def report_lines(
    rungs: Sequence[Rung], targets: Sequence[Target], servers: Sequence[str]
) -> list[str]:
    return [
        *target_lines(targets),
        raw_line(rungs, servers),
        *cpu_per_stream_lines(rungs, servers),
        *error_lines(rungs),
    ]


def error_lines(rungs: Sequence[Rung]) -> list[str]:
    return [
        f"ERRORS with {r.streams} streams on {r.target}: {r.errors} of {r.streams} streams "
        f"{r.error_kinds}"
        for r in rungs
        if r.errors
    ]


def parameters(options: argparse.Namespace) -> dict[str, Any]:
    return {
        "ladder": list(options.ladder),
        "peer_ladder": list(options.peer_ladder),
        "peer": "pipecat-ai echo (bench/media_pipecat.py): FastAPI WebSocket transport, "
        "ExotelFrameSerializer; the client closes after stop",
        "servers": list(options.servers),
        "against": options.against,
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "cooldown_s": COOLDOWN_S,
        "quick": options.quick,
        "frame": f"{FRAME_BYTES} bytes PCM16 at {SAMPLE_RATE} Hz every {FRAME_S * 1000:g} ms",
        "bot": "echo",
        "server": "uvicorn, 1 worker, access log off, log level warning",
        "database": "SQLite (default) in a fresh EXOPLANE_HOME",
        "client": "aiohttp WebSocket client, one process, uvloop if installed",
        "target_p99_ms": TARGET_P99_MS,
        "recheck_p99_ms": list(RECHECK_P99_MS),
        "runs_near_target": RUNS_NEAR_TARGET,
    }


def headline(options: argparse.Namespace, when: datetime) -> str:
    ladder = ", ".join(str(n) for n in options.ladder)
    if PEER in options.servers:
        ladder += f" ({PEER}: {', '.join(str(n) for n in options.peer_ladder)})"
    return (
        f"Media benchmark, {when:%Y-%m-%d %H:%M} UTC: echo bot on "
        f"{', '.join(options.servers)}, {ladder} streams, "
        f"{options.duration:g} s each (unmeasured: the first {options.warmup:g} s and the last "
        f"{COOLDOWN_S:g} s); "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs."
    )


def write_results(
    options: argparse.Namespace, when: datetime, rungs: Sequence[Rung], targets: Sequence[Target]
) -> None:
    document = {
        "date": when.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": parameters(options),
        "rungs": [asdict(r) | {"within_target": r.within_target} for r in rungs],
        "largest_streams_within_target": {
            name: largest_within_target(rungs, name) for name in options.servers
        },
        "largest_streams_within_target_raw": {
            name: largest_within_target(rungs, name, raw=True) for name in options.servers
        },
        "targets": [asdict(t) for t in targets],
    }
    # A run against an earlier revision answers another question: it keeps its own files.
    write_report(
        "media-against" if options.against else "media",
        document,
        headline(options, when),
        markdown_table(rungs),
        report_lines(rungs, targets, options.servers),
    )


# --- entry point --------------------------------------------------------------------------


def _servers(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"servers are {', '.join(SERVERS)}; not {', '.join(unknown) or repr(text)}"
        )
    return list(dict.fromkeys(names))


def _ladder(text: str) -> tuple[int, ...]:
    try:
        ladder = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated stream counts, not {text!r}") from None
    if not ladder or ladder[0] <= 0:
        raise argparse.ArgumentTypeError(f"stream counts must be greater than 0: {text}")
    return ladder


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--ladder",
        type=_ladder,
        default=None,
        help="comma-separated numbers of concurrent streams for the bare echo and exoplane "
        f"(default {','.join(map(str, DEFAULT_LADDER))})",
    )
    parser.add_argument(
        "--peer-ladder",
        type=_ladder,
        default=None,
        help=f"the same for {PEER} (default {','.join(map(str, DEFAULT_PEER_LADDER))})",
    )
    parser.add_argument(
        "--duration", type=_positive_float, default=None, help="seconds each stream lasts (30)"
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=None,
        help="unmeasured seconds at the start of each stream (2)",
    )
    parser.add_argument(
        "--servers",
        type=_servers,
        default=None,
        help=f"comma-separated servers to run (default {','.join(SERVERS)}); with --against, "
        f"{AGAINST_PREFIX}<revision> is added",
    )
    parser.add_argument(
        "--against",
        metavar="REVISION",
        default=None,
        help=f"also run exoplane as it was at this git revision, on the same ladder, and check "
        f"{TARGET} holds >= {AGAINST_RATIO:g} x its streams (results in media-against.*)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run: {','.join(map(str, QUICK_LADDER))} streams, "
        f"{QUICK_DURATION_S:g} s each",
    )
    options = parser.parse_args(argv)
    options.servers = list(options.servers or SERVERS)
    if options.against:
        options.servers.append(AGAINST_PREFIX + options.against)
    if TARGET not in options.servers:
        parser.error(f"--servers must include {TARGET}: every figure is about it")
    if options.ladder is None:
        options.ladder = QUICK_LADDER if options.quick else DEFAULT_LADDER
    if options.peer_ladder is None:
        options.peer_ladder = QUICK_PEER_LADDER if options.quick else DEFAULT_PEER_LADDER
    if options.duration is None:
        options.duration = QUICK_DURATION_S if options.quick else 30.0
    if options.warmup is None:
        options.warmup = QUICK_WARMUP_S if options.quick else 2.0
    if options.warmup + COOLDOWN_S >= options.duration:
        parser.error(f"--duration must be longer than --warmup plus {COOLDOWN_S:g} s")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    when = datetime.now(UTC)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="exoplane-bench-media-") as scratch,
            asyncio.Runner(loop_factory=_loop_factory()) as runner,
        ):
            rungs = runner.run(run(options, Path(scratch)))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2

    targets = check_targets(rungs, options.servers)
    print(headline(options, when))
    print()
    print(markdown_table(rungs))
    print()
    for line in report_lines(rungs, targets, options.servers):
        print(line)
    write_results(options, when, rungs, targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
