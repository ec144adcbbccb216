"""Agent tokens: an app mints, for one of its users, a token that agent's browser may hold.
It reads the app, its settings and its own mapping, and places calls as itself; nothing else."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import Connection, select, text, update

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.db import alembic_config, create_engine
from exoplane.integrations.auth import authenticate
from exoplane.models import Token
from exoplane.security import hash_secret
from tests.e2e.conftest import Exoplane
from tests.e2e.servers import Sandbox
from tests.factories import (
    RegisteredApp,
    app_with_token,
    create_user,
    customer_with_token,
    database_session,
    register_app,
)
from tests.integrations.conftest import EXOTEL_API_KEY, EXOTEL_API_TOKEN

AGENT_TOKEN_URL = "/v2/integrations/agent_token"
TOKEN_URL = "/v2/integrations/token"
OUTBOUND = "/v2/integrations/call/outbound_call"
AGENT = "agent_001"
OTHER_AGENT = "agent_002"

# What an agent token may call; every other authenticated route must refuse it.
AGENT_ROUTES = {
    ("GET", "/v2/integrations/app"),
    ("GET", "/v2/integrations/app_setting"),
    ("GET", "/v2/integrations/usermapping"),
    ("POST", "/v2/integrations/call/outbound_call"),
    ("GET", "/v2/integrations/token"),
    ("DELETE", "/v2/integrations/token"),
}


def failed(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Status"] == "Failed"
    assert body["Code"] == status
    message: str = body["Error"]
    return message


async def mint(
    client: httpx.AsyncClient, app: RegisteredApp, user_id: str = AGENT, **extra: Any
) -> httpx.Response:
    return await client.post(
        AGENT_TOKEN_URL, headers={"Authorization": app.token}, json={"user_id": user_id, **extra}
    )


async def agent_token(client: httpx.AsyncClient, app: RegisteredApp, user_id: str = AGENT) -> str:
    response = await mint(client, app, user_id)
    assert response.status_code == 200, response.text
    token: str = response.json()["Data"]
    return token


@pytest.fixture
async def team(client: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    """An app with two agents."""
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)
    await create_user(client, app, 2)
    return app


def expiry(response: httpx.Response) -> datetime:
    return datetime.fromisoformat(response.headers["X-Token-Expires-At"])


# --- minting ------------------------------------------------------------------------------


async def test_an_app_token_mints_an_agent_token_for_twelve_hours_by_default(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    response = await mint(client, team)

    assert response.status_code == 200, response.text
    token = response.json()["Data"]
    assert isinstance(token, str)
    assert token != team.token
    lasts = expiry(response) - datetime.now(UTC)
    assert timedelta(hours=11, minutes=59) < lasts <= timedelta(hours=12)


async def test_introspection_describes_the_agent_its_app_and_expiry(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    minted = await mint(client, team, TTLSeconds=600)
    token = minted.json()["Data"]

    response = await client.get(TOKEN_URL, headers={"Authorization": token})

    assert response.status_code == 200, response.text
    data = response.json()["Data"]
    assert data["Entity"] == "agent"
    assert data["UserID"] == AGENT
    assert data["Id"] == AGENT
    assert data["AppID"] == team.id
    assert data["CustomerID"] == team.customer_id
    assert data["ExpiresAt"]


async def test_a_ttl_over_a_day_is_400_and_mints_nothing(
    client: httpx.AsyncClient, team: RegisteredApp, settings: Settings
) -> None:
    response = await mint(client, team, TTLSeconds=24 * 3600 + 1)

    assert "TTLSeconds" in failed(response, 400)
    async with database_session(settings) as session:
        assert (await session.scalars(select(Token).where(Token.entity == "agent"))).all() == []


async def test_an_agent_token_never_outlives_the_app_token_that_minted_it(
    client: httpx.AsyncClient, team: RegisteredApp, settings: Settings
) -> None:
    app_expiry = datetime.now(UTC) + timedelta(hours=1)
    async with database_session(settings) as session:
        await session.execute(
            update(Token)
            .where(Token.token_hash == hash_secret(team.token))
            .values(expires_at=app_expiry)
        )

    response = await mint(client, team, TTLSeconds=24 * 3600)

    assert response.status_code == 200, response.text
    assert expiry(response) <= app_expiry


async def test_only_the_hash_of_an_agent_token_is_stored(
    client: httpx.AsyncClient, team: RegisteredApp, settings: Settings
) -> None:
    token = await agent_token(client, team)

    async with database_session(settings) as session:
        rows = (await session.scalars(select(Token).where(Token.entity == "agent"))).all()
    assert len(rows) == 1
    assert rows[0].token_hash == hash_secret(token)
    assert rows[0].app_id == team.id
    assert token not in {rows[0].id, rows[0].token_hash}


async def test_minting_for_an_unknown_user_is_404(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    assert "nobody" in failed(await mint(client, team, "nobody"), 404)


async def test_another_apps_user_cannot_be_minted_for(
    client: httpx.AsyncClient, team: RegisteredApp, settings: Settings
) -> None:
    other = await app_with_token(client, settings)
    await create_user(client, other, 7)

    assert "agent_007" in failed(await mint(client, team, "agent_007"), 404)


async def test_a_customer_token_cannot_mint_an_agent_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)

    response = await client.post(
        AGENT_TOKEN_URL, headers={"Authorization": customer.token}, json={"user_id": AGENT}
    )

    assert "app token" in failed(response, 403)


async def test_an_agent_token_cannot_mint_another(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)

    response = await client.post(
        AGENT_TOKEN_URL, headers={"Authorization": token}, json={"user_id": OTHER_AGENT}
    )

    assert "agent token may only call" in failed(response, 403)


# --- what it may do -----------------------------------------------------------------------


async def test_an_agent_token_reads_its_app(client: httpx.AsyncClient, team: RegisteredApp) -> None:
    token = await agent_token(client, team)

    response = await client.get("/v2/integrations/app", headers={"Authorization": token})

    assert response.status_code == 200, response.text
    assert response.json()["Data"]["AppID"] == team.id


async def test_an_agent_token_cannot_list_the_customers_apps(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)

    response = await client.get(
        "/v2/integrations/app", params={"entity": "customer"}, headers={"Authorization": token}
    )

    assert "agent token may only call" in failed(response, 403)


async def test_an_agent_token_reads_the_app_settings(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)
    with_app = await client.get(
        "/v2/integrations/app_setting", headers={"Authorization": team.token}
    )

    response = await client.get("/v2/integrations/app_setting", headers={"Authorization": token})

    assert response.status_code == 200, response.text
    assert response.json()["Data"] == with_app.json()["Data"]


async def test_an_agent_token_reads_its_own_mapping_with_its_sip_credentials(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)
    with_app = await client.get(
        "/v2/integrations/usermapping",
        params={"user_id": AGENT},
        headers={"Authorization": team.token},
    )

    response = await client.get(
        "/v2/integrations/usermapping", params={"user_id": AGENT}, headers={"Authorization": token}
    )

    assert response.status_code == 200, response.text
    mapping, expected = response.json()["Data"], with_app.json()["Data"]
    assert mapping["SipSecret"]  # sealed afresh on every read, so compared apart
    assert {**mapping, "SipSecret": None} == {**expected, "SipSecret": None}


async def test_another_agents_mapping_looks_missing_to_an_agent_token(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)

    response = await client.get(
        "/v2/integrations/usermapping",
        params={"user_id": OTHER_AGENT},
        headers={"Authorization": token},
    )

    message = failed(response, 404)
    assert OTHER_AGENT in message
    assert "password" not in response.text.lower()


async def test_an_agent_token_cannot_list_the_mappings(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)

    response = await client.get("/v2/integrations/usermapping", headers={"Authorization": token})

    assert "agent token may only call" in failed(response, 403)
    assert OTHER_AGENT not in response.text


# --- what it may not do -------------------------------------------------------------------


def _authenticates(dependant: Dependant) -> bool:
    return any(dep.call is authenticate or _authenticates(dep) for dep in dependant.dependencies)


def _authenticated_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    for route in app.routes:
        if isinstance(route, APIRoute) and _authenticates(route.dependant):
            for method in sorted(route.methods or ()):
                yield method, route.path


async def test_every_other_authenticated_route_refuses_an_agent_token(
    client: httpx.AsyncClient, team: RegisteredApp, settings: Settings
) -> None:
    app = create_app(settings)
    token = await agent_token(client, team)
    ids = {"customer_id": team.customer_id, "app_id": team.id, "user_id": AGENT}
    refused: list[tuple[str, str]] = []
    let_through: list[str] = []

    for method, path in _authenticated_routes(app):
        if (method, path) in AGENT_ROUTES:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "1"), path)
        response = await client.request(method, url, headers={"Authorization": token}, json={})
        body = response.json()
        error = body.get("error") or {}
        scoped = response.status_code == 403 and (
            error.get("code") == "agent_scope"
            or "agent token may only call" in str(body.get("Error"))
        )
        if scoped:
            refused.append((method, path))
        else:
            let_through.append(f"{method} {path}: {response.status_code} {response.text}")

    assert let_through == []
    assert len(refused) >= 25
    assert ("POST", "/v2/integrations/usermapping") in refused
    assert ("DELETE", "/v2/integrations/app") in refused
    still = await client.get(TOKEN_URL, headers={"Authorization": token})
    assert still.status_code == 200


async def test_the_walk_covers_every_route_an_app_token_may_call(settings: Settings) -> None:
    routes = set(_authenticated_routes(create_app(settings)))

    assert AGENT_ROUTES <= routes
    assert ("POST", "/v2/integrations/agent_token") in routes


# --- revocation and rate limit ------------------------------------------------------------


async def test_delete_token_revokes_the_agent_token_and_not_the_app_token(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)

    revoked = await client.delete(TOKEN_URL, headers={"Authorization": token})
    after = await client.get("/v2/integrations/app", headers={"Authorization": token})

    assert revoked.status_code == 200, revoked.text
    assert "revoked" in failed(after, 401)
    app_after = await client.get("/v2/integrations/app", headers={"Authorization": team.token})
    assert app_after.status_code == 200


async def test_deleting_the_agent_revokes_its_token(
    client: httpx.AsyncClient, team: RegisteredApp, settings: Settings
) -> None:
    token = await agent_token(client, team)
    other = await agent_token(client, team, OTHER_AGENT)

    deleted = await client.delete(
        f"{team.users_path}/{AGENT}", headers={"Authorization": team.token}
    )

    assert deleted.status_code in {200, 204}, deleted.text
    failed(await client.get("/v2/integrations/app", headers={"Authorization": token}), 401)
    still = await client.get("/v2/integrations/app", headers={"Authorization": other})
    assert still.status_code == 200
    async with database_session(settings) as session:
        hashes = set(await session.scalars(select(Token.token_hash)))
    assert hash_secret(token) not in hashes
    assert hash_secret(other) in hashes


async def test_deleting_the_app_revokes_its_agent_tokens(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)

    deleted = await client.delete("/v2/integrations/app", headers={"Authorization": team.token})

    assert deleted.status_code == 200, deleted.text
    failed(await client.get("/v2/integrations/app", headers={"Authorization": token}), 401)


async def test_an_agent_token_spends_its_apps_rate_limit_budget(
    client: httpx.AsyncClient, team: RegisteredApp
) -> None:
    token = await agent_token(client, team)

    by_app = await client.get("/v2/integrations/app", headers={"Authorization": team.token})
    by_agent = await client.get("/v2/integrations/app", headers={"Authorization": token})

    assert int(by_agent.headers["RateLimit-Remaining"]) == (
        int(by_app.headers["RateLimit-Remaining"]) - 1
    )


# --- click-to-call as itself, against the Exotel sandbox ----------------------------------


@pytest.fixture
async def calling_team(exoplane: Exoplane) -> RegisteredApp:
    http, settings = exoplane.http, exoplane.settings
    customer = await customer_with_token(http, settings)
    app = await register_app(
        http, customer, ExotelApiKey=EXOTEL_API_KEY, ExotelApiToken=EXOTEL_API_TOKEN
    )
    await create_user(http, app, 1)
    await create_user(http, app, 2)
    return app


async def test_an_agent_token_places_a_call_as_its_own_user(
    exoplane: Exoplane, calling_team: RegisteredApp, exotel: Sandbox
) -> None:
    token = await agent_token(exoplane.http, calling_team)

    response = await exoplane.http.post(
        OUTBOUND,
        headers={"Authorization": token},
        json={"app_id": calling_team.id, "user_id": AGENT, "to": "09123456789"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["Data"]["CallSid"]
    assert len(await exotel.calls_api_requests()) == 1


async def test_an_agent_token_calling_as_another_agent_is_404_and_rings_nobody(
    exoplane: Exoplane, calling_team: RegisteredApp, exotel: Sandbox
) -> None:
    token = await agent_token(exoplane.http, calling_team)

    response = await exoplane.http.post(
        OUTBOUND,
        headers={"Authorization": token},
        json={"app_id": calling_team.id, "user_id": OTHER_AGENT, "to": "09123456789"},
    )

    assert OTHER_AGENT in failed(response, 404)
    assert await exotel.calls_api_requests() == []


# --- migration 0005 -----------------------------------------------------------------------


async def test_undoing_migration_0005_drops_agent_tokens_and_keeps_app_tokens(
    client: httpx.AsyncClient, team: RegisteredApp, settings: Settings
) -> None:
    await agent_token(client, team)

    def migrate(target: str, *, down: bool = False) -> Callable[[Connection], None]:
        def step(connection: Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, target)

        return step

    def entities(connection: Connection) -> list[str]:
        return sorted(connection.execute(text("SELECT entity FROM tokens")).scalars())

    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(migrate("0004", down=True))
            after_downgrade = await connection.run_sync(entities)
        async with engine.begin() as connection:
            await connection.run_sync(migrate("head"))
    finally:
        await engine.dispose()

    assert after_downgrade == ["app", "customer"]
    still = await client.get("/v2/integrations/app", headers={"Authorization": team.token})
    assert still.status_code == 200, still.text
