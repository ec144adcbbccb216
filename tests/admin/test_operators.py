"""Operators administered over /api/v1: list, create, change role, disable, rotate the key."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from exoplane.config import Settings
from exoplane.logs import configure_logging
from tests.voicebot.factories import AUDIT, Operator, create_operator, error_of

OPERATORS = "/api/v1/operators"
OTHER_ID = "00000000-0000-4000-8000-000000000000"
ROUTES = [
    ("GET", OPERATORS, None),
    ("POST", OPERATORS, {"email": "new@example.com", "role": "admin"}),
    ("PATCH", OPERATORS + "/{id}", {"role": "admin"}),
    ("POST", OPERATORS + "/{id}/api-key", None),
]


async def listed(client: httpx.AsyncClient, operator: Operator) -> list[dict[str, Any]]:
    response = await client.get(OPERATORS, headers=operator.headers)
    assert response.status_code == 200, response.text
    operators: list[dict[str, Any]] = response.json()["operators"]
    return operators


async def id_of(client: httpx.AsyncClient, by: Operator, email: str) -> str:
    return next(str(row["id"]) for row in await listed(client, by) if row["email"] == email)


async def create(client: httpx.AsyncClient, by: Operator, email: str, role: str) -> Operator:
    response = await client.post(OPERATORS, headers=by.headers, json={"email": email, "role": role})
    assert response.status_code == 201, response.text
    body = response.json()
    return Operator(body["email"], body["role"], body["api_key"], body["password"])


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=lambda v: str(v))
async def test_an_admin_is_refused_every_operator_route(
    client: httpx.AsyncClient,
    super_admin: Operator,
    admin: Operator,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    target = await id_of(client, super_admin, admin.email)

    response = await client.request(
        method, path.format(id=target), headers=admin.headers, json=body
    )

    assert error_of(response, 403)["code"] == "insufficient_role"


async def test_operators_are_listed_with_roles_and_never_a_password_key_or_hash(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    response = await client.get(OPERATORS, headers=super_admin.headers)

    rows = response.json()["operators"]
    assert [(row["email"], row["role"], row["disabled"]) for row in rows] == [
        (super_admin.email, "super_admin", False),
        (admin.email, "admin", False),
    ]
    assert response.json()["next_cursor"] is None
    for field in ("password", "api_key", "password_hash", "api_key_hash"):
        assert field not in response.text
    for secret in (super_admin.api_key, admin.api_key, super_admin.password, admin.password):
        assert secret not in response.text


async def test_a_created_operator_gets_a_working_key_shown_once(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "New@Example.com", "admin")

    settings = await client.get("/api/v1/settings", headers=created.headers)
    rows = await listed(client, super_admin)

    assert created.email == "new@example.com"
    assert settings.status_code == 200, settings.text
    assert created.api_key not in str(rows)


async def test_an_operator_email_is_taken_once(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    response = await client.post(
        OPERATORS, headers=super_admin.headers, json={"email": admin.email, "role": "admin"}
    )

    assert error_of(response, 409)["code"] == "operator_exists"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "role": "admin"}, "email"),
        ({"email": "a@example.com", "role": "root"}, "role"),
        ({"email": "a@example.com"}, "role"),
        ({"role": "admin"}, "email"),
    ],
)
async def test_a_bad_operator_is_refused_naming_the_field(
    client: httpx.AsyncClient, super_admin: Operator, body: dict[str, Any], field: str
) -> None:
    response = await client.post(OPERATORS, headers=super_admin.headers, json=body)

    assert response.status_code in (400, 422), response.text
    assert field in response.text


async def test_a_promoted_admin_may_use_super_admin_routes(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    target = await id_of(client, super_admin, admin.email)

    changed = await client.patch(
        f"{OPERATORS}/{target}", headers=super_admin.headers, json={"role": "super_admin"}
    )

    assert changed.json()["role"] == "super_admin"
    assert (await client.get(OPERATORS, headers=admin.headers)).status_code == 200


async def test_a_disabled_operator_s_key_is_refused_until_enabled_again(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    path = f"{OPERATORS}/{await id_of(client, super_admin, admin.email)}"

    disabled = await client.patch(path, headers=super_admin.headers, json={"disabled": True})
    refused = await client.get("/api/v1/settings", headers=admin.headers)
    await client.patch(path, headers=super_admin.headers, json={"disabled": False})
    allowed = await client.get("/api/v1/settings", headers=admin.headers)

    assert disabled.json()["disabled"] is True
    assert error_of(refused, 401)["code"] == "invalid_api_key"
    assert allowed.status_code == 200


async def test_a_rotated_api_key_replaces_the_old_one_at_once(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    target = await id_of(client, super_admin, admin.email)

    rotated = await client.post(f"{OPERATORS}/{target}/api-key", headers=super_admin.headers)

    new_key = rotated.json()["api_key"]
    assert rotated.json()["id"] == target
    assert (await client.get("/api/v1/settings", headers=admin.headers)).status_code == 401
    fresh = {"Authorization": f"Bearer {new_key}"}
    assert (await client.get("/api/v1/settings", headers=fresh)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"), [({"role": "admin"}, "role"), ({"disabled": True}, "disabled")]
)
async def test_the_last_active_super_admin_cannot_demote_or_disable_themselves(
    client: httpx.AsyncClient,
    super_admin: Operator,
    admin: Operator,
    body: dict[str, Any],
    field: str,
) -> None:
    path = f"{OPERATORS}/{await id_of(client, super_admin, super_admin.email)}"

    response = await client.patch(path, headers=super_admin.headers, json=body)

    error = error_of(response, 409)
    assert error["code"] == "last_super_admin"
    assert error["field"] == field
    assert (await client.get(OPERATORS, headers=super_admin.headers)).status_code == 200


async def test_a_super_admin_may_step_down_while_another_remains(
    client: httpx.AsyncClient, super_admin: Operator, settings: Settings
) -> None:
    other = await create_operator(settings, "second@example.com", "super_admin")
    path = f"{OPERATORS}/{await id_of(client, super_admin, super_admin.email)}"

    response = await client.patch(path, headers=super_admin.headers, json={"role": "admin"})
    last = f"{OPERATORS}/{await id_of(client, other, other.email)}"
    refused = await client.patch(last, headers=other.headers, json={"disabled": True})

    assert response.status_code == 200, response.text
    assert error_of(refused, 409)["code"] == "last_super_admin"


async def test_an_unknown_operator_is_404(client: httpx.AsyncClient, super_admin: Operator) -> None:
    changed = await client.patch(
        f"{OPERATORS}/{OTHER_ID}", headers=super_admin.headers, json={"role": "admin"}
    )
    rotated = await client.post(f"{OPERATORS}/{OTHER_ID}/api-key", headers=super_admin.headers)

    assert error_of(changed, 404)["code"] == "operator_not_found"
    assert error_of(rotated, 404)["code"] == "operator_not_found"


async def test_operators_are_listed_page_by_page(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    for n in range(4):
        await create(client, super_admin, f"op{n}@example.com", "admin")

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(OPERATORS, headers=super_admin.headers, params=params)).json()
        seen += [row["email"] for row in page["operators"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == [super_admin.email] + [f"op{n}@example.com" for n in range(4)]


async def test_every_operator_change_is_audited_without_passwords_or_keys(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "new@example.com", "admin")
    path = f"{OPERATORS}/{await id_of(client, super_admin, created.email)}"
    await client.patch(path, headers=super_admin.headers, json={"role": "super_admin"})
    await client.patch(path, headers=super_admin.headers, json={"disabled": True})
    rotated = (await client.post(path + "/api-key", headers=super_admin.headers)).json()

    response = await client.get(AUDIT, headers=super_admin.headers)
    entries = response.json()["entries"]

    assert [entry["action"] for entry in entries] == [
        "operator.rotate_api_key",
        "operator.update",
        "operator.update",
        "operator.create",
    ]
    assert entries[-1]["details"] == {"email": "new@example.com", "role": "admin"}
    for secret in (created.api_key, created.password, rotated["api_key"], super_admin.api_key):
        assert secret not in response.text


async def test_no_log_line_contains_a_secret_password_or_key_shown_by_administration(
    client: httpx.AsyncClient, settings: Settings, super_admin: Operator
) -> None:
    captured = io.StringIO()
    configure_logging(settings, stream=captured)

    created = await create(client, super_admin, "new@example.com", "admin")
    path = f"{OPERATORS}/{await id_of(client, super_admin, created.email)}"
    rotated = (await client.post(path + "/api-key", headers=super_admin.headers)).json()
    customer = (
        await client.post("/api/v1/customers", headers=super_admin.headers, json={"name": "A"})
    ).json()
    secret = (
        await client.post(f"/api/v1/customers/{customer['id']}/secret", headers=super_admin.headers)
    ).json()

    log = captured.getvalue()
    assert log.count('"event": "request"') >= 4
    for value in (
        created.api_key,
        created.password,
        rotated["api_key"],
        customer["secret"],
        secret["secret"],
        super_admin.api_key,
    ):
        assert value not in log
