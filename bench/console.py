"""Server time per console page with 1,000 DIDs, 10,000 audit entries, 100,000 calls and
their 200,000 webhook deliveries.

Run from the repository root: ``.venv/bin/python bench/console.py [--requests 50]
[--postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/test]``. The app runs in this
process with its lifespan, on a fresh SQLite database (and on PostgreSQL when a URL is given),
seeded straight through SQLAlchemy (the calls, deliveries and bot streams as
``bench/stats.py`` seeds them, over the last 24 hours, one delivery in ten failed); a
rollup round then stores the day's closed hours as the worker would, the hour under way is
counted every ten seconds while the pages are measured, as the worker does, and a
signed-in super_admin requests each page in turn over ASGI (no sockets, so what is
timed is the server's work: middleware, session, queries, rendering). ``/healthz`` is
measured the same way as the baseline. Prints a markdown table and writes
``bench/results/console.json`` and ``bench/results/console.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import insert, update

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import analyze
from bench.stats import seed as seed_traffic
from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory, unit_of_work, upgrade_schema
from exoplane.models import App, AuditEntry, Did, WebhookDelivery
from exoplane.security import Vault, load_secret_key
from exoplane.stats.rollup import CURRENT_EVERY_SECONDS, roll_up, roll_up_current
from exoplane.voicebot.service import create_operator

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
DIDS = 1_000
AUDIT_ENTRIES = 10_000
# Calls of one app, each with two webhook deliveries (and one bot stream for every five).
CALLS = 100_000
TARGET_MS = 50.0
# The webhook and call pages, and the overview with its charts, read from all of those.
TRAFFIC_TARGET_MS = 100.0
PAGES = (
    "/console",
    "/console/exotel",
    "/console/dids",
    "/console/test-call",
    "/console/settings",
    "/console/audit",
    "/console/audit?action=did.",
    "/console/audit?operator=nobody@example.com",
    "/console/operators",
)
TRAFFIC_PAGES = (
    "/console",
    "/console/webhooks",
    "/console/webhooks?status=failed",
    "/console/webhooks?app=bench-app&event=call_completed&status=failed",
    "/console/webhooks?since=2000-01-01T00:00:00&until=2000-01-02T00:00:00",
    "/console/webhooks/deliveries/54321",
    "/console/calls?app=bench-app",
    "/console/calls?app=bench-app&status=busy&direction=inbound&number=%2B919812345678",
    f"/console/calls/{54321:032x}?app=bench-app",
    "/console/calls",
    "/console/calls/stream-4321",
)
BASELINE = "/healthz"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def seed(database_url: str, settings: Settings) -> tuple[str, str]:
    """1,000 DIDs (each with a bot and a flow), 10,000 audit entries; the operator."""
    engine = create_engine(database_url)
    try:
        await upgrade_schema(engine)
        async with unit_of_work(create_session_factory(engine)) as session:
            created = await create_operator(session, "bench@example.com", "super_admin")
            now = datetime.now(UTC)
            dids = [
                {
                    "id": str(uuid.uuid4()),
                    "number": f"+9180{n:08d}",
                    "label": f"Line {n}",
                    "bot_id": "echo",
                    "flow_url": f"https://my.exotel.com/acme/exoml/start_voice/{n}",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(DIDS)
            ]
            await session.execute(insert(Did), dids)
            entries = [
                {
                    "at": now - timedelta(seconds=AUDIT_ENTRIES - n),
                    "operator_id": created.operator.id,
                    "operator_email": created.operator.email,
                    "action": ("did.create", "did.update", "settings.core_fleet.update")[n % 3],
                    "target": f"dids/{n}",
                    "details": json.dumps({"n": n}),
                }
                for n in range(AUDIT_ENTRIES)
            ]
            await session.execute(insert(AuditEntry), entries)
            email, password = created.operator.email, created.password
        await seed_traffic(engine, CALLS, until=datetime.now(UTC))
        sealed = Vault(load_secret_key(settings)).encrypt("bench")
        async with engine.begin() as connection:
            failed = update(WebhookDelivery).where(WebhookDelivery.id % 10 == 0)
            await connection.execute(failed.values(status="failed"))
            # The app's Exotel credentials as the vault writes them: the server checks its
            # key against one on start.
            app = update(App).values(exotel_api_key_enc=sealed, exotel_api_token_enc=sealed)
            await connection.execute(app)
        await analyze(engine)
        # What a deployed system's worker has done by then: the last day's closed hours rolled
        # up, so the charts read them from the rollup rather than counting the day.
        await roll_up(create_session_factory(engine), settings.retention_days, everything=True)
        return email, password
    finally:
        await engine.dispose()


async def count_current_hour(settings: Settings, stopping: asyncio.Event) -> None:
    """What a deployed system's worker does while the pages are viewed: count the hour under
    way every ``CURRENT_EVERY_SECONDS``, so the charts read it from the rollup."""
    engine = create_engine(settings.database_url)
    try:
        while not stopping.is_set():
            await roll_up_current(create_session_factory(engine))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), CURRENT_EVERY_SECONDS)
    finally:
        await engine.dispose()


async def measure(settings: Settings, email: str, password: str, requests: int) -> dict[str, Any]:
    stopping = asyncio.Event()
    counting = asyncio.create_task(count_current_hour(settings, stopping))
    try:
        return await _measure(settings, email, password, requests)
    finally:
        stopping.set()
        await counting


async def _measure(settings: Settings, email: str, password: str, requests: int) -> dict[str, Any]:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            form = await client.get("/console/login")
            token = CSRF.search(form.text)
            assert token, form.text
            signed = await client.post(
                "/console/login",
                data={"email": email, "password": password, "csrf_token": token[1]},
            )
            assert signed.status_code == 303, signed.text
            results = {}
            for path in (BASELINE, *PAGES, *TRAFFIC_PAGES[1:]):
                timings, first = [], None
                for n in range(requests + 5):
                    started = time.perf_counter()
                    response = await client.get(path)
                    elapsed = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, (path, response.status_code)
                    first = elapsed if first is None else first
                    if n >= 5:  # warm-up: templates compiled, statements cached
                        timings.append(elapsed)
                timings.sort()
                results[path] = {
                    "median_ms": round(statistics.median(timings), 2),
                    "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2),
                    # The first view of a fresh process: nothing cached in it (the charts'
                    # closed hours come from the worker's rollup, rolled up after seeding).
                    "first_ms": round(first or 0.0, 2),
                    "bytes": len(response.content),
                }
            return results


async def run(backend: str, database_url: str, home: Path, requests: int) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,
        home=home,
        database_url=database_url,
        secret_key="bench-" + "k" * 40,
        log_level="error",
        rate_limit="100000000/minute",
    )
    email, password = await seed(database_url, settings)
    return {"backend": backend, "pages": await measure(settings, email, password, requests)}


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        f"Console pages with {DIDS:,} DIDs, {AUDIT_ENTRIES:,} audit entries, {CALLS:,} calls "
        f"and {2 * CALLS:,} webhook deliveries (server time over ASGI; target: median "
        f"< {TARGET_MS:g} ms, < {TRAFFIC_TARGET_MS:g} ms for the webhook and call pages and "
        "the overview with its charts; one rollup round, as the worker runs, after seeding, so "
        "the charts read the closed hours from the rollup as in a deployed system)",
        "",
        "| backend | page | median ms | p95 ms | first view ms | ratio to /healthz | KiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in runs:
        pages = result["pages"]
        base = pages[BASELINE]["median_ms"]
        for path, figures in pages.items():
            ratio = figures["median_ms"] / base if base else 0
            lines.append(
                f"| {result['backend']} | `{path}` | {figures['median_ms']:.2f} | "
                f"{figures['p95_ms']:.2f} | {figures['first_ms']:.2f} | {ratio:.1f} | "
                f"{figures['bytes'] / 1024:.0f} |"
            )

    def slowest(figure: str, paths: set[str]) -> float:
        return max(
            float(figures[figure])
            for result in runs
            for path, figures in result["pages"].items()
            if path in paths
        )

    # The first view: of a traffic page in a fresh process, the charts' hours rolled up.
    for what, figure, paths, target in (
        ("set-up page median", "median_ms", set(PAGES) - set(TRAFFIC_PAGES), TARGET_MS),
        ("traffic page median", "median_ms", set(TRAFFIC_PAGES), TRAFFIC_TARGET_MS),
        ("traffic page first view", "first_ms", set(TRAFFIC_PAGES), TRAFFIC_TARGET_MS),
    ):
        measured = slowest(figure, paths)
        verdict = "PASS" if measured < target else "FAIL"
        lines += ["", f"{verdict}: slowest {what} {measured:.2f} ms (target < {target:g} ms)"]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    parser.add_argument("--postgres-url", default="", help="also measure on this PostgreSQL")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="exoplane-bench-console-") as home:
        url = f"sqlite+aiosqlite:///{Path(home) / 'exoplane.db'}"
        runs.append(await run("sqlite", url, Path(home), args.requests))
        if args.postgres_url:
            runs.append(await _on_postgres(args.postgres_url, Path(home), args.requests))
    report = table(runs)
    print(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    machine = {"python": sys.version.split()[0], "platform": platform.platform()}
    document = {"machine": machine, "requests": args.requests, "runs": runs}
    (RESULTS_DIR / "console.json").write_text(json.dumps(document, indent=2) + "\n")
    (RESULTS_DIR / "console.md").write_text(report + "\n")


async def _on_postgres(url: str, home: Path, requests: int) -> dict[str, Any]:
    import asyncpg

    name = f"exoplane_bench_console_{uuid.uuid4().hex[:8]}"
    admin_dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    try:
        return await run("postgresql", f"{url.rpartition('/')[0]}/{name}", home, requests)
    finally:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
