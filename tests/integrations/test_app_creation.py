"""Registering apps: validation, idempotency, concurrency, tenant isolation."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from exoplane.config import Settings
from tests.factories import APP_BODY, customer_with_token, register_app


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"AppName": None}, "AppName"),
        ({"ExotelAccountSid": None}, "ExotelAccountSid"),
        ({"ExotelApiKey": None}, "ExotelApiKey"),
        ({"ExotelApiToken": None}, "ExotelApiToken"),
        ({"ExotelDomain": "delhi"}, "ExotelDomain"),
        ({"ExotelDomain": None}, "ExotelDomain"),
        ({"IsActive": "true"}, "IsActive"),
        ({"IsActive": None}, "IsActive"),
        ({"AppName": 42}, "AppName"),
        ({"AppName": "   "}, "AppName"),
    ],
)
async def test_bad_registrations_are_400_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, change: dict[str, object], field: str
) -> None:
    customer = await customer_with_token(client, settings)
    body = {key: value for key, value in {**APP_BODY, **change}.items() if value is not None}

    response = await client.post(
        "/v2/integrations/app", headers={"Authorization": customer.token}, json=body
    )

    assert response.status_code == 400
    assert response.json()["Status"] == "Failed"
    assert f"'{field}'" in response.json()["Error"]


async def test_a_body_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)

    response = await client.post(
        "/v2/integrations/app", headers={"Authorization": customer.token}, json=[APP_BODY]
    )

    assert response.status_code == 400


async def test_fifty_concurrent_registrations_all_succeed_with_distinct_ids(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)

    responses = await asyncio.gather(
        *(
            client.post(
                "/v2/integrations/app",
                headers={"Authorization": customer.token},
                json={**APP_BODY, "AppName": f"App {n}"},
            )
            for n in range(50)
        )
    )

    assert [response.status_code for response in responses] == [200] * 50
    ids = {response.json()["Data"]["AppID"] for response in responses}
    listed = await client.get(
        "/v2/integrations/app?entity=customer", headers={"Authorization": customer.token}
    )
    assert len(ids) == 50
    assert {app["AppID"] for app in listed.json()["Data"]} == ids


async def test_a_retried_registration_with_the_same_key_replays_the_first_answer(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    headers = {"Authorization": customer.token, "Idempotency-Key": "register-1"}

    first = await client.post("/v2/integrations/app", headers=headers, json=APP_BODY)
    retry = await client.post("/v2/integrations/app", headers=headers, json=APP_BODY)
    listed = await client.get(
        "/v2/integrations/app?entity=customer", headers={"Authorization": customer.token}
    )

    assert retry.status_code == 200
    assert retry.json()["Data"] == first.json()["Data"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(listed.json()["Data"]) == 1


async def test_the_same_key_with_a_different_body_is_409(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    headers = {"Authorization": customer.token, "Idempotency-Key": "register-1"}

    await client.post("/v2/integrations/app", headers=headers, json=APP_BODY)
    reused = await client.post(
        "/v2/integrations/app", headers=headers, json={**APP_BODY, "AppName": "Other"}
    )

    assert reused.status_code == 409
    assert "Idempotency-Key" in reused.json()["Error"]


async def test_keys_belong_to_their_customer(client: httpx.AsyncClient, settings: Settings) -> None:
    first = await customer_with_token(client, settings)
    second = await customer_with_token(client, settings)

    one = await client.post(
        "/v2/integrations/app",
        headers={"Authorization": first.token, "Idempotency-Key": "k"},
        json=APP_BODY,
    )
    two = await client.post(
        "/v2/integrations/app",
        headers={"Authorization": second.token, "Idempotency-Key": "k"},
        json=APP_BODY,
    )

    assert two.status_code == 200
    assert two.json()["Data"]["AppID"] != one.json()["Data"]["AppID"]
    assert two.json()["Data"]["CustomerID"] == second.id


async def test_concurrent_retries_with_one_key_create_one_app(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    headers = {"Authorization": customer.token, "Idempotency-Key": "double-click"}

    responses = await asyncio.gather(
        *(client.post("/v2/integrations/app", headers=headers, json=APP_BODY) for _ in range(5))
    )
    listed = await client.get(
        "/v2/integrations/app?entity=customer", headers={"Authorization": customer.token}
    )

    succeeded = [r for r in responses if r.status_code == 200]
    assert succeeded
    assert all(r.status_code in (200, 409) for r in responses)
    assert {r.json()["Data"]["AppID"] for r in succeeded} == {listed.json()["Data"][0]["AppID"]}
    assert len(listed.json()["Data"]) == 1


async def test_an_invalid_idempotency_key_is_400(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)

    response = await client.post(
        "/v2/integrations/app",
        headers={"Authorization": customer.token, "Idempotency-Key": "x" * 300},
        json=APP_BODY,
    )

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["Error"]


async def test_a_customer_sees_and_deletes_only_its_own_apps(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    alice = await customer_with_token(client, settings)
    bob = await customer_with_token(client, settings)
    alices_app = await register_app(client, alice)
    await register_app(client, bob)

    bobs_list = await client.get(
        "/v2/integrations/app?entity=customer", headers={"Authorization": bob.token}
    )
    bob_reads_alices = await client.get(
        f"/v2/integrations/{alice.id}/apps/{alices_app.id}", headers={"Authorization": bob.token}
    )
    bob_via_own_path = await client.get(
        f"/v2/integrations/{bob.id}/apps/{alices_app.id}", headers={"Authorization": bob.token}
    )
    alice_reads = await client.get(
        f"/v2/integrations/{alice.id}/apps/{alices_app.id}",
        headers={"Authorization": alice.token},
    )

    assert alices_app.id not in {app["AppID"] for app in bobs_list.json()["Data"]}
    assert bob_reads_alices.status_code == 404
    assert bob_via_own_path.status_code == 404
    assert alice_reads.status_code == 200
    assert alice_reads.json()["data"]["app_id"] == alices_app.id
    assert "secret" not in alice_reads.text.lower()
