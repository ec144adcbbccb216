"""``GET /api/v1/stats``: counts and percentiles per time bucket, exact on a seeded set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from exoplane.app import create_app
from exoplane.config import Settings
from tests.conftest import make_settings
from tests.factories import app_with_token, database_session
from tests.stats.factories import Delivery, add_calls, add_deliveries, add_streams
from tests.voicebot.factories import Operator, create_operator

T0 = datetime(2026, 12, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "home", database_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def admin(settings: Settings) -> Operator:
    return await create_operator(settings, "ops@example.com", "admin")


async def seeded(client: httpx.AsyncClient, settings: Settings) -> None:
    """Three hours from T0: a busy first hour, a quiet second, a third with one stream."""
    app = await app_with_token(client, settings)
    async with database_session(settings) as session:
        await add_calls(
            session,
            app.id,
            [
                (T0, "completed"),
                (T0 + timedelta(minutes=5), "completed"),
                (T0 + timedelta(minutes=10), "missed"),
                (T0 + timedelta(minutes=15), "no-answer"),
                (T0 + timedelta(minutes=20), "busy"),
                (T0 + timedelta(minutes=59, seconds=59), "ringing"),
                (T0 + HOUR, "failed"),  # the first instant of the second hour
                (T0 - timedelta(seconds=1), "completed"),  # before the range
                (T0 + 3 * HOUR, "completed"),  # at its end, which is not in it
            ],
        )
        await add_deliveries(
            session,
            app.id,
            [
                # 100 attempts taking 1..100 ms.
                Delivery(T0 + timedelta(minutes=1), "succeeded", range(1, 41)),
                Delivery(T0 + timedelta(minutes=2), "failed", range(41, 81)),
                Delivery(T0 + timedelta(minutes=3), "pending", range(81, 101)),
                Delivery(T0 + timedelta(minutes=4), "succeeded", [7]),
                # Its two attempts fall in the first and second hour.
                Delivery(T0 + HOUR - timedelta(seconds=1), "succeeded", [300, 5]),
                Delivery(T0 + HOUR + timedelta(minutes=1), "pending", []),
                Delivery(T0 - HOUR, "succeeded", [1000]),  # before the range
            ],
        )
        await add_streams(
            session,
            [
                (T0 + timedelta(minutes=1), 300),
                (T0 + timedelta(minutes=2), 100),
                (T0 + timedelta(minutes=3), 200),
                (T0 + 2 * HOUR, None),
                (T0 + 4 * HOUR, 50),  # after the range
            ],
        )


async def get_stats(client: httpx.AsyncClient, admin: Operator, **params: str) -> httpx.Response:
    return await client.get("/api/v1/stats", headers=admin.headers, params=params)


async def test_each_bucket_counts_outcomes_and_gives_exact_percentiles(
    client: httpx.AsyncClient, settings: Settings, admin: Operator
) -> None:
    await seeded(client, settings)

    response = await get_stats(
        client, admin, since=T0.isoformat(), until=(T0 + 3 * HOUR).isoformat(), bucket="hour"
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["since"], body["until"], body["bucket"]) == (
        "2026-12-01T00:00:00.000Z",
        "2026-12-01T03:00:00.000Z",
        "hour",
    )
    first, second, third = body["buckets"]
    assert [b["start"] for b in body["buckets"]] == [
        "2026-12-01T00:00:00.000Z",
        "2026-12-01T01:00:00.000Z",
        "2026-12-01T02:00:00.000Z",
    ]
    assert first == {
        "start": "2026-12-01T00:00:00.000Z",
        "webhooks": {
            "deliveries": {"succeeded": 3, "failed": 1, "pending": 1},
            # 1..100, 7 and 300: ranks 51 and 101 of 102.
            "attempts": 102,
            "latency_ms": {"p50": 50, "p99": 100},
        },
        "calls": {
            "answered": 2,
            "missed": 2,
            "busy": 1,
            "failed": 0,
            "canceled": 0,
            "ongoing": 1,
        },
        "streams": {"started": 3, "first_bot_audio_ms": {"p50": 200, "p99": 300}},
    }
    assert second["webhooks"] == {
        "deliveries": {"succeeded": 0, "failed": 0, "pending": 1},
        "attempts": 1,
        "latency_ms": {"p50": 5, "p99": 5},
    }
    assert second["calls"]["failed"] == 1
    assert sum(second["calls"].values()) == 1
    assert second["streams"] == {"started": 0, "first_bot_audio_ms": {"p50": None, "p99": None}}
    assert third["webhooks"]["attempts"] == 0
    assert third["webhooks"]["latency_ms"] == {"p50": None, "p99": None}
    assert sum(third["calls"].values()) == 0
    assert third["streams"] == {"started": 1, "first_bot_audio_ms": {"p50": None, "p99": None}}


async def test_one_bucket_over_everything_gives_the_percentiles_of_all(
    client: httpx.AsyncClient, settings: Settings, admin: Operator
) -> None:
    await seeded(client, settings)

    response = await get_stats(
        client, admin, since="2026-11-30T00:00:00", until="2026-12-02T00:00:00", bucket="day"
    )

    assert response.status_code == 200, response.text
    before, day = response.json()["buckets"]
    assert before["webhooks"]["attempts"] == 1
    assert before["calls"]["answered"] == 1
    # Attempts: 1..100, 7, 300, 5 on the day: 103 values, ranks 52 and 102.
    assert day["webhooks"]["attempts"] == 103
    assert day["webhooks"]["latency_ms"] == {"p50": 50, "p99": 100}
    assert day["webhooks"]["deliveries"] == {"succeeded": 3, "failed": 1, "pending": 2}
    assert day["calls"]["answered"] == 3
    assert day["streams"]["started"] == 5
    # 300, 100, 200 and the later 50: ranks 2 and 4 of 4.
    assert day["streams"]["first_bot_audio_ms"] == {"p50": 100, "p99": 300}


async def test_by_default_the_last_24_hours_by_hour_up_to_the_end_of_this_hour(
    client: httpx.AsyncClient, admin: Operator
) -> None:
    response = await get_stats(client, admin)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bucket"] == "hour"
    assert len(body["buckets"]) == 24
    until = datetime.fromisoformat(body["until"])
    assert until.minute == until.second == 0
    assert timedelta(0) < until - datetime.now(UTC) <= HOUR
    assert datetime.fromisoformat(body["since"]) == until - 24 * HOUR


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bucket": "week"}, "bucket"),
        ({"since": "soon"}, "since"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "since"),
        ({"since": "2026-12-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "since"),
        (
            {"since": "2026-12-01T00:00:00Z", "until": "2026-12-02T00:00:00Z", "bucket": "minute"},
            "bucket",
        ),
        ({"since": "1969-12-31T00:00:00Z", "until": "1970-01-01T00:00:00Z"}, "since"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
    ],
)
async def test_a_bad_range_or_bucket_is_400_naming_it(
    client: httpx.AsyncClient, admin: Operator, params: dict[str, str], field: str
) -> None:
    response = await get_stats(client, admin, **params)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


async def test_the_numbers_are_for_operators_only(client: httpx.AsyncClient) -> None:
    anonymous = await client.get("/api/v1/stats")
    wrong = await client.get("/api/v1/stats", headers={"Authorization": "Bearer nope"})

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
