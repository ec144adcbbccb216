"""Customers administered over /api/v1: list, create, rename, disable, delete, rotate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import APP_BODY, customer_with_token, register_app
from tests.voicebot.factories import AUDIT, Operator, error_of

CUSTOMERS = "/api/v1/customers"
TOKEN = "/v2/integrations/token"
OTHER_ID = "00000000-0000-4000-8000-000000000000"
ROUTES = [
    ("GET", CUSTOMERS, None),
    ("POST", CUSTOMERS, {"name": "Acme"}),
    ("GET", CUSTOMERS + "/{id}", None),
    ("PATCH", CUSTOMERS + "/{id}", {"name": "Acme 2"}),
    ("DELETE", CUSTOMERS + "/{id}", None),
    ("POST", CUSTOMERS + "/{id}/secret", {}),
    ("GET", CUSTOMERS + "/{id}/apps", None),
]


async def create(client: httpx.AsyncClient, operator: Operator, name: str) -> dict[str, Any]:
    response = await client.post(CUSTOMERS, headers=operator.headers, json={"name": name})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def mint(client: httpx.AsyncClient, entity: str, id_: str, secret: str) -> httpx.Response:
    return await client.post(TOKEN, json={"Id": id_, "Secret": secret, "Entity": entity})


async def audit_entries(client: httpx.AsyncClient, operator: Operator) -> list[dict[str, Any]]:
    response = await client.get(AUDIT, headers=operator.headers, params={"limit": 200})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=lambda v: str(v))
async def test_an_admin_is_refused_every_customer_route(
    client: httpx.AsyncClient,
    super_admin: Operator,
    admin: Operator,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    customer = await create(client, super_admin, "Acme")

    response = await client.request(
        method, path.format(id=customer["id"]), headers=admin.headers, json=body
    )

    assert error_of(response, 403)["code"] == "insufficient_role"


async def test_a_created_customer_shows_its_secret_once_and_the_secret_mints_tokens(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "Acme")

    listed = await client.get(CUSTOMERS, headers=super_admin.headers)
    one = await client.get(f"{CUSTOMERS}/{created['id']}", headers=super_admin.headers)

    assert created["name"] == "Acme"
    assert created["disabled"] is False
    assert (await mint(client, "customer", created["id"], created["secret"])).status_code == 200
    assert created["secret"] not in listed.text
    assert created["secret"] not in one.text
    assert listed.json()["customers"] == [one.json()]
    assert "secret" not in one.json()


async def test_customers_are_listed_page_by_page_and_searched_by_name(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    names = ["Acme", "Globex", "acme labs", "Initech", "ACME India"]
    for name in names:
        await create(client, super_admin, name)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(CUSTOMERS, headers=super_admin.headers, params=params)).json()
        seen += [customer["name"] for customer in page["customers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    found = await client.get(CUSTOMERS, headers=super_admin.headers, params={"search": "acme"})

    assert seen == names
    assert [customer["name"] for customer in found.json()["customers"]] == [
        "Acme",
        "acme labs",
        "ACME India",
    ]


async def test_search_treats_wildcards_as_plain_text(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    await create(client, super_admin, "Acme")
    await create(client, super_admin, "100% Fresh")

    found = await client.get(CUSTOMERS, headers=super_admin.headers, params={"search": "%"})

    assert [customer["name"] for customer in found.json()["customers"]] == ["100% Fresh"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": OTHER_ID}, "cursor"),
        ({"cursor": "not a cursor!"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"search": "x" * 201}, "search"),
    ],
)
async def test_a_bad_listing_parameter_is_refused_naming_it(
    client: httpx.AsyncClient, super_admin: Operator, params: dict[str, Any], field: str
) -> None:
    response = await client.get(CUSTOMERS, headers=super_admin.headers, params=params)

    assert response.status_code in (400, 422), response.text
    assert field in response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "name"), ({"name": "   "}, "name"), ({"name": "x" * 201}, "name"), ({"name": 3}, "name")],
)
async def test_a_customer_needs_a_name(
    client: httpx.AsyncClient, super_admin: Operator, body: dict[str, Any], field: str
) -> None:
    response = await client.post(CUSTOMERS, headers=super_admin.headers, json=body)

    assert response.status_code in (400, 422), response.text
    assert field in response.text


async def test_renaming_a_customer_changes_only_its_name(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "Acme")

    response = await client.patch(
        f"{CUSTOMERS}/{created['id']}", headers=super_admin.headers, json={"name": "Acme Corp"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Acme Corp"
    assert response.json()["disabled"] is False
    assert (await mint(client, "customer", created["id"], created["secret"])).status_code == 200


async def test_a_disabled_customer_and_its_apps_are_refused_until_enabled_again(
    client: httpx.AsyncClient, super_admin: Operator, settings: Any
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    path = f"{CUSTOMERS}/{customer.id}"

    disabled = await client.patch(path, headers=super_admin.headers, json={"disabled": True})
    customer_call = await client.get(
        "/v2/integrations/app?entity=customer", headers={"Authorization": customer.token}
    )
    app_call = await client.get("/v2/integrations/app", headers={"Authorization": app.token})
    customer_mint = await mint(client, "customer", customer.id, customer.secret)
    app_mint = await mint(client, "app", app.id, app.secret)
    await client.patch(path, headers=super_admin.headers, json={"disabled": False})
    enabled_call = await client.get("/v2/integrations/app", headers={"Authorization": app.token})

    assert disabled.json()["disabled"] is True
    for refused in (customer_call, app_call, customer_mint, app_mint):
        assert refused.status_code == 401, refused.text
        assert "disabled" in refused.text
    assert enabled_call.status_code == 200, enabled_call.text
    assert (await mint(client, "customer", customer.id, customer.secret)).status_code == 200


async def test_a_wrong_secret_for_a_disabled_customer_reads_as_invalid_credentials(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "Acme")
    await client.patch(
        f"{CUSTOMERS}/{created['id']}", headers=super_admin.headers, json={"disabled": True}
    )

    response = await mint(client, "customer", created["id"], "not-the-secret-at-all")

    assert response.status_code == 401
    assert "disabled" not in response.text


async def test_deleting_a_customer_removes_it_its_apps_and_its_tokens(
    client: httpx.AsyncClient, super_admin: Operator, settings: Any
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)

    deleted = await client.delete(f"{CUSTOMERS}/{customer.id}", headers=super_admin.headers)
    again = await client.get(f"{CUSTOMERS}/{customer.id}", headers=super_admin.headers)
    app_call = await client.get("/v2/integrations/app", headers={"Authorization": app.token})

    assert deleted.json() == {"id": customer.id, "deleted": True}
    assert error_of(again, 404)["code"] == "customer_not_found"
    assert app_call.status_code == 401
    assert (await mint(client, "app", app.id, app.secret)).status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), ROUTES[2:], ids=lambda v: str(v))
async def test_an_unknown_customer_is_404(
    client: httpx.AsyncClient,
    super_admin: Operator,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    response = await client.request(
        method, path.format(id=OTHER_ID), headers=super_admin.headers, json=body
    )

    assert error_of(response, 404)["code"] == "customer_not_found"


async def test_a_rotated_secret_leaves_the_old_one_working_for_the_grace_period(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "Acme")

    rotated = await client.post(
        f"{CUSTOMERS}/{created['id']}/secret",
        headers=super_admin.headers,
        json={"grace_seconds": 3600},
    )

    new_secret = rotated.json()["secret"]
    assert rotated.status_code == 200, rotated.text
    assert new_secret != created["secret"]
    assert rotated.json()["previous_secret_expires_at"]
    assert (await mint(client, "customer", created["id"], created["secret"])).status_code == 200
    assert (await mint(client, "customer", created["id"], new_secret)).status_code == 200


async def test_a_rotation_without_grace_stops_the_old_secret_at_once(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "Acme")

    rotated = await client.post(
        f"{CUSTOMERS}/{created['id']}/secret",
        headers=super_admin.headers,
        json={"grace_seconds": 0},
    )

    assert (await mint(client, "customer", created["id"], created["secret"])).status_code == 401
    assert (
        await mint(client, "customer", created["id"], rotated.json()["secret"])
    ).status_code == 200


async def test_a_second_rotation_ends_the_first_secret_s_grace(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "Acme")
    path = f"{CUSTOMERS}/{created['id']}/secret"

    first = (await client.post(path, headers=super_admin.headers)).json()
    second = (await client.post(path, headers=super_admin.headers)).json()

    assert (await mint(client, "customer", created["id"], created["secret"])).status_code == 401
    assert (await mint(client, "customer", created["id"], first["secret"])).status_code == 200
    assert (await mint(client, "customer", created["id"], second["secret"])).status_code == 200


@pytest.mark.parametrize("grace", [-1, 7 * 24 * 3600 + 1, 1.5, "60", None, 2**63])
async def test_a_grace_period_out_of_bounds_is_refused_naming_it(
    client: httpx.AsyncClient, super_admin: Operator, grace: Any
) -> None:
    created = await create(client, super_admin, "Acme")

    response = await client.post(
        f"{CUSTOMERS}/{created['id']}/secret",
        headers=super_admin.headers,
        json={"grace_seconds": grace},
    )

    assert response.status_code in (400, 422), response.text
    assert "grace_seconds" in response.text
    assert (await mint(client, "customer", created["id"], created["secret"])).status_code == 200


async def test_a_customer_s_apps_are_listed_without_secrets(
    client: httpx.AsyncClient, super_admin: Operator, settings: Any
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    await register_app(client, await customer_with_token(client, settings))

    response = await client.get(f"{CUSTOMERS}/{customer.id}/apps", headers=super_admin.headers)

    assert response.status_code == 200, response.text
    assert [listed["id"] for listed in response.json()["apps"]] == [app.id]
    assert response.json()["apps"][0]["name"] == APP_BODY["AppName"]
    for secret in (app.secret, app.token, APP_BODY["ExotelApiKey"], APP_BODY["ExotelApiToken"]):
        assert secret not in response.text


async def test_every_customer_change_is_audited_without_its_secret(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    created = await create(client, super_admin, "Acme")
    path = f"{CUSTOMERS}/{created['id']}"
    await client.patch(path, headers=super_admin.headers, json={"name": "Acme Corp"})
    await client.patch(path, headers=super_admin.headers, json={"disabled": True})
    rotated = (await client.post(path + "/secret", headers=super_admin.headers)).json()
    await client.get(CUSTOMERS, headers=super_admin.headers)
    await client.delete(path, headers=super_admin.headers)

    entries = await audit_entries(client, super_admin)
    text = str(entries)

    assert [entry["action"] for entry in entries] == [
        "customer.delete",
        "customer.rotate_secret",
        "customer.update",
        "customer.update",
        "customer.create",
    ]
    assert {entry["target"] for entry in entries} == {f"customers/{created['id']}"}
    assert {entry["operator"] for entry in entries} == {super_admin.email}
    assert entries[2]["details"] == {"disabled": True}
    assert created["secret"] not in text
    assert rotated["secret"] not in text
