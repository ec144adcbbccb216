"""Seed 05's budget: 200 requests a minute per principal, then 429; shared through Redis."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from exoplane.config import Settings
from tests.conftest import ServerProcess, make_settings
from tests.factories import app_with_token, create_customer


async def test_the_201st_request_in_a_minute_is_429(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    headers = {"Authorization": app.token}

    statuses = [
        (await client.get("/v2/integrations/app", headers=headers)).status_code for _ in range(200)
    ]
    limited = await client.get("/v2/integrations/app", headers=headers)

    assert statuses == [200] * 200
    assert limited.status_code == 429
    assert limited.json()["Code"] == 429
    assert "200/minute" in limited.json()["Error"]
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit-Limit"] == "200"
    assert limited.headers["RateLimit-Remaining"] == "0"


async def test_every_response_reports_the_remaining_budget(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    first = await client.get("/v2/integrations/app", headers={"Authorization": app.token})
    second = await client.get("/v2/integrations/app", headers={"Authorization": app.token})

    assert first.headers["RateLimit-Limit"] == "200"
    assert int(first.headers["RateLimit-Remaining"]) == 199
    assert int(second.headers["RateLimit-Remaining"]) == 198
    assert int(first.headers["RateLimit-Reset"]) > 0


async def test_principals_have_separate_budgets(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    first = await app_with_token(client, settings)
    second = await app_with_token(client, settings)

    await asyncio.gather(
        *(
            client.get("/v2/integrations/app", headers={"Authorization": first.token})
            for _ in range(200)
        )
    )
    exhausted = await client.get("/v2/integrations/app", headers={"Authorization": first.token})
    other = await client.get("/v2/integrations/app", headers={"Authorization": second.token})

    assert exhausted.status_code == 429
    assert other.status_code == 200


async def test_two_server_processes_share_one_budget_through_redis(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    env = {
        "EXOPLANE_DATABASE_URL": database_url,
        "EXOPLANE_REDIS_URL": redis_url,
        "EXOPLANE_REDIS_KEY_PREFIX": f"exoplane-test-{uuid.uuid4().hex[:12]}",
        "EXOPLANE_RATE_LIMIT": "10/minute",
        "EXOPLANE_SECRET_KEY": "k" * 40,
    }
    # The servers' key: the secret is hashed with it.
    settings = make_settings(tmp_path, database_url, secret_key=env["EXOPLANE_SECRET_KEY"])
    customer_id, secret = await create_customer(settings)
    first = await asyncio.to_thread(ServerProcess, tmp_path / "a", env)
    second = await asyncio.to_thread(ServerProcess, tmp_path / "b", env)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            token_response = await http.post(
                first.base_url + "/v2/integrations/token",
                json={"Id": customer_id, "Secret": secret, "Entity": "customer"},
            )
            headers = {"Authorization": token_response.json()["Data"]}
            url = "/v2/integrations/app?entity=customer"
            statuses = [
                (await http.get(server.base_url + url, headers=headers)).status_code
                for server in [first, second] * 5
            ]
            eleventh = await http.get(second.base_url + url, headers=headers)
    finally:
        first.stop()
        second.stop()

    assert statuses == [200] * 10
    assert eleventh.status_code == 429
