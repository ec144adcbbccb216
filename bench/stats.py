"""``GET /api/v1/stats`` on 100,000 calls: how long the statistics take, with and without the
indexes of migration 0010.

Run from the repository root: ``python bench/stats.py --help``. It is not part of
``make bench`` (seeding takes minutes). For SQLite (a fresh file) and PostgreSQL (a fresh
database beside ``--postgres-url``) in turn it migrates the schema, seeds ``--calls`` calls of
the last 24 hours, each with its timeline (four steps) and two webhook deliveries (a tenth of
them retried twice), and a fifth as many voice-bot streams with their steps; then it times the
stats service's query of the last 24 hours by hour (``--repeat`` times, after one warm-up), drops
the 0010 indexes, and times it again. The table goes to stdout and to ``bench/results/stats.md``
and ``stats.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

if __package__ in (None, ""):  # run as a script: make the ``bench`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import machine_info, write_report
from bench.webhooks import DEFAULT_POSTGRES_URL, PostgresUnavailable, fresh_postgres
from exoplane.db import create_engine, create_session_factory, unit_of_work, upgrade_schema
from exoplane.integrations.service import create_customer
from exoplane.models import App, Call, CallEvent, WebhookAttempt, WebhookDelivery, WebhookEvent
from exoplane.security import Vault
from exoplane.stats import repository, service

INDEXES = (
    "ix_calls_started_status",
    "ix_webhook_deliveries_queued_status",
    "ix_webhook_attempts_made_latency",
    "ix_call_events_kind_at",
)
STATUSES = (
    (["completed"] * 60 + ["missed"] * 15 + ["no-answer"] * 5 + ["busy"] * 5 + ["failed"] * 5)
    + ["canceled"] * 5
    + ["in-progress"] * 5
)
BATCH = 5000


@dataclass
class Row:
    backend: str
    indexes: str
    median_ms: float
    min_ms: float
    max_ms: float
    rows: dict[str, int]
    series: dict[str, float] = field(default_factory=dict)


async def _insert(engine: AsyncEngine, model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        async with engine.begin() as connection:
            await connection.execute(insert(model), rows[start : start + BATCH])


async def seed(engine: AsyncEngine, calls: int, until: datetime) -> dict[str, int]:
    """``calls`` calls spread over the 24 hours before ``until``, with their steps and
    webhooks, and ``calls // 5`` bot streams; how many rows of each table."""
    rng = random.Random(7)
    sessions = create_session_factory(engine)
    async with unit_of_work(sessions) as session:
        # Its secret is never used, so any key will do.
        customer, _ = await create_customer(session, Vault(secrets.token_bytes(32)), "Bench")
        app = App(
            id="bench-app",
            customer_id=customer.id,
            name="Bench",
            exotel_account_sid="bench",
            exotel_api_key_enc="-",
            exotel_api_token_enc="-",
            exotel_domain="mumbai",
            is_active=True,
            secret_hash="-",
        )
        session.add(app)
    span = 24 * 3600
    call_rows, steps, events, deliveries, attempts = [], [], [], [], []
    delivery_id = attempt_id = 0
    for n in range(calls):
        at = until - timedelta(seconds=rng.uniform(0, span))
        sid = f"{n:032x}"
        status = rng.choice(STATUSES)
        call_rows.append(
            {
                "id": f"call-{n}",
                "app_id": app.id,
                "call_sid": sid,
                "direction": "inbound",
                "from_number": "+919812345678",
                "to_number": "+919876500013",
                "status": status,
                "created_at": at,
                "updated_at": at,
            }
        )
        for offset, kind, detail in (
            (0, "hook_received", {"type": "popup"}),
            (0.02, "routing_answered", {"destinations": ["+919876500013"]}),
            (30, "hook_received", {"type": "incomingcallhungup"}),
            (30.05, "hook_received", {"type": "incomingcallhungup"}),
        ):
            steps.append(_step(app.id, sid, kind, detail, at + timedelta(seconds=offset)))
        for k, event_type in enumerate(("incoming_call", "call_completed")):
            queued = at + timedelta(seconds=30 * k)
            event_id = f"evt-{n}-{k}"
            events.append(
                {
                    "id": event_id,
                    "app_id": app.id,
                    "call_sid": sid,
                    "type": event_type,
                    "payload": "{}",
                    "created_at": queued,
                }
            )
            tries = 3 if rng.random() < 0.1 else 1
            delivery_id += 1
            deliveries.append(
                {
                    "id": delivery_id,
                    "event_id": event_id,
                    "app_id": app.id,
                    "event_type": event_type,
                    "url": "https://example.com/hook",
                    "status": "succeeded",
                    "attempts": tries,
                    "next_attempt_at": queued,
                    "created_at": queued,
                    "updated_at": queued,
                }
            )
            for number in range(1, tries + 1):
                attempt_id += 1
                attempts.append(
                    {
                        "id": attempt_id,
                        "delivery_id": delivery_id,
                        "number": number,
                        "status_code": 200 if number == tries else 503,
                        "latency_ms": max(1, round(rng.lognormvariate(3, 0.6))),
                        "created_at": queued + timedelta(seconds=number),
                    }
                )
    for n in range(calls // 5):
        at = until - timedelta(seconds=rng.uniform(0, span))
        sid = f"stream-{n}"
        after = max(1, round(rng.lognormvariate(5.5, 0.4)))
        stream: list[tuple[float, str, dict[str, Any]]] = [
            (0, "stream_handshake", {"bot_id": "echo", "sample_rate": 8000}),
            (0.001, "stream_connected", {}),
            (0.002, "stream_start", {"bot_id": "echo", "from": "+919812345678"}),
            (0.1, "first_inbound_media", {}),
            (0.002 + after / 1000, "first_outbound_media", {"after_start_ms": after}),
            (20, "stream_stop", {"reason": "callended"}),
            (20.01, "stream_closed", {"code": 1000, "reason": "stream ended"}),
        ]
        for offset, kind, detail in stream:
            steps.append(_step(None, sid, kind, detail, at + timedelta(seconds=offset)))
    await _insert(engine, Call, call_rows)
    await _insert(engine, CallEvent, steps)
    await _insert(engine, WebhookEvent, events)
    await _insert(engine, WebhookDelivery, deliveries)
    await _insert(engine, WebhookAttempt, attempts)
    return {
        "calls": len(call_rows),
        "call_events": len(steps),
        "webhook_deliveries": len(deliveries),
        "webhook_attempts": len(attempts),
    }


def _step(
    app_id: str | None, sid: str, kind: str, detail: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "call_sid": sid,
        "kind": kind,
        "detail": orjson.dumps(detail).decode(),
        "at": at,
    }


async def timed(engine: AsyncEngine, until: datetime, repeat: int) -> list[float]:
    sessions = create_session_factory(engine)
    chosen = service.window(None, until, "hour")
    times = []
    for n in range(repeat + 1):
        async with sessions() as session:
            started = time.perf_counter()
            buckets = await service.stats(session, chosen)
            elapsed = (time.perf_counter() - started) * 1000
        assert len(buckets) == 24
        if n:  # the first is a warm-up
            times.append(elapsed)
    return times


async def breakdown(engine: AsyncEngine, until: datetime) -> dict[str, float]:
    """Milliseconds of each series' query, once each (after the timed runs warmed up)."""
    sessions = create_session_factory(engine)
    chosen = service.window(None, until, "hour")
    since, width = chosen.since, chosen.width
    series: dict[str, Callable[[AsyncSession], Awaitable[repository.Counts]]] = {
        "deliveries": lambda s: repository.deliveries_by_status(s, since, until, width),
        "attempt latencies": lambda s: repository.attempt_latencies(s, since, until, width),
        "calls": lambda s: repository.calls_by_status(s, since, until, width),
        "streams": lambda s: repository.platform_steps(s, "stream_start", since, until, width),
        "first bot audio": lambda s: repository.first_bot_audio(s, since, until, width),
    }
    spent = {}
    async with sessions() as session:
        for name, query in series.items():
            started = time.perf_counter()
            await query(session)
            spent[name] = round((time.perf_counter() - started) * 1000, 1)
    return spent


async def analyze(engine: AsyncEngine) -> None:
    """Fresh planner statistics; on PostgreSQL also the visibility map autovacuum would
    have set by now, without which an index-only scan visits the table all the same."""
    if engine.dialect.name == "postgresql":
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        async with autocommit.connect() as connection:
            await connection.execute(text("VACUUM ANALYZE"))
        return
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE"))


async def measure(
    backend: str, database_url: str, calls: int, repeat: int
) -> tuple[list[Row], dict[str, int]]:
    engine = create_engine(database_url)
    try:
        await upgrade_schema(engine)
        until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        started = time.perf_counter()
        counts = await seed(engine, calls, until)
        print(f"{backend}: seeded {counts} in {time.perf_counter() - started:.0f} s", flush=True)
        await analyze(engine)
        rows = [_row(backend, "0010", await timed(engine, until, repeat), counts)]
        rows[0].series = await breakdown(engine, until)
        async with engine.begin() as connection:
            for name in INDEXES:
                await connection.execute(text(f"DROP INDEX {name}"))
        await analyze(engine)
        rows.append(_row(backend, "none", await timed(engine, until, repeat), counts))
        rows[-1].series = await breakdown(engine, until)
        return rows, counts
    finally:
        await engine.dispose()


def _row(backend: str, indexes: str, times: Sequence[float], counts: dict[str, int]) -> Row:
    return Row(
        backend,
        indexes,
        round(statistics.median(times), 1),
        round(min(times), 1),
        round(max(times), 1),
        counts,
    )


@asynccontextmanager
async def sqlite_database() -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="exoplane-bench-stats-") as workdir:
        yield f"sqlite+aiosqlite:///{Path(workdir) / 'stats.db'}"


async def run(options: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    async with sqlite_database() as url:
        rows += (await measure("sqlite", url, options.calls, options.repeat))[0]
    try:
        async with fresh_postgres(options.postgres_url) as url:
            rows += (await measure("postgres", url, options.calls, options.repeat))[0]
    except PostgresUnavailable as exc:
        print(f"skipping postgres: {exc}", file=sys.stderr, flush=True)
    return rows


def markdown_table(rows: Sequence[Row]) -> str:
    names = list(rows[0].series) if rows else []
    lines = [
        "| backend | indexes | median ms | min ms | max ms | " + " | ".join(names) + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(names),
    ]
    lines += [
        f"| {r.backend} | {r.indexes} | {r.median_ms} | {r.min_ms} | {r.max_ms} | "
        + " | ".join(str(r.series.get(name, "")) for name in names)
        + " |"
        for r in rows
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=100_000, help="calls to seed")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of the query")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    rows = asyncio.run(run(options))
    table = markdown_table(rows)
    print(table)
    when = datetime.now(UTC)
    headline = (
        f"Stats over {options.calls} calls (last 24 h by hour), "
        f"{when.strftime('%Y-%m-%d %H:%M UTC')}"
    )
    counts = rows[0].rows if rows else {}
    notes = [f"rows seeded: {counts}", f"timed runs per line: {options.repeat}, after a warm-up"]
    document = {
        "machine": machine_info(),
        "parameters": vars(options),
        "when": when.isoformat(),
        "rows": [asdict(row) for row in rows],
    }
    write_report("stats", document, headline, table, notes)


if __name__ == "__main__":
    main()
