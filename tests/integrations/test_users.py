"""Users (agents) through the resource-style API (SPEC §4.4): /{customer_id}/apps/{app_id}/users."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.db import create_engine
from exoplane.integrations.sdk_secret import decode_from_sdk
from tests.conftest import make_settings
from tests.factories import (
    RegisteredApp,
    app_with_token,
    create_user,
    customer_with_token,
    register_app,
    user_body,
)

MAPPING_URL = "/v2/integrations/usermapping"


def auth(app: RegisteredApp) -> dict[str, str]:
    return {"Authorization": app.token}


def user_path(app: RegisteredApp, user_id: str) -> str:
    return f"{app.users_path}/{user_id}"


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "data"}
    assert body["success"] is True
    data: dict[str, Any] = body["data"]
    return data


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    details: dict[str, Any] = body["error"]
    assert details["request_id"] == response.headers["X-Request-ID"]
    assert details["message"]
    return details


def invalid(response: httpx.Response, field: str) -> dict[str, Any]:
    """A 400 that names ``field`` both in ``error.field`` and in the message."""
    details = error(response, 400)
    assert details["field"] == field
    assert field in details["message"]
    return details


async def list_all_user_ids(client: httpx.AsyncClient, app: RegisteredApp) -> list[str]:
    data = ok(await client.get(app.users_path, params={"limit": 100}, headers=auth(app)))
    assert data["has_more"] is False
    return [user["user_id"] for user in data["users"]]


async def column_values(settings: Settings, query: str) -> list[str]:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return [str(value) for value in (await connection.execute(text(query))).scalars()]
    finally:
        await engine.dispose()


# --- creating -----------------------------------------------------------------------------


async def test_creating_a_user_answers_201_with_its_fields(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(app.users_path, headers=auth(app), json=user_body(1))

    data = ok(response, 201)
    assert data["user_id"] == "agent_001"
    assert data["name"] == "Agent 1"
    assert data["email"] == "agent1@example.com"
    assert data["phone_number"] == "+919876500001"
    assert data["virtual_number"] == "+918047491899"
    assert data["role"] == "user"
    assert data["devices"]["phone"] == {"enabled": True, "number": "+919876500001"}
    assert data["devices"]["sip"] == {"enabled": True, "username": data["sip"]["username"]}
    assert data["created_at"].endswith("Z")
    assert data["updated_at"].endswith("Z")


async def test_creating_a_user_shows_the_sip_secret_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    created = await create_user(client, app, 1)
    fetched = await client.get(user_path(app, "agent_001"), headers=auth(app))
    listed = await client.get(app.users_path, headers=auth(app))

    secret = created["sip"]["secret"]
    assert isinstance(secret, str)
    assert len(secret) >= 16
    assert "secret" not in ok(fetched)["sip"]
    assert all("secret" not in user["sip"] for user in ok(listed)["users"])
    assert secret not in fetched.text
    assert secret not in listed.text


async def test_sip_username_is_the_user_id_at_the_accounts_voip_exotel_com_domain_by_default(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    created = await create_user(client, app, 1)

    assert created["sip"]["username"] == "agent_001@exoteldemo.voip.exotel.com"
    assert created["sip"]["domain"] == "exoteldemo.voip.exotel.com"


async def test_a_configured_sip_domain_is_the_base_under_the_account_sid(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "home", database_url, sip_domain="sip.example.org")
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            customer = await customer_with_token(client, settings)
            app = await register_app(client, customer, ExotelAccountSid="acme42")

            created = await create_user(client, app, 1)

    assert created["sip"]["username"] == "agent_001@acme42.sip.example.org"
    assert created["sip"]["domain"] == "acme42.sip.example.org"


@pytest.mark.parametrize(
    "user_id", ["agent_001", "A.b-c_9", "x" * 64, "0", "..."], ids=lambda value: value[:12]
)
async def test_a_plain_token_user_id_is_its_own_sip_user(
    client: httpx.AsyncClient, settings: Settings, user_id: str
) -> None:
    app = await app_with_token(client, settings)

    created = await create_user(client, app, 1, user_id=user_id)

    assert created["sip"]["username"] == f"{user_id}@exoteldemo.voip.exotel.com"


async def test_an_email_user_id_becomes_a_plain_sip_user_tagged_with_its_digest(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    digest = hashlib.sha256(b"asha.verma@example.com").hexdigest()[:12]

    created = await create_user(client, app, 1, user_id="asha.verma@example.com")

    sip_user = created["sip"]["username"].removesuffix("@exoteldemo.voip.exotel.com")
    assert sip_user == f"asha.verma_example.com~{digest}"


@pytest.mark.parametrize(
    "user_id",
    ["asha.verma@example.com", "agent+1@example.com", "crm:42", "Ärzte-Team", "x" * 65, "a~b"],
    ids=lambda value: value[:12],
)
async def test_any_other_user_id_becomes_a_sip_token_of_at_most_64_characters(
    client: httpx.AsyncClient, settings: Settings, user_id: str
) -> None:
    app = await app_with_token(client, settings)

    created = await create_user(client, app, 1, user_id=user_id)

    sip_user, domain = created["sip"]["username"].split("@")
    assert domain == created["sip"]["domain"] == "exoteldemo.voip.exotel.com"
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,51}~[0-9a-f]{12}", sip_user), sip_user


async def test_user_ids_that_sanitise_alike_get_different_sip_users(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    ids = ["a@b.c", "a:b.c", "a_b.c", "a!b.c", "x" * 70, "x" * 71]

    created = [await create_user(client, app, n, user_id=id_) for n, id_ in enumerate(ids, 1)]

    sip_users = [user["sip"]["username"] for user in created]
    assert len(set(sip_users)) == len(ids)


async def test_every_user_gets_its_own_sip_secret(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    first = await create_user(client, app, 1)
    second = await create_user(client, app, 2)

    assert first["sip"]["secret"] != second["sip"]["secret"]


async def test_the_sip_secret_shown_on_creation_is_the_one_usermapping_hands_the_sdk(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    created = await create_user(client, app, 1)

    response = await client.get(MAPPING_URL, params={"user_id": "agent_001"}, headers=auth(app))

    assert response.status_code == 200, response.text
    assert decode_from_sdk(response.json()["Data"]["SipSecret"]) == created["sip"]["secret"]


async def test_the_sip_secret_is_not_stored_in_plaintext(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    secret = (await create_user(client, app, 1))["sip"]["secret"]

    stored = await column_values(settings, "SELECT sip_secret_enc FROM users")

    assert len(stored) == 1
    assert stored[0]
    assert secret not in stored[0]


async def test_the_sip_secret_kept_for_idempotent_replays_is_not_stored_in_plaintext(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    response = await client.post(
        app.users_path, headers={**auth(app), "Idempotency-Key": "create-1"}, json=user_body(1)
    )
    secret = ok(response, 201)["sip"]["secret"]

    stored = await column_values(settings, "SELECT response_enc FROM idempotency_keys")

    assert len(stored) == 1
    assert secret not in stored[0]
    assert "agent1@example.com" not in stored[0]


async def test_the_token_is_accepted_bare_or_after_bearer(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    bare = await client.post(
        app.users_path, headers={"Authorization": app.token}, json=user_body(1)
    )
    bearer = await client.post(
        app.users_path, headers={"Authorization": f"Bearer {app.token}"}, json=user_body(2)
    )

    ok(bare, 201)
    ok(bearer, 201)


async def test_a_request_without_a_token_is_refused_with_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(app.users_path, json=user_body(1))

    assert error(response, 401)["code"] == "missing_token"
    assert await list_all_user_ids(client, app) == []


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["09876543210", "9876543210", "919876543210", "00919876543210", "+91 98765 43210"],
)
async def test_indian_phone_numbers_are_normalised_to_e164(
    client: httpx.AsyncClient, settings: Settings, raw: str
) -> None:
    app = await app_with_token(client, settings)

    data = ok(
        await client.post(app.users_path, headers=auth(app), json=user_body(1, phone_number=raw)),
        201,
    )

    assert data["phone_number"] == "+919876543210"
    assert data["devices"]["phone"]["number"] == "+919876543210"


async def test_a_national_virtual_number_is_normalised_to_e164(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    data = await create_user(client, app, 1, virtual_number="08047491899")

    assert data["virtual_number"] == "+918047491899"


@pytest.mark.parametrize("field", ["phone_number", "virtual_number"])
@pytest.mark.parametrize("raw", ["12345", "+1234", "phone", "1234567890", "+91987654321012"])
async def test_an_invalid_phone_number_is_rejected_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, field: str, raw: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path, headers=auth(app), json=user_body(1, **{field: raw})
    )

    assert invalid(response, field)["code"] == "validation_error"
    assert await list_all_user_ids(client, app) == []


@pytest.mark.parametrize("field", ["phone_number", "virtual_number"])
async def test_a_phone_number_with_an_extension_is_rejected_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path, headers=auth(app), json=user_body(1, **{field: "+919876543210ext5"})
    )

    assert invalid(response, field)["code"] == "validation_error"
    assert await list_all_user_ids(client, app) == []


@pytest.mark.parametrize("user_id", [".", ".."])
async def test_dot_and_dot_dot_are_refused_as_user_ids(
    client: httpx.AsyncClient, settings: Settings, user_id: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path, headers=auth(app), json=user_body(1, user_id=user_id)
    )

    assert invalid(response, "user_id")["code"] == "validation_error"
    assert await list_all_user_ids(client, app) == []


async def test_a_phone_number_sent_as_a_json_number_is_rejected(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path, headers=auth(app), json=user_body(1, phone_number=9876543210)
    )

    invalid(response, "phone_number")


@pytest.mark.parametrize("email", ["not-an-email", "agent@example", "agent one@example.com", ""])
async def test_an_invalid_email_is_rejected_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, email: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(app.users_path, headers=auth(app), json=user_body(1, email=email))

    invalid(response, "email")


async def test_an_email_is_stored_in_lowercase(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    data = await create_user(client, app, 1, email="Agent.One@Example.COM")

    assert data["email"] == "agent.one@example.com"


@pytest.mark.parametrize("field", ["user_id", "name", "email"])
async def test_a_missing_required_field_is_rejected_naming_it(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    app = await app_with_token(client, settings)
    body = user_body(1)
    del body[field]

    response = await client.post(app.users_path, headers=auth(app), json=body)

    assert f"'{field}' is required" in invalid(response, field)["message"]


async def test_phone_number_virtual_number_and_role_are_optional(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    body = {"user_id": "agent_001", "name": "Agent 1", "email": "agent1@example.com"}

    data = ok(await client.post(app.users_path, headers=auth(app), json=body), 201)

    assert data["phone_number"] is None
    assert data["virtual_number"] is None
    assert data["role"] == "user"


@pytest.mark.parametrize("role", ["admin", "supervisor", "user"])
async def test_each_documented_role_is_accepted(
    client: httpx.AsyncClient, settings: Settings, role: str
) -> None:
    app = await app_with_token(client, settings)

    data = await create_user(client, app, 1, role=role)

    assert data["role"] == role


@pytest.mark.parametrize("role", ["manager", "Admin", "", 1])
async def test_a_role_outside_admin_supervisor_and_user_is_rejected(
    client: httpx.AsyncClient, settings: Settings, role: object
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(app.users_path, headers=auth(app), json=user_body(1, role=role))

    invalid(response, "role")


@pytest.mark.parametrize("field", ["name", "user_id", "email"])
async def test_a_text_field_sent_as_a_number_is_rejected_naming_it(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path, headers=auth(app), json=user_body(1, **{field: 42})
    )

    invalid(response, field)


async def test_a_blank_name_is_rejected(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(app.users_path, headers=auth(app), json=user_body(1, name="   "))

    invalid(response, "name")


async def test_an_unknown_field_is_rejected_naming_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path, headers=auth(app), json=user_body(1, nickname="Ace")
    )

    assert "not a known field" in invalid(response, "nickname")["message"]
    assert await list_all_user_ids(client, app) == []


@pytest.mark.parametrize("user_id", ["agent/1", "agent 1", "agent?1", "agent#1", "agent%1", ""])
async def test_a_user_id_that_cannot_sit_in_a_url_path_is_rejected(
    client: httpx.AsyncClient, settings: Settings, user_id: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path, headers=auth(app), json=user_body(1, user_id=user_id)
    )

    invalid(response, "user_id")


async def test_a_body_that_is_not_json_is_rejected(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path,
        headers={**auth(app), "Content-Type": "application/json"},
        content=b"{not json",
    )

    assert error(response, 400)["message"] == "Request body is not valid JSON"


# --- conflicts ----------------------------------------------------------------------------


async def test_a_user_id_already_in_the_app_is_a_conflict_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    response = await client.post(
        app.users_path,
        headers=auth(app),
        json=user_body(2, user_id="agent_001", name="Someone Else"),
    )

    details = error(response, 409)
    assert details["code"] == "user_exists"
    assert "agent_001" in details["message"]
    kept = ok(await client.get(user_path(app, "agent_001"), headers=auth(app)))
    assert kept["name"] == "Agent 1"
    assert kept["email"] == "agent1@example.com"


async def test_an_email_already_in_the_app_is_a_conflict_whatever_its_case(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    response = await client.post(
        app.users_path, headers=auth(app), json=user_body(2, email="AGENT1@example.com")
    )

    details = error(response, 409)
    assert details["code"] == "user_exists"
    assert "agent1@example.com" in details["message"]
    assert await list_all_user_ids(client, app) == ["agent_001"]


async def test_the_same_user_id_and_email_may_exist_in_two_apps(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    first = await register_app(client, customer)
    second = await register_app(client, customer, AppName="Second")

    in_first = await create_user(client, first, 1)
    in_second = await create_user(client, second, 1)

    # Both apps are on one Exotel account, whose SIP domain they share.
    assert in_first["sip"]["username"] == "agent_001@exoteldemo.voip.exotel.com"
    assert in_second["sip"]["username"] == in_first["sip"]["username"]


async def test_concurrent_creations_of_one_user_id_create_exactly_one_user(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    responses = await asyncio.gather(
        *(
            client.post(
                app.users_path,
                headers=auth(app),
                json=user_body(n, user_id="agent_001"),
            )
            for n in range(1, 11)
        )
    )

    assert sorted(response.status_code for response in responses) == [201] + [409] * 9
    assert await list_all_user_ids(client, app) == ["agent_001"]


async def test_twenty_concurrent_creations_of_distinct_users_all_succeed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    responses = await asyncio.gather(
        *(client.post(app.users_path, headers=auth(app), json=user_body(n)) for n in range(20))
    )

    assert [response.status_code for response in responses] == [201] * 20, [
        response.text for response in responses if response.status_code != 201
    ]
    secrets = {response.json()["data"]["sip"]["secret"] for response in responses}
    assert len(secrets) == 20
    assert sorted(await list_all_user_ids(client, app)) == [f"agent_{n:03d}" for n in range(20)]


# --- reading ------------------------------------------------------------------------------


async def test_getting_a_user_returns_what_was_created(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    created = await create_user(client, app, 1, role="supervisor")

    fetched = ok(await client.get(user_path(app, "agent_001"), headers=auth(app)))

    del created["sip"]["secret"]
    assert fetched == created


@pytest.mark.parametrize("user_id", ["agent1@example.com", "agent+1@example.com", "crm:42"])
async def test_a_user_id_with_email_characters_works_in_the_path(
    client: httpx.AsyncClient, settings: Settings, user_id: str
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1, user_id=user_id)

    fetched = ok(await client.get(user_path(app, user_id), headers=auth(app)))
    updated = ok(
        await client.put(user_path(app, user_id), headers=auth(app), json={"role": "admin"})
    )
    deleted = ok(await client.delete(user_path(app, user_id), headers=auth(app)))

    assert fetched["user_id"] == user_id
    assert updated["role"] == "admin"
    assert deleted == {"user_id": user_id, "deleted": True}
    assert await list_all_user_ids(client, app) == []


async def test_getting_an_unknown_user_is_404_user_not_found(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    response = await client.get(user_path(app, "agent_999"), headers=auth(app))

    details = error(response, 404)
    assert details["code"] == "user_not_found"
    assert "agent_999" in details["message"]


async def test_listing_an_app_without_users_is_empty(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    data = ok(await client.get(app.users_path, headers=auth(app)))

    assert data == {"users": [], "has_more": False, "next_cursor": None}


async def test_listing_users_returns_them_in_creation_order(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    for n in (3, 1, 2):
        await create_user(client, app, n)

    data = ok(await client.get(app.users_path, headers=auth(app)))

    assert [user["user_id"] for user in data["users"]] == ["agent_003", "agent_001", "agent_002"]
    assert data["has_more"] is False
    assert data["next_cursor"] is None


async def test_paginating_over_25_users_visits_each_exactly_once_in_order(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    for n in range(25):
        await create_user(client, app, n)

    seen: list[str] = []
    page_sizes: list[int] = []
    params: dict[str, str | int] = {"limit": 10}
    while True:
        data = ok(await client.get(app.users_path, params=params, headers=auth(app)))
        seen += [user["user_id"] for user in data["users"]]
        page_sizes.append(len(data["users"]))
        if not data["has_more"]:
            assert data["next_cursor"] is None
            break
        assert isinstance(data["next_cursor"], str)
        params = {"limit": 10, "cursor": data["next_cursor"]}

    assert page_sizes == [10, 10, 5]
    assert seen == [f"agent_{n:03d}" for n in range(25)]


async def test_a_last_page_that_is_exactly_full_says_there_is_no_more(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    for n in range(4):
        await create_user(client, app, n)

    first = ok(await client.get(app.users_path, params={"limit": 2}, headers=auth(app)))
    second = ok(
        await client.get(
            app.users_path, params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth(app)
        )
    )

    assert first["has_more"] is True
    assert [user["user_id"] for user in second["users"]] == ["agent_002", "agent_003"]
    assert second["has_more"] is False
    assert second["next_cursor"] is None


@pytest.mark.parametrize(("name", "value"), [("limit", "0"), ("limit", "101"), ("cursor", "x")])
async def test_a_listing_parameter_out_of_range_is_rejected_naming_it(
    client: httpx.AsyncClient, settings: Settings, name: str, value: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.get(app.users_path, params={name: value}, headers=auth(app))

    details = error(response, 400)
    assert details["code"] == "validation_error"
    assert details["field"] == name
    assert f"Query parameter '{name}'" in details["message"]


async def test_deleting_a_user_between_pages_does_not_make_the_listing_skip_anyone(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    for n in range(6):
        await create_user(client, app, n)
    first = ok(await client.get(app.users_path, params={"limit": 3}, headers=auth(app)))

    await client.delete(user_path(app, "agent_001"), headers=auth(app))
    second = ok(
        await client.get(
            app.users_path, params={"limit": 3, "cursor": first["next_cursor"]}, headers=auth(app)
        )
    )

    assert [user["user_id"] for user in second["users"]] == ["agent_003", "agent_004", "agent_005"]
    assert second["has_more"] is False


# --- updating -----------------------------------------------------------------------------


async def test_updating_a_user_changes_only_the_fields_sent(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    created = await create_user(client, app, 1)

    updated = ok(
        await client.put(
            user_path(app, "agent_001"), headers=auth(app), json={"name": "Agent Renamed"}
        )
    )

    assert updated["name"] == "Agent Renamed"
    for field in ("user_id", "email", "phone_number", "virtual_number", "role", "created_at"):
        assert updated[field] == created[field]
    fetched = ok(await client.get(user_path(app, "agent_001"), headers=auth(app)))
    assert fetched == updated


async def test_updating_every_field_at_once(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)
    changes = {
        "name": "New Name",
        "email": "new@example.com",
        "phone_number": "09123456789",
        "virtual_number": "+918047491800",
        "role": "admin",
    }

    updated = ok(await client.put(user_path(app, "agent_001"), headers=auth(app), json=changes))

    assert {field: updated[field] for field in changes} == {
        **changes,
        "phone_number": "+919123456789",
    }
    assert updated["devices"]["phone"]["number"] == "+919123456789"


async def test_updating_a_user_keeps_its_sip_credentials(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    created = await create_user(client, app, 1)

    updated = ok(
        await client.put(
            user_path(app, "agent_001"), headers=auth(app), json={"email": "moved@example.com"}
        )
    )
    mapping = (
        await client.get(MAPPING_URL, params={"user_id": "agent_001"}, headers=auth(app))
    ).json()["Data"]

    assert updated["sip"] == {
        "username": created["sip"]["username"],
        "domain": created["sip"]["domain"],
    }
    assert decode_from_sdk(mapping["SipSecret"]) == created["sip"]["secret"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("phone_number", "12345"),
        ("virtual_number", "not a number"),
        ("email", "nobody"),
        ("role", "owner"),
        ("name", 7),
        ("name", ""),
    ],
)
async def test_an_invalid_update_is_rejected_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, field: str, value: object
) -> None:
    app = await app_with_token(client, settings)
    created = await create_user(client, app, 1)

    response = await client.put(
        user_path(app, "agent_001"), headers=auth(app), json={"role": "admin", field: value}
    )

    invalid(response, field)
    fetched = ok(await client.get(user_path(app, "agent_001"), headers=auth(app)))
    del created["sip"]["secret"]
    assert fetched == created


async def test_an_update_with_an_unknown_field_is_rejected_naming_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    response = await client.put(
        user_path(app, "agent_001"), headers=auth(app), json={"user_id": "agent_002"}
    )

    invalid(response, "user_id")
    assert await list_all_user_ids(client, app) == ["agent_001"]


async def test_updating_to_another_users_email_is_a_conflict(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)
    await create_user(client, app, 2)

    response = await client.put(
        user_path(app, "agent_002"), headers=auth(app), json={"email": "Agent1@example.com"}
    )

    assert error(response, 409)["code"] == "user_exists"
    fetched = ok(await client.get(user_path(app, "agent_002"), headers=auth(app)))
    assert fetched["email"] == "agent2@example.com"


async def test_updating_a_user_to_its_own_email_is_allowed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    response = await client.put(
        user_path(app, "agent_001"), headers=auth(app), json={"email": "AGENT1@example.com"}
    )

    assert ok(response)["email"] == "agent1@example.com"


async def test_updating_an_unknown_user_is_404_user_not_found(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(user_path(app, "agent_404"), headers=auth(app), json={"name": "X"})

    assert error(response, 404)["code"] == "user_not_found"


# --- deleting -----------------------------------------------------------------------------


async def test_deleting_a_user_removes_it(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)
    await create_user(client, app, 2)

    response = await client.delete(user_path(app, "agent_001"), headers=auth(app))

    assert ok(response) == {"user_id": "agent_001", "deleted": True}
    gone = await client.get(user_path(app, "agent_001"), headers=auth(app))
    assert error(gone, 404)["code"] == "user_not_found"
    assert await list_all_user_ids(client, app) == ["agent_002"]


async def test_deleting_an_unknown_user_is_404_user_not_found(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)
    await client.delete(user_path(app, "agent_001"), headers=auth(app))

    response = await client.delete(user_path(app, "agent_001"), headers=auth(app))

    assert error(response, 404)["code"] == "user_not_found"


async def test_a_deleted_user_id_and_email_can_be_used_again(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    first = await create_user(client, app, 1)
    await client.delete(user_path(app, "agent_001"), headers=auth(app))

    again = await create_user(client, app, 1)

    assert again["sip"]["username"] == first["sip"]["username"]
    assert again["sip"]["secret"] != first["sip"]["secret"]


# --- idempotency --------------------------------------------------------------------------


async def test_a_retried_creation_with_the_same_idempotency_key_replays_the_first_response(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    headers = {**auth(app), "Idempotency-Key": "create-agent-1"}

    first = await client.post(app.users_path, headers=headers, json=user_body(1))
    retry = await client.post(app.users_path, headers=headers, json=user_body(1))

    ok(first, 201)
    assert "Idempotent-Replayed" not in first.headers
    assert retry.status_code == 201
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert await list_all_user_ids(client, app) == ["agent_001"]


async def test_concurrent_retries_with_one_idempotency_key_create_one_user(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    headers = {**auth(app), "Idempotency-Key": "create-agent-1"}

    responses = await asyncio.gather(
        *(client.post(app.users_path, headers=headers, json=user_body(1)) for _ in range(5))
    )

    assert [response.status_code for response in responses] == [201] * 5, [
        response.text for response in responses
    ]
    assert len({response.json()["data"]["sip"]["secret"] for response in responses}) == 1
    assert [response.headers.get("Idempotent-Replayed") for response in responses].count(None) == 1
    assert await list_all_user_ids(client, app) == ["agent_001"]


async def test_an_idempotency_key_reused_with_a_different_body_is_a_conflict(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    headers = {**auth(app), "Idempotency-Key": "create-agent"}
    ok(await client.post(app.users_path, headers=headers, json=user_body(1)), 201)

    response = await client.post(app.users_path, headers=headers, json=user_body(2))

    assert error(response, 409)["code"] == "idempotency_key_reused"
    assert await list_all_user_ids(client, app) == ["agent_001"]


async def test_a_failed_creation_does_not_use_up_its_idempotency_key(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)
    headers = {**auth(app), "Idempotency-Key": "create-agent-1"}
    error(await client.post(app.users_path, headers=headers, json=user_body(1)), 409)
    await client.delete(user_path(app, "agent_001"), headers=auth(app))

    response = await client.post(app.users_path, headers=headers, json=user_body(1))

    ok(response, 201)
    assert "Idempotent-Replayed" not in response.headers


async def test_an_idempotency_key_belongs_to_one_app(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    first = await register_app(client, customer)
    second = await register_app(client, customer, AppName="Second", ExotelAccountSid="second")
    body = user_body(1)

    in_first = await client.post(
        first.users_path, headers={**auth(first), "Idempotency-Key": "k"}, json=body
    )
    in_second = await client.post(
        second.users_path, headers={**auth(second), "Idempotency-Key": "k"}, json=body
    )

    assert ok(in_second, 201)["sip"]["username"] == "agent_001@second.voip.exotel.com"
    assert "Idempotent-Replayed" not in in_second.headers
    assert ok(in_first, 201)["sip"]["secret"] != in_second.json()["data"]["sip"]["secret"]


async def test_a_malformed_idempotency_key_is_rejected(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        app.users_path, headers={**auth(app), "Idempotency-Key": "has space"}, json=user_body(1)
    )

    assert invalid(response, "Idempotency-Key")["code"] == "invalid_idempotency_key"
    assert await list_all_user_ids(client, app) == []


# --- tenant isolation ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_another_apps_user_is_not_found_through_its_path(
    client: httpx.AsyncClient, settings: Settings, method: str
) -> None:
    intruder = await app_with_token(client, settings)
    victim = await app_with_token(client, settings)
    created = await create_user(client, victim, 1)
    body = {"name": "Hijacked"} if method == "PUT" else None

    response = await client.request(
        method, user_path(victim, "agent_001"), headers=auth(intruder), json=body
    )

    assert error(response, 404)["code"] == "app_not_found"
    fetched = ok(await client.get(user_path(victim, "agent_001"), headers=auth(victim)))
    del created["sip"]["secret"]
    assert fetched == created


async def test_another_apps_users_cannot_be_listed_or_created_through_its_path(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    intruder = await app_with_token(client, settings)
    victim = await app_with_token(client, settings)
    await create_user(client, victim, 1)

    listed = await client.get(victim.users_path, headers=auth(intruder))
    created = await client.post(victim.users_path, headers=auth(intruder), json=user_body(2))

    assert error(listed, 404)["code"] == "app_not_found"
    assert error(created, 404)["code"] == "app_not_found"
    assert await list_all_user_ids(client, victim) == ["agent_001"]
    assert await list_all_user_ids(client, intruder) == []


async def test_another_app_of_the_same_customer_is_not_reachable_with_an_app_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    first = await register_app(client, customer)
    second = await register_app(client, customer, AppName="Second")
    await create_user(client, second, 1)

    response = await client.get(user_path(second, "agent_001"), headers=auth(first))

    assert error(response, 404)["code"] == "app_not_found"


async def test_a_customer_id_in_the_path_that_is_not_the_tokens_is_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    other = await customer_with_token(client, settings)
    await create_user(client, app, 1)
    path = f"/v2/integrations/{other.id}/apps/{app.id}/users"

    for response in (
        await client.get(path, headers=auth(app)),
        await client.get(f"{path}/agent_001", headers=auth(app)),
        await client.post(path, headers=auth(app), json=user_body(2)),
    ):
        assert error(response, 404)["code"] == "app_not_found"
    assert await list_all_user_ids(client, app) == ["agent_001"]


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("POST", "", user_body(2)),
        ("GET", "", None),
        ("GET", "/agent_001", None),
        ("PUT", "/agent_001", {"name": "Changed"}),
        ("DELETE", "/agent_001", None),
    ],
)
async def test_a_customer_token_on_a_user_endpoint_is_403(
    client: httpx.AsyncClient,
    settings: Settings,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    await create_user(client, app, 1)

    response = await client.request(
        method,
        app.users_path + suffix,
        headers={"Authorization": customer.token},
        json=body,
    )

    assert error(response, 403)["code"] == "wrong_entity"
    assert ok(await client.get(user_path(app, "agent_001"), headers=auth(app)))["name"] == "Agent 1"


async def test_renaming_a_user_renames_the_display_name_the_sdk_shows(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    await client.put(f"{app.users_path}/agent_001", headers=auth(app), json={"name": "New Name"})
    mapping = await client.get("/v2/integrations/usermapping?user_id=agent_001", headers=auth(app))

    assert mapping.json()["Data"]["ExotelUserName"] == "New Name"
