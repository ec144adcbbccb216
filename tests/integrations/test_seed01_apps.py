"""Seed 01 (Application Management), example by example, over ASGI."""

from __future__ import annotations

import re
import uuid

import httpx

from exoplane.config import Settings
from tests.factories import APP_BODY, customer_with_token, get_token, register_app

SEED_CREATE_FIELDS = {
    "AppID",
    "AppSecret",
    "CustomerID",
    "AppName",
    "ExotelAccountSid",
    "ExotelApiKey",
    "ExotelApiToken",
    "ExotelDomain",
    "IsActive",
    "CreatedAt",
    "UpdatedAt",
}
SEED_GET_FIELDS = SEED_CREATE_FIELDS - {"AppSecret", "ExotelApiKey", "ExotelApiToken"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def assert_success(response: httpx.Response) -> object:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"RequestId", "Status", "Code", "Error", "Data"}
    assert body["Status"] == "Success"
    assert body["Code"] == 200
    assert body["Error"] == ""
    assert str(uuid.UUID(body["RequestId"])) == body["RequestId"]
    assert response.headers["X-Request-ID"] == body["RequestId"]
    return body["Data"]


async def test_register_application_answers_with_the_seed_fields_and_types(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)

    response = await client.post(
        "/v2/integrations/app",
        headers={"Authorization": customer.token, "Content-Type": "application/json"},
        json=APP_BODY,
    )

    data = assert_success(response)
    assert isinstance(data, dict)
    assert set(data) == SEED_CREATE_FIELDS
    uuid.UUID(data["AppID"])
    uuid.UUID(data["AppSecret"])
    assert data["CustomerID"] == customer.id
    assert data["AppName"] == "WebRTC"
    assert data["ExotelAccountSid"] == "exoteldemo"
    assert data["ExotelApiKey"] == "your_api_key"
    assert data["ExotelApiToken"] == "your_api_token"
    assert data["ExotelDomain"] == "mumbai"
    assert data["IsActive"] is True
    assert RFC3339.match(data["CreatedAt"])
    assert RFC3339.match(data["UpdatedAt"])


async def test_get_application_details_never_shows_secrets(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await register_app(client, await customer_with_token(client, settings))

    for url in ("/v2/integrations/app?entity=app", "/v2/integrations/app"):
        data = assert_success(await client.get(url, headers={"Authorization": app.token}))
        assert isinstance(data, dict)
        assert set(data) == SEED_GET_FIELDS
        assert data["AppID"] == app.id
        assert data["CustomerID"] == app.customer_id
        assert data["IsActive"] is True


async def test_list_all_applications_of_a_customer(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    first = await register_app(client, customer)
    second = await register_app(client, customer, AppName="Second", ExotelDomain="singapore")

    data = assert_success(
        await client.get(
            "/v2/integrations/app?entity=customer", headers={"Authorization": customer.token}
        )
    )

    assert isinstance(data, list)
    assert [item["AppID"] for item in data] == [first.id, second.id]
    assert all(set(item) == SEED_GET_FIELDS for item in data)
    assert data[1]["ExotelDomain"] == "singapore"


async def test_delete_application_answers_deleted_successfully(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)

    data = assert_success(
        await client.delete("/v2/integrations/app", headers={"Authorization": app.token})
    )

    assert data == "Deleted Successfully"


async def test_a_deleted_app_is_gone_with_its_tokens(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    await client.delete("/v2/integrations/app", headers={"Authorization": app.token})

    with_old_token = await client.get("/v2/integrations/app", headers={"Authorization": app.token})
    as_resource = await client.get(
        f"/v2/integrations/{customer.id}/apps/{app.id}", headers={"Authorization": customer.token}
    )
    listed = await client.get(
        "/v2/integrations/app?entity=customer", headers={"Authorization": customer.token}
    )
    new_token = await client.post(
        "/v2/integrations/token", json={"Id": app.id, "Secret": app.secret, "Entity": "app"}
    )

    assert with_old_token.status_code == 401
    assert with_old_token.json()["Status"] == "Failed"
    assert as_resource.status_code == 404
    assert as_resource.json()["error"]["code"] == "app_not_found"
    assert listed.json()["Data"] == []
    assert new_token.status_code == 401


async def test_app_token_from_the_saved_app_id_and_secret(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await register_app(client, await customer_with_token(client, settings))

    token = await get_token(client, "app", app.id, app.secret)

    response = await client.get("/v2/integrations/app", headers={"Authorization": token})
    assert response.json()["Data"]["AppID"] == app.id
