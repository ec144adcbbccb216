"""End-to-end webhook delivery: Exotel's popup hook in, a signed POST out to a receiver.

Run from the repository root with ``make bench`` (after ``bench/api.py``) or
``python bench/webhooks.py --help``. exoplane runs as a child process (``exoplane serve`` with
its in-process delivery worker), once on SQLite and once on a fresh PostgreSQL database; the
receiver is an aiohttp server in this process on 127.0.0.1. The baseline is the same signed
POSTs sent straight to the same receiver. The table goes to stdout; the results are also
written to ``bench/results/webhooks.json`` and ``bench/results/webhooks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import (
    CLI_TIMEOUT_S,
    HOST,
    REQUEST_TIMEOUT_S,
    BenchError,
    _call,
    _loop_factory,
    _non_negative_float,
    _percentile,
    _positive_float,
    _positive_int,
    _stop,
    _token,
    _wait_until_healthy,
    child_env,
    exoplane_command,
    free_port,
    machine_info,
    write_report,
)
from exoplane.webhooks.signing import new_signing_secret, signature_headers

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
POLL_SECONDS = "0.05"
WEBHOOK_TIMEOUT_S = "5"
# Generated once per run: the bench's server and CLI calls share it, as a cluster does.
BENCH_SECRET_KEY = secrets.token_urlsafe(48)
DRAIN_POLL_S = 0.02

BASELINE = "direct"
TARGET_RATIO = 0.3
TARGET_P99_MS = 250.0
TARGET_P99_DATABASE = "postgres"

CALL_FROM = "09876543210"
CALL_TO = "08047491899"

clock = time.perf_counter


# --- the receiver -------------------------------------------------------------------------


@dataclass(slots=True)
class Receiver:
    """Answers every POST with 200 at once and notes when each call's webhook first came."""

    url: str = ""
    arrivals: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = clock()
        call_sid = str(json.loads(body)["call_sid"])
        if call_sid in self.arrivals:
            self.duplicates += 1
        else:
            self.arrivals[call_sid] = arrived
        return web.Response(text="ok")


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/webhook", receiver.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/webhook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


# --- offering load ------------------------------------------------------------------------

# Sends the request that makes (or is) the webhook for one call; returns the HTTP status.
Send = Callable[[aiohttp.ClientSession, str], Awaitable[int]]


@dataclass(slots=True)
class Load:
    issued: dict[str, float] = field(default_factory=dict)  # call -> when its request left
    accepted: set[str] = field(default_factory=set)  # calls whose request got a 2xx
    failures: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    ended: float = 0.0


async def _send_one(
    session: aiohttp.ClientSession, send: Send, call_sid: str, load: Load, slot: asyncio.Semaphore
) -> None:
    try:
        load.issued[call_sid] = clock()
        try:
            status = await send(session, call_sid)
        except (aiohttp.ClientError, TimeoutError) as exc:
            load.failures[type(exc).__name__] += 1
            return
        if 200 <= status < 300:
            load.accepted.add(call_sid)
        else:
            load.failures[f"HTTP {status}"] += 1
    finally:
        slot.release()


async def offer(
    send: Send, prefix: str, rate: float | None, seconds: float, connections: int
) -> Load:
    """Send one request per call for ``seconds``: ``rate`` a second on a fixed schedule, or
    as fast as ``connections`` requests in flight allow when ``rate`` is None."""
    load = Load()
    slot = asyncio.Semaphore(connections)
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        load.started = clock()
        deadline = load.started + seconds
        n = 0
        while True:
            if rate is not None:
                due = load.started + n / rate
                if due >= deadline:
                    break
                if due > clock():
                    await asyncio.sleep(due - clock())
            await slot.acquire()
            if clock() >= deadline:
                slot.release()
                break
            task = asyncio.create_task(_send_one(session, send, f"{prefix}{n:07d}", load, slot))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        load.ended = clock()
        if tasks:
            await asyncio.wait(tasks)
    return load


async def drain(receiver: Receiver, calls: set[str], seconds: float) -> None:
    """Wait until every one of ``calls`` has reached the receiver, or ``seconds`` pass."""
    pending = set(calls)
    deadline = clock() + seconds
    while pending and clock() < deadline:
        pending = {call for call in pending if call not in receiver.arrivals}
        if pending:
            await asyncio.sleep(DRAIN_POLL_S)


def hook_sender(popup_url: str) -> Send:
    """Exotel calling the popup Passthru hook: one ``incoming_call`` event per CallSid."""

    async def send(session: aiohttp.ClientSession, call_sid: str) -> int:
        params = {"CallSid": call_sid, "CallFrom": CALL_FROM, "CallTo": CALL_TO}
        async with session.get(popup_url, params=params) as response:
            await response.read()
            return response.status

    return send


def direct_sender(receiver_url: str) -> Send:
    """The baseline: the webhook itself, signed the same way, POSTed straight to the receiver."""
    secret = new_signing_secret()

    async def send(session: aiohttp.ClientSession, call_sid: str) -> int:
        event_id = "evt_" + uuid.uuid4().hex
        now = datetime.now(UTC)
        payload = {
            "event": "incoming_call",
            "call_sid": call_sid,
            "from": "+91" + CALL_FROM[1:],
            "to": "+91" + CALL_TO[1:],
            "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event_id": event_id,
        }
        body = json.dumps(payload, separators=(",", ":"))
        headers = {
            "Content-Type": "application/json",
            **signature_headers([secret], event_id, now, body),
        }
        async with session.post(receiver_url, data=body.encode(), headers=headers) as response:
            await response.read()
            return response.status

    return send


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    target: str  # "direct", "sqlite" or "postgres"
    offered: str  # "100/s", or "max" for as fast as the connections allow
    sent: int
    errors: int
    error_kinds: dict[str, int]
    delivered: int
    undelivered: int
    duplicates: int
    seconds: float
    accepted_per_s: float
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    ratio: float | None
    skipped: str | None = None

    @property
    def failed(self) -> bool:
        return self.skipped is None and (self.errors > 0 or self.undelivered > 0)


def skipped_row(name: str, target: str, offered: str, reason: str) -> Row:
    return Row(name, target, offered, 0, 0, {}, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, reason)


def summarise(
    name: str, target: str, offered: str, load: Load, receiver: Receiver, duplicates: int
) -> Row:
    """Latency is from the moment a call's request left to its webhook's arrival; delivered
    events/s counts every accepted call over the time from the first request to the last
    arrival, so it is the rate the whole pipeline sustained."""
    arrived = {call: receiver.arrivals[call] for call in load.accepted if call in receiver.arrivals}
    latencies = sorted(arrived[call] - load.issued[call] for call in arrived)
    count = len(latencies)
    span = (max(arrived.values()) - load.started) if arrived else 0.0
    window = load.ended - load.started
    return Row(
        name=name,
        target=target,
        offered=offered,
        sent=len(load.issued),
        errors=sum(load.failures.values()),
        error_kinds=dict(load.failures),
        delivered=count,
        undelivered=len(load.accepted) - count,
        duplicates=duplicates,
        seconds=round(window, 3),
        accepted_per_s=round(len(load.accepted) / window, 1) if window > 0 else 0.0,
        delivered_per_s=round(count / span, 1) if span > 0 else 0.0,
        p50_ms=round(_percentile(latencies, 0.50) * 1000, 2),
        p99_ms=round(_percentile(latencies, 0.99) * 1000, 2),
        mean_ms=round(sum(latencies) / count * 1000, 2) if count else 0.0,
        ratio=None,
    )


def with_ratios(rows: Sequence[Row]) -> list[Row]:
    """Each full-speed row's delivered events/s over the direct baseline's POSTs/s."""
    baseline = next(r for r in rows if r.target == BASELINE and r.offered == "max")
    reference = baseline.delivered_per_s
    return [
        Row(**{**asdict(r), "ratio": round(r.delivered_per_s / reference, 3)})
        if r.offered == "max" and r.skipped is None and reference > 0
        else r
        for r in rows
    ]


# --- one target: the baseline or exoplane on one database ---------------------------------


async def measure_rows(
    target: str, send: Send, receiver: Receiver, options: argparse.Namespace
) -> list[Row]:
    """Warm up, then the fixed rate, then full speed; each drained before the next."""
    rows = []
    rate_label = f"{options.rate:g}/s"
    phases: list[tuple[str, float | None, float]] = [
        ("warmup", options.rate, options.warmup),
        (rate_label, options.rate, options.duration),
        ("max", None, options.duration),
    ]
    for offered, rate, seconds in phases:
        if seconds <= 0:
            continue
        print(f"measuring {target} at {offered} ...", file=sys.stderr, flush=True)
        duplicates_before = receiver.duplicates
        prefix = f"{target[:2].upper()}{offered.split('/')[0]}-{uuid.uuid4().hex[:6]}-"
        load = await offer(send, prefix, rate, seconds, options.connections)
        await drain(receiver, load.accepted, options.drain)
        if offered != "warmup":
            duplicates = receiver.duplicates - duplicates_before
            name = f"{target} {offered}"
            rows.append(summarise(name, target, offered, load, receiver, duplicates))
    return rows


def exoplane_env(
    workdir: Path, port: int, database_url: str | None, connections: int
) -> dict[str, str]:
    env = child_env(workdir)
    env.update(
        EXOPLANE_PUBLIC_URL=f"http://{HOST}:{port}",
        EXOPLANE_ALLOW_PRIVATE_NETWORKS="true",
        EXOPLANE_WEBHOOK_CONCURRENCY=str(connections),
        EXOPLANE_WEBHOOK_POLL_SECONDS=POLL_SECONDS,
        EXOPLANE_WEBHOOK_TIMEOUT_SECONDS=WEBHOOK_TIMEOUT_S,
    )
    if database_url is not None:
        env["EXOPLANE_DATABASE_URL"] = database_url
        # PostgreSQL needs the key set; the server and the CLI calls share it.
        env["EXOPLANE_SECRET_KEY"] = BENCH_SECRET_KEY
    return env


async def _cli(workdir: Path, env: dict[str, str], *args: str) -> Any:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "exoplane", *args, "--json"),
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchError(f"`exoplane {' '.join(args)}` did not finish") from None
    if process.returncode != 0:
        raise BenchError(f"`exoplane {' '.join(args)}` failed:\n{stderr.decode().strip()}")
    return json.loads(stdout)


@asynccontextmanager
async def serving_exoplane(
    name: str, port: int, env: dict[str, str], workdir: Path
) -> AsyncIterator[str]:
    """``exoplane serve`` as a child process; yields its base URL once it is healthy."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        # The scratch directory as working directory: no .env file is picked up.
        process = subprocess.Popen(
            exoplane_command(port), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base_url = f"http://{HOST}:{port}"
        await _wait_until_healthy(name, process, base_url + "/healthz", log_path)
        yield base_url
    finally:
        # In a thread: the receiver lives on this loop and must answer while it shuts down.
        await asyncio.to_thread(_stop, process)


async def popup_hook(base_url: str, env: dict[str, str], workdir: Path, receiver_url: str) -> str:
    """A customer (by the CLI), an app sending popups to the receiver (by the API), and
    the popup Passthru URL exoplane hands out for it."""
    customer = await _cli(workdir, env, "customers", "create", "--name", "bench")
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        customer_id = str(customer["CustomerID"])
        customer_token = await _token(
            session, base_url, "customer", customer_id, str(customer["CustomerSecret"])
        )
        app = await _call(
            session,
            "POST",
            f"{base_url}/v2/integrations/app",
            {
                "AppName": "bench-webhooks",
                "ExotelAccountSid": "bench",
                "ExotelApiKey": "k",
                "ExotelApiToken": "t",
                "ExotelDomain": "mumbai",
                "IsActive": True,
            },
            authorization=customer_token,
        )
        app_id = str(app["AppID"])
        app_token = await _token(session, base_url, "app", app_id, str(app["AppSecret"]))
        app_url = f"{base_url}/v2/integrations/{customer_id}/apps/{app_id}"
        headers = {"Authorization": app_token}
        settings = {"popup_url": receiver_url}
        async with session.put(f"{app_url}/settings", json=settings, headers=headers) as response:
            if response.status != 200:
                raise BenchError(f"setting popup_url answered {response.status}")
        async with session.get(f"{app_url}/flow-urls", headers=headers) as response:
            if response.status != 200:
                raise BenchError(f"flow-urls answered {response.status}")
            urls = await response.json()
    return str(urls["data"]["passthru_urls"]["popup"])


async def exoplane_rows(
    target: str,
    database_url: str | None,
    receiver: Receiver,
    options: argparse.Namespace,
    workdir: Path,
) -> list[Row]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = exoplane_env(workdir, port, database_url, options.connections)
    if database_url is not None:
        await _cli(workdir, env, "db", "upgrade")
    async with serving_exoplane(f"exoplane-{target}", port, env, workdir) as base_url:
        hook = await popup_hook(base_url, env, workdir, receiver.url)
        return await measure_rows(target, hook_sender(hook), receiver, options)


# --- PostgreSQL: a database of its own for the run ----------------------------------------


class PostgresUnavailable(Exception):
    pass


@asynccontextmanager
async def fresh_postgres(url: str) -> AsyncIterator[str]:
    """Create an empty database beside the one ``url`` names; drop it afterwards."""
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"exoplane_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        connection = await asyncpg.connect(admin, timeout=5)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise PostgresUnavailable(f"PostgreSQL unavailable ({type(exc).__name__})") from exc
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        connection = await asyncpg.connect(admin, timeout=5)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


async def postgres_rows(
    receiver: Receiver, options: argparse.Namespace, workdir: Path
) -> list[Row]:
    try:
        async with fresh_postgres(options.postgres_url) as database_url:
            return await exoplane_rows("postgres", database_url, receiver, options, workdir)
    except PostgresUnavailable as exc:
        print(f"skipping postgres: {exc}", file=sys.stderr, flush=True)
        rate_label = f"{options.rate:g}/s"
        return [
            skipped_row(f"postgres {offered}", "postgres", offered, str(exc))
            for offered in (rate_label, "max")
        ]


# --- the run ------------------------------------------------------------------------------


async def run(options: argparse.Namespace, workdir: Path) -> list[Row]:
    """The baseline, then exoplane on SQLite, then on PostgreSQL; one server at a time."""
    async with receiving() as receiver:
        rows = await measure_rows(BASELINE, direct_sender(receiver.url), receiver, options)
        rows += await exoplane_rows("sqlite", None, receiver, options, workdir / "sqlite")
        rows += await postgres_rows(receiver, options, workdir / "postgres")
    return with_ratios(rows)


# --- reporting ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    description: str
    measured: float | None
    passed: bool | None  # None: not measured (the row was skipped)


def check_targets(rows: Sequence[Row], options: argparse.Namespace) -> list[Target]:
    targets = []
    for r in rows:
        if r.target != BASELINE and r.offered == "max":
            targets.append(
                Target(
                    f"{r.target} delivered events/s >= {TARGET_RATIO} x {BASELINE} POSTs/s",
                    r.ratio,
                    None if r.ratio is None else r.ratio >= TARGET_RATIO,
                )
            )
    rate_label = f"{options.rate:g}/s"
    fixed = next(r for r in rows if r.target == TARGET_P99_DATABASE and r.offered == rate_label)
    targets.append(
        Target(
            f"{TARGET_P99_DATABASE} p99 <= {TARGET_P99_MS:g} ms at {rate_label}",
            None if fixed.skipped else fixed.p99_ms,
            None if fixed.skipped else fixed.p99_ms <= TARGET_P99_MS,
        )
    )
    return targets


def markdown_table(rows: Sequence[Row]) -> str:
    lines = [
        "| run | offered | sent/s | delivered/s | p50 ms | p99 ms | undelivered | errors "
        f"| ratio to {BASELINE} max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.skipped is not None:
            lines.append(f"| {r.name} | {r.offered} | skipped: {r.skipped} | | | | | | |")
            continue
        undelivered = f"**{r.undelivered}**" if r.undelivered else "0"
        errors = f"**{r.errors}**" if r.errors else "0"
        ratio = f"{r.ratio:.3f}" if r.ratio is not None else ""
        lines.append(
            f"| {r.name} | {r.offered} | {r.accepted_per_s:,.0f} | {r.delivered_per_s:,.0f} "
            f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {undelivered} | {errors} | {ratio} |"
        )
    return "\n".join(lines)


def target_lines(targets: Sequence[Target]) -> list[str]:
    lines = []
    for t in targets:
        verdict = "SKIPPED" if t.passed is None else "PASS" if t.passed else "FAIL"
        measured = "not measured" if t.measured is None else f"measured {t.measured:g}"
        lines.append(f"{verdict}: {t.description} ({measured})")
    return lines


def error_lines(rows: Sequence[Row]) -> list[str]:
    return [
        f"ERRORS in {r.name}: {r.errors} of {r.sent} requests failed {r.error_kinds}, "
        f"{r.undelivered} accepted events not delivered within the drain time"
        for r in rows
        if r.failed
    ]


def parameters(options: argparse.Namespace) -> dict[str, Any]:
    return {
        "rate_per_s": options.rate,
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "drain_s": options.drain,
        "connections": options.connections,
        "server": "exoplane serve (uvicorn, 1 worker) with its in-process webhook worker",
        "webhook_settings": {
            "EXOPLANE_WEBHOOK_CONCURRENCY": options.connections,
            "EXOPLANE_WEBHOOK_POLL_SECONDS": POLL_SECONDS,
            "EXOPLANE_WEBHOOK_TIMEOUT_SECONDS": WEBHOOK_TIMEOUT_S,
        },
        "databases": "SQLite in a fresh EXOPLANE_HOME; a fresh PostgreSQL database",
        "receiver": "aiohttp in the benchmark process on 127.0.0.1, answers 200 at once",
        "baseline": "the same signed POSTs sent straight to the receiver with aiohttp",
        "latency": "from the request leaving the client to the webhook's arrival",
    }


def headline(options: argparse.Namespace, when: datetime) -> str:
    return (
        f"Webhook benchmark, {when:%Y-%m-%d %H:%M} UTC: {options.rate:g} events/s and full "
        f"speed over {options.connections} connections, {options.duration:g} s each after "
        f"{options.warmup:g} s warm-up; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs."
    )


def write_results(
    options: argparse.Namespace, when: datetime, rows: Sequence[Row], targets: Sequence[Target]
) -> None:
    document = {
        "date": when.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": parameters(options),
        "rows": [asdict(r) for r in rows],
        "targets": [asdict(t) for t in targets],
    }
    write_report(
        "webhooks",
        document,
        headline(options, when),
        markdown_table(rows),
        [*target_lines(targets), *error_lines(rows)],
    )


# --- entry point --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rate", type=_positive_float, default=100.0, help="offered events/s of the fixed run"
    )
    parser.add_argument(
        "--duration", type=_positive_float, default=10.0, help="measured seconds per run"
    )
    parser.add_argument(
        "--warmup", type=_non_negative_float, default=2.0, help="unmeasured seconds before"
    )
    parser.add_argument(
        "--drain",
        type=_positive_float,
        default=60.0,
        help="at most this many seconds to wait for outstanding webhooks after each run",
    )
    parser.add_argument(
        "--connections", type=_positive_int, default=64, help="requests in flight at most"
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="a PostgreSQL server (SQLAlchemy URL); a fresh database is made beside it",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    when = datetime.now(UTC)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="exoplane-bench-webhooks-") as scratch,
            asyncio.Runner(loop_factory=_loop_factory()) as runner,
        ):
            rows = runner.run(run(options, Path(scratch)))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2

    targets = check_targets(rows, options)
    print(headline(options, when))
    print()
    print(markdown_table(rows))
    print()
    for line in [*target_lines(targets), *error_lines(rows)]:
        print(line)
    write_results(options, when, rows, targets)
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
