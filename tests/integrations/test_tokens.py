"""Tokens (SPEC §4.1): issue, present, introspect, revoke, expire; app secret rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory, unit_of_work
from exoplane.integrations import repository
from exoplane.models import App, Customer, Token
from exoplane.security import Vault, hash_secret, load_secret_key
from tests.factories import (
    app_with_token,
    customer_with_token,
    database_session,
    get_token,
    register_app,
)

TOKEN_URL = "/v2/integrations/token"


def failed(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Status"] == "Failed"
    assert body["Code"] == status
    assert body["Data"] is None
    assert body["RequestId"] == response.headers["X-Request-ID"]
    message: str = body["Error"]
    assert message
    return message


async def expire_all_tokens(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await session.execute(update(Token).values(expires_at=past))
    finally:
        await engine.dispose()


async def test_customer_token_is_issued_for_id_secret_and_entity(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)

    response = await client.post(
        TOKEN_URL, json={"Id": customer.id, "Secret": customer.secret, "Entity": "customer"}
    )

    body = response.json()
    assert response.status_code == 200
    assert body["Status"] == "Success"
    assert isinstance(body["Data"], str)
    assert len(body["Data"]) >= 32
    assert body["Data"] != customer.token


async def test_token_lasts_ninety_days_by_default(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)

    response = await client.get(TOKEN_URL, headers={"Authorization": customer.token})

    expires = datetime.fromisoformat(response.json()["Data"]["ExpiresAt"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=1)


async def test_token_lifetime_can_be_shortened(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    body = {"Id": customer.id, "Secret": customer.secret, "Entity": "customer", "TTLSeconds": 600}

    token = (await client.post(TOKEN_URL, json=body)).json()["Data"]

    data = (await client.get(TOKEN_URL, headers={"Authorization": token})).json()["Data"]
    expires = datetime.fromisoformat(data["ExpiresAt"])
    assert abs(expires - (datetime.now(UTC) + timedelta(seconds=600))) < timedelta(minutes=1)


async def test_token_lifetime_beyond_ninety_days_is_refused(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    body = {
        "Id": customer.id,
        "Secret": customer.secret,
        "Entity": "customer",
        "TTLSeconds": 91 * 24 * 3600,
    }

    message = failed(await client.post(TOKEN_URL, json=body), 400)

    assert "TTLSeconds" in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Secret": "s", "Entity": "customer"}, "Id"),
        ({"Id": "i", "Entity": "customer"}, "Secret"),
        ({"Id": "i", "Secret": "s"}, "Entity"),
        ({"Id": "i", "Secret": "s", "Entity": "user"}, "Entity"),
        ({"Id": 5, "Secret": "s", "Entity": "app"}, "Id"),
        ({"entity_id": "i", "secret": "s", "entity": "app"}, "Id"),
    ],
)
async def test_malformed_token_requests_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    message = failed(await client.post(TOKEN_URL, json=body), 400)

    assert f"'{field}'" in message


@pytest.mark.parametrize("entity", ["customer", "app"])
async def test_wrong_secret_gets_401_without_saying_which_part_was_wrong(
    client: httpx.AsyncClient, settings: Settings, entity: str
) -> None:
    app = await register_app(client, await customer_with_token(client, settings))
    id_ = app.customer_id if entity == "customer" else app.id

    wrong_secret = await client.post(
        TOKEN_URL, json={"Id": id_, "Secret": "not-the-secret", "Entity": entity}
    )
    unknown_id = await client.post(
        TOKEN_URL, json={"Id": "no-such-id", "Secret": app.secret, "Entity": entity}
    )

    assert failed(wrong_secret, 401) == failed(unknown_id, 401)


async def test_an_app_secret_does_not_make_a_customer_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await register_app(client, await customer_with_token(client, settings))

    response = await client.post(
        TOKEN_URL, json={"Id": app.id, "Secret": app.secret, "Entity": "customer"}
    )

    failed(response, 401)


async def test_an_app_deleted_between_the_check_and_the_insert_gets_401(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret is checked before the token's transaction; if the app goes in between,
    the insert is refused by its foreign key and the answer is the usual 401, not a 500."""
    app = await register_app(client, await customer_with_token(client, settings))
    read = repository.find_secret_holder

    async def read_then_delete(reader: Any, entity: str, holder_id: str) -> Any:
        holder = await read(reader, entity, holder_id)
        async with database_session(settings) as session:
            await session.execute(delete(App).where(App.id == holder_id))
        return holder

    monkeypatch.setattr(repository, "find_secret_holder", read_then_delete)
    response = await client.post(
        TOKEN_URL, json={"Id": app.id, "Secret": app.secret, "Entity": "app"}
    )

    failed(response, 401)
    async with database_session(settings) as session:
        assert (await session.scalars(select(Token).where(Token.app_id == app.id))).all() == []


async def test_bare_and_bearer_forms_are_both_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    for header in (app.token, f"Bearer {app.token}", f"bearer {app.token}"):
        response = await client.get("/v2/integrations/app", headers={"Authorization": header})
        assert response.status_code == 200, header


async def test_missing_token_is_401(client: httpx.AsyncClient) -> None:
    message = failed(await client.get("/v2/integrations/app"), 401)

    assert "Authorization" in message


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "a b c", "tok;en" * 10, "short"])
async def test_malformed_token_is_401(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/v2/integrations/app", headers={"Authorization": header})

    assert failed(response, 401)


async def test_unknown_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v2/integrations/app", headers={"Authorization": "x" * 43})

    assert "Invalid token" in failed(response, 401)


async def test_expired_token_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)
    await expire_all_tokens(settings)

    response = await client.get("/v2/integrations/app", headers={"Authorization": app.token})

    assert "expired" in failed(response, 401)


async def test_revoked_token_is_401_and_other_tokens_keep_working(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    other = await get_token(client, "app", app.id, app.secret)

    revoked = await client.delete(TOKEN_URL, headers={"Authorization": app.token})
    after = await client.get("/v2/integrations/app", headers={"Authorization": app.token})
    still = await client.get("/v2/integrations/app", headers={"Authorization": other})

    assert revoked.json()["Data"] == "Token revoked"
    assert "revoked" in failed(after, 401)
    assert still.status_code == 200


async def test_introspection_describes_the_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    data = (await client.get(TOKEN_URL, headers={"Authorization": app.token})).json()["Data"]

    assert data["Entity"] == "app"
    assert data["Id"] == app.id
    assert data["AppID"] == app.id
    assert data["CustomerID"] == app.customer_id


async def test_customer_token_on_an_app_endpoint_is_403(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)

    for method, url in (("GET", "/v2/integrations/app"), ("DELETE", "/v2/integrations/app")):
        response = await client.request(method, url, headers={"Authorization": customer.token})
        assert "app token" in failed(response, 403)


async def test_app_token_on_a_customer_endpoint_is_403(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    listing = await client.get(
        "/v2/integrations/app?entity=customer", headers={"Authorization": app.token}
    )
    registering = await client.post(
        "/v2/integrations/app", headers={"Authorization": app.token}, json={}
    )

    assert "customer token" in failed(listing, 403)
    assert "customer token" in failed(registering, 403)


async def test_only_hashes_of_secrets_and_tokens_are_stored(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)

    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            stored_customer = await session.get(Customer, customer.id)
            stored_app = await session.get(App, app.id)
            token_hashes = set(await session.scalars(select(Token.token_hash)))
    finally:
        await engine.dispose()

    assert stored_customer is not None
    assert stored_app is not None
    vault = Vault(load_secret_key(settings))
    assert stored_customer.secret_hash == vault.hash_secret(customer.secret)
    assert stored_app.secret_hash == vault.hash_secret(app.secret)
    assert stored_app.secret_hash.startswith("hmac-sha256$")
    assert {hash_secret(customer.token), hash_secret(app.token)} <= token_hashes
    assert customer.token not in token_hashes
    assert "your_api_token" not in stored_app.exotel_api_token_enc
    assert "your_api_key" not in stored_app.exotel_api_key_enc


async def test_rotated_app_secret_works_and_the_old_one_lasts_the_grace_period(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    rotated = await client.post(
        "/v2/integrations/app/secret",
        headers={"Authorization": app.token},
        json={"GraceSeconds": 3600},
    )

    data = rotated.json()["Data"]
    assert rotated.status_code == 200
    assert data["AppSecret"] != app.secret
    assert await get_token(client, "app", app.id, data["AppSecret"])
    assert await get_token(client, "app", app.id, app.secret)


async def test_rotation_without_grace_retires_the_old_secret_at_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    rotated = await client.post(
        "/v2/integrations/app/secret",
        headers={"Authorization": app.token},
        json={"GraceSeconds": 0},
    )
    old = await client.post(TOKEN_URL, json={"Id": app.id, "Secret": app.secret, "Entity": "app"})

    assert rotated.status_code == 200
    failed(old, 401)


async def test_a_second_rotation_ends_the_first_secrets_grace(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    headers = {"Authorization": app.token}

    await client.post("/v2/integrations/app/secret", headers=headers)
    second = await client.post("/v2/integrations/app/secret", headers=headers)
    original = await client.post(
        TOKEN_URL, json={"Id": app.id, "Secret": app.secret, "Entity": "app"}
    )

    assert second.status_code == 200
    failed(original, 401)
