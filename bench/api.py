"""Throughput and latency of exoplane's API next to a bare Starlette app on the same server.

Run from the repository root with ``make bench`` (or ``python bench/api.py --help``). Both
targets run as child processes under uvicorn with one worker and no access log, and are put
under load one at a time by wrk (one thread, ``bench/wrk.lua``), the server pinned to one CPU
and wrk to another where there are two, so that the load generator is not what limits the
rate; each row says how much CPU each side used. The table goes to stdout; the results are
also written to ``bench/results/api.json`` and ``bench/results/api.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
HOST = "127.0.0.1"

RATE_LIMIT = "100000000/minute"
LOG_LEVEL = "warning"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
CLI_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 2000

BASELINE = "bare"
BENCH_USER = "agent@example.com"
TARGET_SCENARIO = "get_app"
TARGET_RATIO = 0.25
TARGET_P99_MS = 15.0
TOKEN_SCENARIO = "post_token"
TOKEN_RATIO = 0.3

PACKAGES = (
    "exoplane",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "aiohttp",
    "pipecat-ai",
)


class BenchError(Exception):
    """The benchmark could not be run: a server did not start or could not be seeded."""


# --- measurement --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    fresh: str | None = None  # a query parameter given a value new to every request


@dataclass(frozen=True, slots=True)
class Sample:
    """What wrk measured, and the CPU both sides used meanwhile."""

    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    mean_ms: float
    server_cpu: float | None  # CPU seconds per second of the run: 1.0 is one CPU kept busy
    client_cpu: float
    # How busy the CPUs they were pinned to were, with every process on them: on a shared
    # machine another process can take a CPU the server or wrk then cannot use.
    server_cpu_busy: float | None
    client_cpu_busy: float | None


@dataclass(frozen=True, slots=True)
class Result:
    scenario: str
    count: int
    errors: int
    error_kinds: dict[str, int]
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    ratio: float
    server_cpu: float | None
    client_cpu: float
    server_cpu_busy: float | None
    client_cpu_busy: float | None
    saturated: str

    @property
    def failed(self) -> bool:
        return self.errors > 0 or self.count == 0


# A side whose CPU use is at least this share of one CPU is taken as the one that limits.
SATURATED = 0.9
# wrk's result line, written by bench/wrk.lua's done().
RESULT_PREFIX = "BENCH-RESULT "
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
WRK_MISSING = (
    "wrk is not installed: `make bench` installs Debian's package `wrk` when it is missing "
    "(or run `apt-get install wrk`)"
)


def _cpus() -> tuple[str, str] | None:
    """The CPUs the server and wrk are pinned to, or None on a machine with fewer than two
    CPUs available to this process."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(available) < 2 or shutil.which("taskset") is None:
        return None
    return str(available[0]), str(available[1])


def pinned(argv: Sequence[str], side: int) -> list[str]:
    """``argv`` run on its own CPU (``side`` 0 for the server, 1 for wrk) where there are
    two; as it is otherwise."""
    cpus = _cpus()
    return list(argv) if cpus is None else ["taskset", "-c", cpus[side], *argv]


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process so far, where /proc says (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_times() -> dict[str, tuple[int, int]]:
    """Busy and total jiffies of each CPU so far, from /proc/stat (Linux); empty elsewhere."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    times = {}
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(value) for value in values[:8]]
            idle = ticks[3] + ticks[4]  # idle and iowait
            times[name.removeprefix("cpu")] = (sum(ticks) - idle, sum(ticks))
    return times


def _busy(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], side: int
) -> float | None:
    cpus = _cpus()
    if cpus is None or cpus[side] not in before or cpus[side] not in after:
        return None
    busy = after[cpus[side]][0] - before[cpus[side]][0]
    total = after[cpus[side]][1] - before[cpus[side]][1]
    return busy / total if total > 0 else None


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_command(scenario: Scenario, seconds: float, connections: int) -> list[str]:
    # One wrk thread: wrk gets one CPU, as the server does.
    timeout = f"{REQUEST_TIMEOUT_S:g}s"
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", f"--timeout={timeout}"]
    return pinned([*argv, "-s", str(WRK_SCRIPT), scenario.url], 1)


def wrk_env(scenario: Scenario) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENCH_METHOD=scenario.method,
        BENCH_BODY=(scenario.body or b"").decode(),
        BENCH_HEADERS="\n".join(f"{name}: {value}" for name, value in scenario.headers.items()),
    )
    env.pop("BENCH_FRESH", None)
    if scenario.fresh:
        env.update(BENCH_FRESH=scenario.fresh, BENCH_RUN=uuid.uuid4().hex[:12])
    return env


def _wrk(scenario: Scenario, seconds: float, connections: int, server_pid: int) -> Sample:
    """One run of wrk; the server's CPU from /proc, wrk's from its resource usage."""
    server_before, client_before = _cpu_seconds(server_pid), _children_cpu_seconds()
    cpus_before = _cpu_times()
    started = time.perf_counter()
    completed = subprocess.run(
        wrk_command(scenario, seconds, connections),
        env=wrk_env(scenario),
        capture_output=True,
        text=True,
        timeout=seconds + REQUEST_TIMEOUT_S + STOP_TIMEOUT_S,
        check=False,
    )
    wall = time.perf_counter() - started
    server_after, client_after = _cpu_seconds(server_pid), _children_cpu_seconds()
    cpus_after = _cpu_times()
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise BenchError(
            f"wrk failed on {scenario.name} (exit {completed.returncode}):\n"
            f"{(completed.stderr or completed.stdout)[-LOG_TAIL_CHARS:]}"
        )
    found = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    errors = {
        kind: int(found[f"{kind}_errors"])
        for kind in ("connect", "read", "write", "status")
        if found[f"{kind}_errors"]
    }
    if found["timeouts"]:
        errors["timeout"] = int(found["timeouts"])
    server_cpu = (
        None
        if server_before is None or server_after is None
        else (server_after - server_before) / wall
    )
    return Sample(
        requests=int(found["requests"]),
        seconds=found["duration_us"] / 1e6,
        errors=errors,
        p50_ms=found["p50_us"] / 1000,
        p99_ms=found["p99_us"] / 1000,
        mean_ms=found["mean_us"] / 1000,
        server_cpu=server_cpu,
        client_cpu=(client_after - client_before) / wall,
        server_cpu_busy=_busy(cpus_before, cpus_after, 0),
        client_cpu_busy=_busy(cpus_before, cpus_after, 1),
    )


def measure(scenario: Scenario, options: argparse.Namespace, server_pid: int) -> Sample:
    """Warm up, then load ``scenario`` for the measured period, each a run of wrk."""
    if options.warmup > 0:
        _wrk(scenario, options.warmup, options.connections, server_pid)
    return _wrk(scenario, options.duration, options.connections, server_pid)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def saturated_side(sample: Sample) -> str:
    """Which side's CPU limited the run: ``server``, ``wrk``, ``both`` or ``neither``; with
    "(CPU shared)" when that side used less than its CPU but other processes took the rest."""

    def full(own: float | None, busy: float | None) -> str | None:
        if own is not None and own >= SATURATED:
            return ""
        if busy is not None and busy >= SATURATED:
            return " (CPU shared)"
        return None

    server = full(sample.server_cpu, sample.server_cpu_busy)
    client = full(sample.client_cpu, sample.client_cpu_busy)
    if server is not None and client is not None:
        return f"both: server{server}, wrk{client}"
    if server is not None:
        return "server" + server
    if client is not None:
        return "wrk" + client
    return "neither"


def _share(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summarise(name: str, sample: Sample, baseline_rps: float | None) -> Result:
    rps = sample.requests / sample.seconds if sample.seconds > 0 else 0.0
    reference = rps if baseline_rps is None else baseline_rps
    return Result(
        scenario=name,
        count=sample.requests,
        errors=sum(sample.errors.values()),
        error_kinds=dict(sample.errors),
        seconds=round(sample.seconds, 3),
        rps=round(rps, 1),
        p50_ms=round(sample.p50_ms, 3),
        p99_ms=round(sample.p99_ms, 3),
        mean_ms=round(sample.mean_ms, 3),
        ratio=round(rps / reference, 3) if reference > 0 else 0.0,
        server_cpu=_share(sample.server_cpu),
        client_cpu=round(sample.client_cpu, 2),
        server_cpu_busy=_share(sample.server_cpu_busy),
        client_cpu_busy=_share(sample.client_cpu_busy),
        saturated=saturated_side(sample),
    )


# --- child processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(workdir: Path) -> dict[str, str]:
    # Inherited settings (a database URL, Redis, uvicorn's worker count) would change what
    # is measured.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("EXOPLANE_", "UVICORN_")) and key != "WEB_CONCURRENCY"
    }
    env.update(
        EXOPLANE_HOME=str(workdir / "home"),
        EXOPLANE_RATE_LIMIT=RATE_LIMIT,
        EXOPLANE_LOG_LEVEL=LOG_LEVEL,
    )
    return env


def _log_tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-LOG_TAIL_CHARS:].strip() or "(no output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _wait_until_healthy(
    name: str, process: subprocess.Popen[bytes], url: str, log_path: Path
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(
                    f"{name} exited with code {process.returncode} while starting:\n"
                    f"{_log_tail(log_path)}"
                )
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise BenchError(
        f"{name} did not answer {url} within {STARTUP_TIMEOUT_S:.0f} s:\n{_log_tail(log_path)}"
    )


@dataclass(frozen=True, slots=True)
class Server:
    url: str  # the base URL
    pid: int


@asynccontextmanager
async def serving(
    name: str, argv: Sequence[str], health_path: str, port: int, workdir: Path
) -> AsyncIterator[Server]:
    """Run a server as a child process, on the server's CPU; yield it once it is healthy."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        # The working directory is the scratch directory so that no .env file is picked up.
        # taskset execs the server, so the pid is the server's own.
        process = subprocess.Popen(
            pinned(argv, 0),
            cwd=workdir,
            env=child_env(workdir),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://{HOST}:{port}"
        await _wait_until_healthy(name, process, base_url + health_path, log_path)
        yield Server(base_url, process.pid)
    finally:
        _stop(process)


def bare_command(port: int, app: str = "bench.bare_app:app") -> list[str]:
    # The same settings `exoplane serve` passes to uvicorn.run().
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--app-dir",
        str(REPO_ROOT),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--no-proxy-headers",
        "--log-level",
        LOG_LEVEL,
    ]


def exoplane_command(port: int) -> list[str]:
    return [sys.executable, "-m", "exoplane", "serve", "--host", HOST, "--port", str(port)]


# --- seeding through the public interfaces ------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppCredentials:
    app_id: str
    app_secret: str
    token: str
    user_id: str  # a mapped user's AppUserId
    popup_hook: str  # the app's popup Passthru URL


async def _create_customer(workdir: Path) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "exoplane", "customers", "create", "--name", "bench", "--json"),
        cwd=workdir,
        env=child_env(workdir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    if process.returncode != 0:
        raise BenchError(f"`exoplane customers create` failed:\n{stderr.decode().strip()}")
    created = json.loads(stdout)
    return str(created["CustomerID"]), str(created["CustomerSecret"])


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    authorization: str | None = None,
) -> Any:
    """Call an Exotel-style endpoint and return the ``Data`` of its envelope."""
    headers = {"Authorization": authorization} if authorization else {}
    async with session.request(method, url, json=payload, headers=headers) as response:
        text = await response.text()
        if response.status != 200:
            raise BenchError(f"{method} {url} answered {response.status}: {text}")
    return json.loads(text)["Data"]


async def _token(
    session: aiohttp.ClientSession, base_url: str, entity: str, ident: str, secret: str
) -> str:
    payload = {"Id": ident, "Secret": secret, "Entity": entity}
    token = await _call(session, "POST", f"{base_url}/v2/integrations/token", payload)
    return str(token)


async def seed(base_url: str, workdir: Path) -> AppCredentials:
    """A customer (by the CLI), then an app and an app token (by the API)."""
    customer_id, customer_secret = await _create_customer(workdir)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        customer_token = await _token(session, base_url, "customer", customer_id, customer_secret)
        app = await _call(
            session,
            "POST",
            f"{base_url}/v2/integrations/app",
            {
                "AppName": "bench",
                "ExotelAccountSid": "bench",
                "ExotelApiKey": "k",
                "ExotelApiToken": "t",
                "ExotelDomain": "mumbai",
                "IsActive": True,
            },
            authorization=customer_token,
        )
        app_id, app_secret = str(app["AppID"]), str(app["AppSecret"])
        app_token = await _token(session, base_url, "app", app_id, app_secret)
        await _call(
            session,
            "POST",
            f"{base_url}/v2/integrations/usermapping",
            [
                {
                    "AppUserId": BENCH_USER,
                    "AppUsername": "Bench Agent",
                    "Email": BENCH_USER,
                    "ExotelAccountSid": "bench",
                    "ExotelUserName": "Bench Agent",
                    "AgentNumber": "09876000001",
                    "VirtualNumber": "08047491899",
                }
            ],
            authorization=app_token,
        )
        flow_urls = f"{base_url}/v2/integrations/{customer_id}/apps/{app_id}/flow-urls"
        async with session.get(flow_urls, headers={"Authorization": app_token}) as response:
            if response.status != 200:
                raise BenchError(f"GET {flow_urls} answered {response.status}")
            popup = str((await response.json())["data"]["passthru_urls"]["popup"])
    return AppCredentials(app_id, app_secret, app_token, BENCH_USER, popup)


def exoplane_scenarios(base_url: str, app: AppCredentials) -> list[Scenario]:
    token_body = json.dumps({"Id": app.app_id, "Secret": app.app_secret, "Entity": "app"})
    separator = "&" if "?" in app.popup_hook else "?"
    # Exotel's popup Passthru: a GET with the call's parameters, a new CallSid each time.
    hook = f"{app.popup_hook}{separator}CallFrom=09876543210&CallTo=08047491899"
    return [
        Scenario(
            "get_usermapping",
            "GET",
            f"{base_url}/v2/integrations/usermapping?{urlencode({'user_id': app.user_id})}",
            headers={"Authorization": app.token},
        ),
        Scenario("passthru_popup", "GET", hook, fresh="CallSid"),
        Scenario(
            "get_app",
            "GET",
            f"{base_url}/v2/integrations/app",
            headers={"Authorization": app.token},
        ),
        Scenario(
            "post_token",
            "POST",
            f"{base_url}/v2/integrations/token",
            headers={"Content-Type": "application/json"},
            body=token_body.encode(),
        ),
    ]


# --- the run ------------------------------------------------------------------------------


def _run_scenario(
    scenario: Scenario, options: argparse.Namespace, server: Server, baseline_rps: float | None
) -> Result:
    print(f"measuring {scenario.name} ...", file=sys.stderr, flush=True)
    return summarise(scenario.name, measure(scenario, options, server.pid), baseline_rps)


async def run(options: argparse.Namespace, workdir: Path) -> list[Result]:
    """The baseline first, then exoplane; only one server is up at any time. wrk runs while
    the event loop waits: nothing else happens in this process meanwhile."""
    port = free_port()
    async with serving("bare", bare_command(port), "/", port, workdir) as server:
        bare = Scenario(BASELINE, "GET", f"{server.url}/")
        baseline = _run_scenario(bare, options, server, None)
    results = [baseline]

    port = free_port()
    async with serving("exoplane", exoplane_command(port), "/healthz", port, workdir) as server:
        app = await seed(server.url, workdir)
        for scenario in exoplane_scenarios(server.url, app):
            results.append(_run_scenario(scenario, options, server, baseline.rps))
    return results


# --- reporting ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    description: str
    measured: float
    passed: bool


def check_targets(results: Sequence[Result]) -> list[Target]:
    result = next(r for r in results if r.scenario == TARGET_SCENARIO)
    token = next(r for r in results if r.scenario == TOKEN_SCENARIO)
    return [
        Target(
            f"{TARGET_SCENARIO} requests/s >= {TARGET_RATIO} x {BASELINE}",
            result.ratio,
            result.ratio >= TARGET_RATIO,
        ),
        Target(
            f"{TARGET_SCENARIO} p99 <= {TARGET_P99_MS:g} ms",
            result.p99_ms,
            result.p99_ms <= TARGET_P99_MS,
        ),
        Target(
            f"{TOKEN_SCENARIO} requests/s >= {TOKEN_RATIO} x {BASELINE}",
            token.ratio,
            token.ratio >= TOKEN_RATIO,
        ),
    ]


def _cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def markdown_table(results: Sequence[Result]) -> str:
    lines = [
        f"| scenario | requests/s | p50 ms | p99 ms | errors | ratio to {BASELINE} "
        "| server CPU | wrk CPU | server's CPU busy | wrk's CPU busy | saturated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        errors = f"**{r.errors}**" if r.failed else "0"
        lines.append(
            f"| {r.scenario} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {errors} | {r.ratio:.3f} | {_cpu(r.server_cpu)} | {_cpu(r.client_cpu)} "
            f"| {_cpu(r.server_cpu_busy)} | {_cpu(r.client_cpu_busy)} | {r.saturated} |"
        )
    return "\n".join(lines)


def pinning_line() -> str:
    cpus = _cpus()
    if cpus is None:
        return "server and wrk NOT pinned (fewer than two CPUs, or no taskset): shared CPUs"
    return f"server pinned to CPU {cpus[0]}, wrk (one thread) to CPU {cpus[1]}"


def target_lines(targets: Sequence[Target]) -> list[str]:
    return [
        f"{'PASS' if t.passed else 'FAIL'}: {t.description} (measured {t.measured:g})"
        for t in targets
    ]


def error_lines(results: Sequence[Result]) -> list[str]:
    return [
        f"ERRORS in {r.scenario}: {r.errors} of {r.count} requests failed {r.error_kinds}"
        for r in results
        if r.failed
    ]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def parameters(options: argparse.Namespace) -> dict[str, Any]:
    return {
        "duration_s": options.duration,
        "warmup_s": options.warmup,
        "connections": options.connections,
        "server": "uvicorn, 1 worker, access log off, log level warning",
        "database": "SQLite (default) in a fresh EXOPLANE_HOME",
        "rate_limit": RATE_LIMIT,
        "client": "wrk, one thread, bench/wrk.lua",
        "pinning": pinning_line(),
        "wrk": _wrk_version(),
    }


def _wrk_version() -> str | None:
    try:
        completed = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    first = (completed.stdout or completed.stderr).strip().splitlines()
    return first[0] if first else None


def headline(options: argparse.Namespace, when: datetime) -> str:
    return (
        f"API benchmark, {when:%Y-%m-%d %H:%M} UTC: wrk, {options.connections} connections, "
        f"{options.duration:g} s per scenario after {options.warmup:g} s warm-up; "
        f"{pinning_line()}; Python {platform.python_version()}, {os.cpu_count()} CPUs."
    )


def write_results(
    options: argparse.Namespace,
    when: datetime,
    results: Sequence[Result],
    targets: Sequence[Target],
) -> None:
    document = {
        "date": when.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": parameters(options),
        "scenarios": [asdict(r) for r in results],
        "targets": [asdict(t) for t in targets],
    }
    write_report(
        "api",
        document,
        headline(options, when),
        markdown_table(results),
        [*target_lines(targets), *error_lines(results)],
    )


def write_report(
    name: str, document: dict[str, Any], headline: str, table: str, notes: Sequence[str]
) -> None:
    """``bench/results/<name>.json`` and ``<name>.md``: the table, then a line per note."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    markdown = [headline, "", table, "", *(f"- {line}" for line in notes)]
    (RESULTS_DIR / f"{name}.md").write_text("\n".join(markdown) + "\n")


# --- entry point --------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--duration", type=_positive_float, default=10.0, help="measured seconds per scenario"
    )
    parser.add_argument(
        "--warmup", type=_non_negative_float, default=2.0, help="unmeasured seconds before each"
    )
    parser.add_argument(
        "--connections", type=_positive_int, default=64, help="concurrent connections"
    )
    return parser.parse_args(argv)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # The client shares the machine with the server; uvloop keeps it from being the
    # bottleneck when the baseline is fast.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if shutil.which("wrk") is None:
        print(f"benchmark failed: {WRK_MISSING}", file=sys.stderr)
        return 2
    when = datetime.now(UTC)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="exoplane-bench-") as scratch,
            asyncio.Runner(loop_factory=_loop_factory()) as runner,
        ):
            results = runner.run(run(options, Path(scratch)))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2

    targets = check_targets(results)
    print(headline(options, when))
    print()
    print(markdown_table(results))
    print()
    for line in [*target_lines(targets), *error_lines(results)]:
        print(line)
    write_results(options, when, results, targets)
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
