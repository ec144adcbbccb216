"""Throughput and latency of exoplane's API next to a bare Starlette app on the same server.

Run from the repository root with ``make bench`` (or ``python bench/api.py --help``). Both
targets run as child processes under uvicorn with one worker and no access log, and are put
under load one at a time by the same aiohttp client. The table goes to stdout; the results
are also written to ``bench/results/api.json`` and ``bench/results/api.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

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
TARGET_SCENARIO = "get_app"
TARGET_RATIO = 0.25
TARGET_P99_MS = 15.0

PACKAGES = ("exoplane", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp")


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


@dataclass(slots=True)
class Sample:
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0


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

    @property
    def failed(self) -> bool:
        return self.errors > 0 or self.count == 0


async def _worker(
    session: aiohttp.ClientSession, scenario: Scenario, deadline: float, sample: Sample
) -> None:
    clock = time.perf_counter
    while clock() < deadline:
        began = clock()
        failure: str | None = None
        try:
            async with session.request(
                scenario.method, scenario.url, headers=scenario.headers, data=scenario.body
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    failure = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = type(exc).__name__
        sample.latencies.append(clock() - began)
        if failure is not None:
            sample.failures[failure] += 1


async def _drive(
    session: aiohttp.ClientSession, scenario: Scenario, seconds: float, connections: int
) -> Sample:
    sample = Sample()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(_worker(session, scenario, deadline, sample) for _ in range(connections))
    )
    sample.elapsed = time.perf_counter() - started
    return sample


async def measure(scenario: Scenario, options: argparse.Namespace) -> Sample:
    """Warm up, then load ``scenario`` for the measured period through one fresh pool."""
    connector = aiohttp.TCPConnector(limit=options.connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if options.warmup > 0:
            await _drive(session, scenario, options.warmup, options.connections)
        return await _drive(session, scenario, options.duration, options.connections)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarise(name: str, sample: Sample, baseline_rps: float | None) -> Result:
    ordered = sorted(sample.latencies)
    count = len(ordered)
    rps = count / sample.elapsed if sample.elapsed > 0 else 0.0
    reference = rps if baseline_rps is None else baseline_rps
    return Result(
        scenario=name,
        count=count,
        errors=sum(sample.failures.values()),
        error_kinds=dict(sample.failures),
        seconds=round(sample.elapsed, 3),
        rps=round(rps, 1),
        p50_ms=round(_percentile(ordered, 0.50) * 1000, 3),
        p99_ms=round(_percentile(ordered, 0.99) * 1000, 3),
        mean_ms=round(sum(ordered) / count * 1000, 3) if count else 0.0,
        ratio=round(rps / reference, 3) if reference > 0 else 0.0,
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


@asynccontextmanager
async def serving(
    name: str, argv: Sequence[str], health_path: str, port: int, workdir: Path
) -> AsyncIterator[str]:
    """Run a server as a child process; yield its base URL once it is healthy."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        # The working directory is the scratch directory so that no .env file is picked up.
        process = subprocess.Popen(
            argv, cwd=workdir, env=child_env(workdir), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base_url = f"http://{HOST}:{port}"
        await _wait_until_healthy(name, process, base_url + health_path, log_path)
        yield base_url
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
    payload: Mapping[str, Any],
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
    return AppCredentials(app_id, app_secret, app_token)


def exoplane_scenarios(base_url: str, app: AppCredentials) -> list[Scenario]:
    token_body = json.dumps({"Id": app.app_id, "Secret": app.app_secret, "Entity": "app"})
    return [
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


async def _run_scenario(
    scenario: Scenario, options: argparse.Namespace, baseline_rps: float | None
) -> Result:
    print(f"measuring {scenario.name} ...", file=sys.stderr, flush=True)
    return summarise(scenario.name, await measure(scenario, options), baseline_rps)


async def run(options: argparse.Namespace, workdir: Path) -> list[Result]:
    """The baseline first, then exoplane; only one server is up at any time."""
    port = free_port()
    async with serving("bare", bare_command(port), "/", port, workdir) as base_url:
        baseline = await _run_scenario(Scenario(BASELINE, "GET", f"{base_url}/"), options, None)
    results = [baseline]

    port = free_port()
    async with serving("exoplane", exoplane_command(port), "/healthz", port, workdir) as base_url:
        app = await seed(base_url, workdir)
        for scenario in exoplane_scenarios(base_url, app):
            results.append(await _run_scenario(scenario, options, baseline.rps))
    return results


# --- reporting ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    description: str
    measured: float
    passed: bool


def check_targets(results: Sequence[Result]) -> list[Target]:
    result = next(r for r in results if r.scenario == TARGET_SCENARIO)
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
    ]


def markdown_table(results: Sequence[Result]) -> str:
    lines = [
        f"| scenario | requests/s | p50 ms | p99 ms | errors | ratio to {BASELINE} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        errors = f"**{r.errors}**" if r.failed else "0"
        lines.append(
            f"| {r.scenario} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {errors} | {r.ratio:.3f} |"
        )
    return "\n".join(lines)


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
        "client": "aiohttp, one ClientSession per scenario",
    }


def headline(options: argparse.Namespace, when: datetime) -> str:
    return (
        f"API benchmark, {when:%Y-%m-%d %H:%M} UTC: {options.connections} connections, "
        f"{options.duration:g} s per scenario after {options.warmup:g} s warm-up; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs."
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
