"""``/api/v1`` spends budgets as ``/v2`` does: one per operator, one per client address for
failed authentication, with the same headers; shared through Redis. The limit here is low."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from exoplane.config import Settings
from tests.conftest import ServerProcess, make_settings
from tests.voicebot.factories import INTEGRATION, SETTINGS, Operator, create_operator, error_of

LIMIT = 5
BAD_KEY = {"Authorization": "Bearer not-a-key-anyone-was-given"}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "home", database_url, rate_limit=f"{LIMIT}/minute")


async def test_the_request_past_the_budget_is_429_with_the_v2_headers(
    client: httpx.AsyncClient, admin: Operator
) -> None:
    statuses = [
        (await client.get(SETTINGS, headers=admin.headers)).status_code for _ in range(LIMIT)
    ]
    limited = await client.get(SETTINGS, headers=admin.headers)

    assert statuses == [200] * LIMIT
    error = error_of(limited, 429)
    assert error["code"] == "rate_limited"
    assert f"{LIMIT}/minute" in error["message"]
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit-Limit"] == str(LIMIT)
    assert limited.headers["RateLimit-Remaining"] == "0"


async def test_every_response_reports_the_remaining_budget(
    client: httpx.AsyncClient, admin: Operator
) -> None:
    first = await client.get(SETTINGS, headers=admin.headers)
    second = await client.get(SETTINGS, headers=admin.headers)

    assert first.headers["RateLimit-Limit"] == str(LIMIT)
    assert int(first.headers["RateLimit-Remaining"]) == LIMIT - 1
    assert int(second.headers["RateLimit-Remaining"]) == LIMIT - 2
    assert int(first.headers["RateLimit-Reset"]) > 0
    assert "Retry-After" not in first.headers


async def test_a_refused_role_still_spends_the_operators_budget(
    client: httpx.AsyncClient, admin: Operator
) -> None:
    refused = [
        (await client.get(INTEGRATION, headers=admin.headers)).status_code for _ in range(LIMIT)
    ]
    limited = await client.get(SETTINGS, headers=admin.headers)

    assert refused == [403] * LIMIT
    assert error_of(limited, 429)["code"] == "rate_limited"


async def test_operators_have_separate_budgets(
    client: httpx.AsyncClient, admin: Operator, super_admin: Operator
) -> None:
    await asyncio.gather(*(client.get(SETTINGS, headers=admin.headers) for _ in range(LIMIT)))
    exhausted = await client.get(SETTINGS, headers=admin.headers)
    other = await client.get(SETTINGS, headers=super_admin.headers)

    assert exhausted.status_code == 429
    assert other.status_code == 200
    assert int(other.headers["RateLimit-Remaining"]) == LIMIT - 1


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic b3BzOnB3", BAD_KEY["Authorization"]],
    ids=["missing", "malformed", "invalid"],
)
async def test_failed_authentication_spends_the_client_addresss_budget(
    client: httpx.AsyncClient, admin: Operator, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    failures = [(await client.get(SETTINGS, headers=headers)).status_code for _ in range(LIMIT)]
    limited = await client.get(SETTINGS, headers=headers)
    operator = await client.get(SETTINGS, headers=admin.headers)

    assert failures == [401] * LIMIT
    error = error_of(limited, 429)
    assert error["code"] == "rate_limited"
    assert limited.headers["RateLimit-Limit"] == str(LIMIT)
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    # A valid key is counted against its operator, not the address that failed.
    assert operator.status_code == 200


async def test_failed_authentication_on_v1_and_v2_shares_the_addresss_budget(
    client: httpx.AsyncClient,
) -> None:
    v2 = [
        (await client.get("/v2/integrations/app", headers=BAD_KEY)).status_code
        for _ in range(LIMIT)
    ]
    v1 = await client.get(SETTINGS, headers=BAD_KEY)

    assert v2 == [401] * LIMIT
    assert error_of(v1, 429)["code"] == "rate_limited"


async def test_two_server_processes_share_an_operators_budget_through_redis(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    env = {
        "EXOPLANE_DATABASE_URL": database_url,
        "EXOPLANE_REDIS_URL": redis_url,
        "EXOPLANE_REDIS_KEY_PREFIX": f"exoplane-test-{uuid.uuid4().hex[:12]}",
        "EXOPLANE_RATE_LIMIT": "10/minute",
        "EXOPLANE_SECRET_KEY": "k" * 40,
    }
    operator = await create_operator(
        make_settings(tmp_path, database_url), "ops@example.com", "admin"
    )
    first = await asyncio.to_thread(ServerProcess, tmp_path / "a", env)
    second = await asyncio.to_thread(ServerProcess, tmp_path / "b", env)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            statuses = [
                (await http.get(server.base_url + SETTINGS, headers=operator.headers)).status_code
                for server in [first, second] * 5
            ]
            eleventh = await http.get(second.base_url + SETTINGS, headers=operator.headers)
            failed = [
                (await http.get(server.base_url + SETTINGS, headers=BAD_KEY)).status_code
                for server in [first, second] * 5
            ]
            eleventh_failure = await http.get(first.base_url + SETTINGS, headers=BAD_KEY)
    finally:
        first.stop()
        second.stop()

    assert statuses == [200] * 10
    assert eleventh.status_code == 429
    assert failed == [401] * 10
    assert eleventh_failure.status_code == 429
