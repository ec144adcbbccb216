"""Users through the Exotel-compatible endpoints (exotel-facts §1.7): /usermapping and /users."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pytest

from exoplane.config import Settings
from exoplane.integrations.sdk_secret import decode_from_sdk
from tests.factories import (
    RegisteredApp,
    app_with_token,
    create_user,
    customer_with_token,
    mapping_body,
    register_app,
)

MAPPING_URL = "/v2/integrations/usermapping"
USERS_URL = "/v2/integrations/users"
APP_URL = "/v2/integrations/app"
MAPPING_FIELDS = {
    "CustomerId",
    "AppID",
    "AppUserId",
    "ExotelAccountSid",
    "ExotelUserId",
    "AppUsername",
    "ExotelUserName",
    "AgentNumber",
    "ActiveDeviceId",
    "PhoneDeviceID",
    "SipDeviceID",
    "VirtualNumber",
    "Email",
    "OutboundActive",
    "Role",
    "SipId",
    "SipSecret",
    "IsActive",
    "UserDetail",
    "CreatedAt",
    "UpdatedAt",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
SDK_SECRET = re.compile(r"^[0-9a-f]{32}(?:[0-9a-f]{2})+$")


def new_mapping(n: int = 1, **overrides: Any) -> dict[str, Any]:
    """``mapping_body`` with an 11-digit national AgentNumber (0 + a 10-digit mobile)."""
    return mapping_body(n, **{"AgentNumber": f"09876{n:06d}", **overrides})


def auth(app: RegisteredApp) -> dict[str, str]:
    return {"Authorization": app.token}


def success(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"RequestId", "Status", "Code", "Error", "Data"}
    assert body["Status"] == "Success"
    assert body["Code"] == 200
    assert body["Error"] == ""
    assert str(uuid.UUID(body["RequestId"])) == body["RequestId"]
    assert response.headers["X-Request-ID"] == body["RequestId"]
    return body["Data"]


def failed(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"RequestId", "Status", "Code", "Error", "Data"}
    assert body["Status"] == "Failed"
    assert body["Code"] == status
    assert body["Data"] is None
    assert body["RequestId"] == response.headers["X-Request-ID"]
    message: str = body["Error"]
    assert message
    return message


async def map_users(
    client: httpx.AsyncClient, app: RegisteredApp, *bodies: dict[str, Any]
) -> list[dict[str, Any]]:
    data = success(await client.post(MAPPING_URL, headers=auth(app), json=list(bodies)))
    assert isinstance(data, list)
    return data


async def get_mapping(
    client: httpx.AsyncClient, app: RegisteredApp, user_id: str
) -> dict[str, Any]:
    data = success(await client.get(MAPPING_URL, params={"user_id": user_id}, headers=auth(app)))
    assert isinstance(data, dict)
    return data


async def mapped_user_ids(client: httpx.AsyncClient, app: RegisteredApp) -> list[str]:
    response = await client.get(MAPPING_URL, params={"page_size": 100}, headers=auth(app))
    data = success(response)
    assert data["LastEvaluatedValue"] == ""
    return [user["AppUserId"] for user in data["Users"]]


async def delete_with_body(
    client: httpx.AsyncClient, app: RegisteredApp, url: str, body: Any
) -> httpx.Response:
    return await client.request("DELETE", url, headers=auth(app), json=body)


# --- creating -----------------------------------------------------------------------------


async def test_mapping_users_answers_with_one_mapping_per_item_in_order(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    data = await map_users(client, app, new_mapping(1), new_mapping(2))

    assert [mapping["AppUserId"] for mapping in data] == [
        "agent1@example.com",
        "agent2@example.com",
    ]
    assert all(MAPPING_FIELDS <= set(mapping) for mapping in data)


async def test_a_mapping_has_the_exotel_field_names_and_values(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1, Role="supervisor"))

    mapping = await get_mapping(client, app, "agent1@example.com")

    assert MAPPING_FIELDS <= set(mapping)
    assert mapping["CustomerId"] == app.customer_id
    assert mapping["AppID"] == app.id
    assert mapping["AppUserId"] == "agent1@example.com"
    assert mapping["ExotelAccountSid"] == "exoteldemo"
    assert mapping["AppUsername"] == "Agent Number1"
    assert mapping["ExotelUserName"] == "Agent Number1"
    assert mapping["AgentNumber"] == "+919876000001"
    assert mapping["VirtualNumber"] == "+918047491899"
    assert mapping["Email"] == "agent1@example.com"
    assert mapping["Role"] == "supervisor"
    assert mapping["OutboundActive"] is True
    assert mapping["IsActive"] is True
    assert mapping["UserDetail"] is None
    assert mapping["ActiveDeviceId"] in (mapping["PhoneDeviceID"], mapping["SipDeviceID"])
    assert mapping["PhoneDeviceID"] != mapping["SipDeviceID"]
    assert isinstance(mapping["ExotelUserId"], str)
    assert RFC3339.match(mapping["CreatedAt"])
    assert RFC3339.match(mapping["UpdatedAt"])


async def test_sip_id_is_sip_followed_by_the_user_part_of_the_sip_username(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1, AppUserId="agent_7"))

    mapping = await get_mapping(client, app, "agent_7")
    resource = (await client.get(f"{app.users_path}/agent_7", headers=auth(app))).json()["data"]

    assert mapping["SipId"] == "sip:agent_7"
    assert resource["sip"]["username"] == "agent_7@exoteldemo.voip.exotel.com"
    assert mapping["SipId"].split(":")[1] == resource["sip"]["username"].split("@")[0]


@pytest.mark.parametrize("user_id", ["crm:42", "agent+1@example.com", "sip:a@b.c"])
async def test_sip_id_splits_on_its_colon_into_the_sip_user_whatever_the_user_id(
    client: httpx.AsyncClient, settings: Settings, user_id: str
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1, AppUserId=user_id))

    mapping = await get_mapping(client, app, user_id)
    resource = (await client.get(app.users_path, headers=auth(app))).json()["data"]["users"][0]

    parts = mapping["SipId"].split(":")
    assert len(parts) == 2
    assert parts[0] == "sip"
    assert parts[1] == resource["sip"]["username"].split("@")[0]
    assert resource["sip"]["username"].endswith("@exoteldemo.voip.exotel.com")
    assert resource["sip"]["username"].count("@") == 1


@pytest.mark.parametrize("user_id", ["agent_7", "asha.verma@example.com", "crm:42"])
async def test_the_sdks_sip_identity_from_usermapping_is_the_resource_apis_sip_username(
    client: httpx.AsyncClient, settings: Settings, user_id: str
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1, AppUserId=user_id))

    mapping = await get_mapping(client, app, user_id)
    app_data = (await client.get(APP_URL, headers=auth(app))).json()["Data"]
    resource = (await client.get(app.users_path, headers=auth(app))).json()["data"]["users"][0]

    # What Exotel's CRM SDK registers as (exotel-facts §1.7.4): the user part of SipId at
    # <ExotelAccountSid>.voip.exotel.com, with that user part as the digest user.
    sdk_user = mapping["SipId"].split(":")[1]
    sdk_identity = f"{sdk_user}@{app_data['ExotelAccountSid']}.voip.exotel.com"
    assert resource["sip"]["username"] == sdk_identity
    assert resource["sip"]["domain"] == f"{app_data['ExotelAccountSid']}.voip.exotel.com"
    assert re.fullmatch(r"[A-Za-z0-9._~-]{1,64}", sdk_user)
    assert "%" not in mapping["SipId"]


async def test_sip_secret_is_hex_that_the_sdk_key_decrypts(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    created = (await map_users(client, app, new_mapping(1)))[0]

    fetched = await get_mapping(client, app, "agent1@example.com")

    assert SDK_SECRET.match(created["SipSecret"])
    assert SDK_SECRET.match(fetched["SipSecret"])
    secret = decode_from_sdk(fetched["SipSecret"])
    assert len(secret) >= 16
    assert decode_from_sdk(created["SipSecret"]) == secret


async def test_every_mapped_user_gets_its_own_sip_secret(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    first, second = await map_users(client, app, new_mapping(1), new_mapping(2))

    assert decode_from_sdk(first["SipSecret"]) != decode_from_sdk(second["SipSecret"])


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("AgentNumber", "09876543210", "+919876543210"),
        ("AgentNumber", "9876543210", "+919876543210"),
        ("AgentNumber", "+91 98765-43210", "+919876543210"),
        ("VirtualNumber", "08047491899", "+918047491899"),
        ("VirtualNumber", "00918047491899", "+918047491899"),
    ],
)
async def test_numbers_are_normalised_to_e164(
    client: httpx.AsyncClient, settings: Settings, field: str, raw: str, expected: str
) -> None:
    app = await app_with_token(client, settings)

    created = (await map_users(client, app, new_mapping(1, **{field: raw})))[0]

    assert created[field] == expected
    assert (await get_mapping(client, app, "agent1@example.com"))[field] == expected


async def test_agent_number_and_role_are_optional(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    body = new_mapping(1)
    del body["AgentNumber"]

    created = (await map_users(client, app, body))[0]

    assert created["AgentNumber"] == ""
    assert created["Role"] == "user"


@pytest.mark.parametrize("field", ["AgentNumber", "VirtualNumber"])
@pytest.mark.parametrize("raw", ["12345", "+1234", "not a number", "1234567890"])
async def test_an_invalid_number_is_rejected_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, field: str, raw: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        MAPPING_URL, headers=auth(app), json=[new_mapping(1, **{field: raw})]
    )

    assert field in failed(response, 400)
    assert await mapped_user_ids(client, app) == []


@pytest.mark.parametrize(
    "field",
    ["AppUserId", "AppUsername", "Email", "ExotelAccountSid", "ExotelUserName", "VirtualNumber"],
)
async def test_a_missing_required_field_is_rejected_naming_it(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    app = await app_with_token(client, settings)
    body = new_mapping(1)
    del body[field]

    response = await client.post(MAPPING_URL, headers=auth(app), json=[body])

    message = failed(response, 400)
    assert field in message
    assert "required" in message


@pytest.mark.parametrize("email", ["not-an-email", "agent@example", "two@at@example.com"])
async def test_an_invalid_email_is_rejected_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, email: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(MAPPING_URL, headers=auth(app), json=[new_mapping(1, Email=email)])

    assert "Email" in failed(response, 400)


@pytest.mark.parametrize("role", ["owner", "Admin", 3])
async def test_a_role_outside_admin_supervisor_and_user_is_rejected(
    client: httpx.AsyncClient, settings: Settings, role: object
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(MAPPING_URL, headers=auth(app), json=[new_mapping(1, Role=role)])

    assert "Role" in failed(response, 400)


@pytest.mark.parametrize("field", ["AppUsername", "ExotelUserName", "AppUserId", "AgentNumber"])
async def test_a_text_field_sent_as_a_number_is_rejected_naming_it(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        MAPPING_URL, headers=auth(app), json=[new_mapping(1, **{field: 9876543210})]
    )

    assert field in failed(response, 400)


async def test_a_single_object_instead_of_an_array_is_rejected(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(MAPPING_URL, headers=auth(app), json=new_mapping(1))

    assert "list" in failed(response, 400)
    assert await mapped_user_ids(client, app) == []


async def test_a_batch_of_more_than_500_mappings_is_rejected(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        MAPPING_URL, headers=auth(app), json=[new_mapping(n) for n in range(501)]
    )

    failed(response, 400)
    assert await mapped_user_ids(client, app) == []


async def test_an_empty_array_is_rejected(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(MAPPING_URL, headers=auth(app), json=[])

    failed(response, 400)


async def test_an_exotel_account_sid_other_than_the_apps_is_rejected_and_creates_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        MAPPING_URL,
        headers=auth(app),
        json=[new_mapping(1), new_mapping(2, ExotelAccountSid="someoneelse")],
    )

    message = failed(response, 400)
    assert "ExotelAccountSid" in message
    assert "someoneelse" in message
    assert await mapped_user_ids(client, app) == []


async def test_one_invalid_item_rejects_the_whole_batch_naming_its_position(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        MAPPING_URL, headers=auth(app), json=[new_mapping(1), new_mapping(2, Email="nope")]
    )

    assert "1.Email" in failed(response, 400)
    assert await mapped_user_ids(client, app) == []


# --- conflicts ----------------------------------------------------------------------------


async def test_a_user_id_repeated_within_one_request_is_a_conflict_and_creates_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        MAPPING_URL,
        headers=auth(app),
        json=[new_mapping(1, AppUserId="agent"), new_mapping(2, AppUserId="agent")],
    )

    assert "'agent'" in failed(response, 409)
    assert await mapped_user_ids(client, app) == []


async def test_an_email_repeated_within_one_request_is_a_conflict_and_creates_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        MAPPING_URL,
        headers=auth(app),
        json=[new_mapping(1, Email="same@example.com"), new_mapping(2, Email="SAME@example.com")],
    )

    assert "same@example.com" in failed(response, 409)
    assert await mapped_user_ids(client, app) == []


async def test_a_batch_with_an_already_mapped_user_id_is_a_conflict_and_creates_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1))

    response = await client.post(
        MAPPING_URL,
        headers=auth(app),
        json=[new_mapping(2), new_mapping(3, AppUserId="agent1@example.com")],
    )

    assert "agent1@example.com" in failed(response, 409)
    assert await mapped_user_ids(client, app) == ["agent1@example.com"]


async def test_a_batch_with_an_email_already_in_use_is_a_conflict_and_creates_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1))

    response = await client.post(
        MAPPING_URL,
        headers=auth(app),
        json=[new_mapping(2), new_mapping(3, Email="agent1@example.com")],
    )

    assert "agent1@example.com" in failed(response, 409)
    assert await mapped_user_ids(client, app) == ["agent1@example.com"]


async def test_twenty_concurrent_mappings_of_distinct_users_all_succeed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    responses = await asyncio.gather(
        *(client.post(MAPPING_URL, headers=auth(app), json=[new_mapping(n)]) for n in range(20))
    )

    assert [response.status_code for response in responses] == [200] * 20, [
        response.text for response in responses if response.status_code != 200
    ]
    assert sorted(await mapped_user_ids(client, app)) == sorted(
        f"agent{n}@example.com" for n in range(20)
    )


# --- reading ------------------------------------------------------------------------------


async def test_getting_an_unknown_mapping_is_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1))

    response = await client.get(MAPPING_URL, params={"user_id": "nobody"}, headers=auth(app))

    assert "nobody" in failed(response, 404)


async def test_a_user_id_with_a_plus_sign_is_found_when_url_encoded(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1, AppUserId="agent+1@example.com"))

    mapping = await get_mapping(client, app, "agent+1@example.com")

    assert mapping["AppUserId"] == "agent+1@example.com"


async def test_listing_without_parameters_returns_a_first_page_of_20(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, *(new_mapping(n) for n in range(21)))

    data = success(await client.get(MAPPING_URL, headers=auth(app)))

    assert set(data) == {"Users", "PageSize", "LastEvaluatedValue"}
    assert data["PageSize"] == 20
    assert len(data["Users"]) == 20
    assert data["LastEvaluatedValue"] != ""
    assert all(MAPPING_FIELDS <= set(user) for user in data["Users"])


async def test_listing_an_app_without_users_is_empty(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    data = success(await client.get(MAPPING_URL, headers=auth(app)))

    assert data == {"Users": [], "PageSize": 20, "LastEvaluatedValue": ""}


async def test_paginating_over_25_mappings_visits_each_exactly_once_in_order(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    for n in range(25):
        await map_users(client, app, new_mapping(n))

    seen: list[str] = []
    page_sizes: list[int] = []
    params: dict[str, str | int] = {"page_size": 10}
    while True:
        data = success(await client.get(MAPPING_URL, params=params, headers=auth(app)))
        assert data["PageSize"] == 10
        seen += [user["AppUserId"] for user in data["Users"]]
        page_sizes.append(len(data["Users"]))
        if data["LastEvaluatedValue"] == "":
            break
        params = {"page_size": 10, "last_value": data["LastEvaluatedValue"]}

    assert page_sizes == [10, 10, 5]
    assert seen == [f"agent{n}@example.com" for n in range(25)]


@pytest.mark.parametrize(
    ("name", "value"), [("page_size", "0"), ("page_size", "101"), ("last_value", "abc")]
)
async def test_a_listing_parameter_out_of_range_is_rejected_naming_it(
    client: httpx.AsyncClient, settings: Settings, name: str, value: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.get(MAPPING_URL, params={name: value}, headers=auth(app))

    assert f"Query parameter '{name}'" in failed(response, 400)


# --- updating -----------------------------------------------------------------------------


async def test_updating_a_mapping_changes_only_the_fields_sent_and_keeps_sip_credentials(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    before = (await map_users(client, app, new_mapping(1)))[0]

    updated = success(
        await client.put(
            f"{MAPPING_URL}/agent1@example.com",
            headers=auth(app),
            json=[{"AppUsername": "Renamed Agentname"}],
        )
    )

    assert updated["AppUsername"] == "Renamed Agentname"
    unchanged = MAPPING_FIELDS - {"AppUsername", "SipSecret", "UpdatedAt"}
    assert {field: updated[field] for field in unchanged} == {
        field: before[field] for field in unchanged
    }
    assert decode_from_sdk(updated["SipSecret"]) == decode_from_sdk(before["SipSecret"])
    fetched = await get_mapping(client, app, "agent1@example.com")
    assert fetched["AppUsername"] == "Renamed Agentname"


async def test_updating_a_mapping_with_the_post_body_changes_names_and_numbers(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    before = (await map_users(client, app, new_mapping(1)))[0]
    body = new_mapping(
        1,
        AppUsername="Other Agentname",
        ExotelUserName="Other Displayname",
        AgentNumber="09123456789",
        VirtualNumber="+918047491800",
        Role="admin",
    )

    updated = success(
        await client.put(f"{MAPPING_URL}/agent1@example.com", headers=auth(app), json=[body])
    )

    assert updated["AppUsername"] == "Other Agentname"
    assert updated["ExotelUserName"] == "Other Displayname"
    assert updated["AgentNumber"] == "+919123456789"
    assert updated["VirtualNumber"] == "+918047491800"
    assert updated["Role"] == "admin"
    assert updated["SipId"] == before["SipId"]
    assert decode_from_sdk(updated["SipSecret"]) == decode_from_sdk(before["SipSecret"])


async def test_updating_a_mapping_accepts_a_single_object(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1))

    updated = success(
        await client.put(
            f"{MAPPING_URL}/agent1@example.com", headers=auth(app), json={"Role": "admin"}
        )
    )

    assert updated["Role"] == "admin"
    assert updated["AppUsername"] == "Agent Number1"


async def test_updating_with_two_mappings_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1))

    response = await client.put(
        f"{MAPPING_URL}/agent1@example.com",
        headers=auth(app),
        json=[{"Role": "admin"}, {"Role": "supervisor"}],
    )

    failed(response, 400)
    assert (await get_mapping(client, app, "agent1@example.com"))["Role"] == "user"


@pytest.mark.parametrize(
    ("field", "value"),
    [("AgentNumber", "12345"), ("Email", "nope"), ("Role", "owner"), ("AppUsername", 5)],
)
async def test_an_invalid_update_is_rejected_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, field: str, value: object
) -> None:
    app = await app_with_token(client, settings)
    before = (await map_users(client, app, new_mapping(1)))[0]

    response = await client.put(
        f"{MAPPING_URL}/agent1@example.com", headers=auth(app), json=[{field: value}]
    )

    assert field in failed(response, 400)
    assert (await get_mapping(client, app, "agent1@example.com"))[field] == before[field]


@pytest.mark.parametrize("body", [[{"Role": "owner"}], {"Role": "owner"}])
async def test_an_invalid_update_says_what_is_wrong_without_internal_type_names(
    client: httpx.AsyncClient, settings: Settings, body: Any
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1))

    response = await client.put(f"{MAPPING_URL}/agent1@example.com", headers=auth(app), json=body)

    message = failed(response, 400)
    assert "Role" in message
    assert "'admin', 'supervisor' or 'user'" in message
    assert "UserMappingUpdate" not in message
    assert "valid list" not in message
    assert "valid dictionary" not in message


async def test_updating_to_another_users_email_is_a_conflict(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1), new_mapping(2))

    response = await client.put(
        f"{MAPPING_URL}/agent2@example.com",
        headers=auth(app),
        json=[{"Email": "agent1@example.com"}],
    )

    failed(response, 409)
    assert (await get_mapping(client, app, "agent2@example.com"))["Email"] == "agent2@example.com"


async def test_updating_an_unknown_mapping_is_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(
        f"{MAPPING_URL}/nobody@example.com", headers=auth(app), json=[{"Role": "admin"}]
    )

    assert "nobody@example.com" in failed(response, 404)


# --- deleting -----------------------------------------------------------------------------


async def test_deleting_all_mappings_removes_every_user_of_the_app(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, *(new_mapping(n) for n in range(3)))

    data = success(await client.delete(MAPPING_URL, headers=auth(app)))

    assert data == "Deleted Successfully"
    assert await mapped_user_ids(client, app) == []


async def test_deleting_all_mappings_leaves_other_apps_users_intact(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    first = await register_app(client, customer)
    second = await register_app(client, customer, AppName="Second")
    stranger = await app_with_token(client, settings)
    for app in (first, second, stranger):
        await map_users(client, app, new_mapping(1), new_mapping(2))

    success(await client.delete(MAPPING_URL, headers=auth(first)))

    assert await mapped_user_ids(client, first) == []
    expected = ["agent1@example.com", "agent2@example.com"]
    assert await mapped_user_ids(client, second) == expected
    assert await mapped_user_ids(client, stranger) == expected


async def test_deleting_one_mapping_by_user_id_query_removes_only_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1), new_mapping(2))

    response = await client.delete(
        MAPPING_URL, params={"user_id": "agent1@example.com"}, headers=auth(app)
    )

    assert success(response) == "Deleted Successfully"
    assert await mapped_user_ids(client, app) == ["agent2@example.com"]


async def test_deleting_a_user_by_id_removes_only_it(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1), new_mapping(2))

    response = await client.delete(f"{USERS_URL}/agent2@example.com", headers=auth(app))

    assert success(response) == "Deleted Successfully"
    assert await mapped_user_ids(client, app) == ["agent1@example.com"]


async def test_deleting_users_by_a_list_of_ids_removes_exactly_those(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, *(new_mapping(n) for n in range(1, 4)))

    response = await delete_with_body(
        client, app, USERS_URL, ["agent1@example.com", "agent3@example.com", "nobody"]
    )

    assert success(response) == {"Deleted": 2}
    assert await mapped_user_ids(client, app) == ["agent2@example.com"]


@pytest.mark.parametrize("body", [[], {"AppUserId": "agent1@example.com"}, None])
async def test_deleting_users_without_a_list_of_ids_is_rejected_and_deletes_nothing(
    client: httpx.AsyncClient, settings: Settings, body: Any
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1))

    response = await delete_with_body(client, app, USERS_URL, body)

    failed(response, 400)
    assert await mapped_user_ids(client, app) == ["agent1@example.com"]


@pytest.mark.parametrize("how", ["users path", "usermapping query"])
async def test_deleting_an_unknown_user_is_404(
    client: httpx.AsyncClient, settings: Settings, how: str
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1))

    if how == "users path":
        response = await client.delete(f"{USERS_URL}/nobody", headers=auth(app))
    else:
        response = await client.delete(MAPPING_URL, params={"user_id": "nobody"}, headers=auth(app))

    assert "nobody" in failed(response, 404)
    assert await mapped_user_ids(client, app) == ["agent1@example.com"]


# --- both interfaces over the same users --------------------------------------------------


async def test_a_mapped_user_is_visible_through_the_resource_api(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await map_users(client, app, new_mapping(1, AppUserId="agent_001", Role="admin"))

    response = await client.get(f"{app.users_path}/agent_001", headers=auth(app))

    assert response.status_code == 200, response.text
    user = response.json()["data"]
    assert user["user_id"] == "agent_001"
    assert user["name"] == "Agent Number1"
    assert user["email"] == "agent1@example.com"
    assert user["phone_number"] == "+919876000001"
    assert user["virtual_number"] == "+918047491899"
    assert user["role"] == "admin"
    assert user["sip"]["username"] == "agent_001@exoteldemo.voip.exotel.com"
    assert "secret" not in user["sip"]


async def test_a_user_created_through_the_resource_api_is_visible_as_a_mapping(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    created = await create_user(client, app, 1, role="supervisor")

    mapping = await get_mapping(client, app, "agent_001")

    assert mapping["AppUserId"] == "agent_001"
    assert mapping["AppUsername"] == "Agent 1"
    assert mapping["ExotelUserName"] == "Agent 1"
    assert mapping["Email"] == "agent1@example.com"
    assert mapping["AgentNumber"] == created["phone_number"]
    assert mapping["VirtualNumber"] == created["virtual_number"]
    assert mapping["Role"] == "supervisor"
    assert mapping["ExotelAccountSid"] == "exoteldemo"
    assert mapping["SipId"] == "sip:agent_001"
    assert decode_from_sdk(mapping["SipSecret"]) == created["sip"]["secret"]


async def test_both_listings_show_the_same_users_in_the_same_order(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)
    await map_users(client, app, new_mapping(2, AppUserId="agent_002"))
    await create_user(client, app, 3)

    resource = (await client.get(app.users_path, headers=auth(app))).json()["data"]["users"]

    expected = ["agent_001", "agent_002", "agent_003"]
    assert [user["user_id"] for user in resource] == expected
    assert await mapped_user_ids(client, app) == expected


async def test_a_mapping_update_is_visible_through_the_resource_api(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    success(
        await client.put(
            f"{MAPPING_URL}/agent_001", headers=auth(app), json=[{"AgentNumber": "09123456789"}]
        )
    )
    user = (await client.get(f"{app.users_path}/agent_001", headers=auth(app))).json()["data"]

    assert user["phone_number"] == "+919123456789"
    assert user["name"] == "Agent 1"


async def test_a_user_deleted_through_users_is_gone_from_the_resource_api(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    success(await client.delete(f"{USERS_URL}/agent_001", headers=auth(app)))

    response = await client.get(f"{app.users_path}/agent_001", headers=auth(app))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "user_not_found"


async def test_a_user_id_taken_through_one_interface_is_a_conflict_in_the_other(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)

    response = await client.post(
        MAPPING_URL, headers=auth(app), json=[new_mapping(9, AppUserId="agent_001")]
    )

    failed(response, 409)


# --- idempotency --------------------------------------------------------------------------


async def test_a_retried_mapping_with_the_same_idempotency_key_replays_the_first_response(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    headers = {**auth(app), "Idempotency-Key": "map-batch-1"}
    body = [new_mapping(1), new_mapping(2)]

    first = await client.post(MAPPING_URL, headers=headers, json=body)
    retry = await client.post(MAPPING_URL, headers=headers, json=body)

    first_data = success(first)
    assert "Idempotent-Replayed" not in first.headers
    assert success(retry) == first_data
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert [decode_from_sdk(m["SipSecret"]) for m in retry.json()["Data"]] == [
        decode_from_sdk(m["SipSecret"]) for m in first_data
    ]
    assert await mapped_user_ids(client, app) == ["agent1@example.com", "agent2@example.com"]


async def test_an_idempotency_key_reused_with_a_different_body_is_a_conflict(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    headers = {**auth(app), "Idempotency-Key": "map-batch"}
    success(await client.post(MAPPING_URL, headers=headers, json=[new_mapping(1)]))

    response = await client.post(MAPPING_URL, headers=headers, json=[new_mapping(2)])

    assert "Idempotency-Key" in failed(response, 409)
    assert await mapped_user_ids(client, app) == ["agent1@example.com"]


# --- tenant isolation ---------------------------------------------------------------------


async def test_usermapping_lists_only_the_tokens_apps_users(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    customer = await customer_with_token(client, settings)
    first = await register_app(client, customer)
    second = await register_app(client, customer, AppName="Second")
    await map_users(client, first, new_mapping(1))
    await map_users(client, second, new_mapping(2), new_mapping(3))

    data = success(await client.get(MAPPING_URL, headers=auth(first)))

    assert [user["AppUserId"] for user in data["Users"]] == ["agent1@example.com"]
    assert {user["AppID"] for user in data["Users"]} == {first.id}


@pytest.mark.parametrize(
    "attempt",
    ["get", "put", "delete by query", "delete by path"],
)
async def test_another_apps_user_is_not_found_through_usermapping(
    client: httpx.AsyncClient, settings: Settings, attempt: str
) -> None:
    intruder = await app_with_token(client, settings)
    victim = await app_with_token(client, settings)
    before = (await map_users(client, victim, new_mapping(1)))[0]
    query = {"user_id": "agent1@example.com"}

    if attempt == "get":
        response = await client.get(MAPPING_URL, params=query, headers=auth(intruder))
    elif attempt == "put":
        response = await client.put(
            f"{MAPPING_URL}/agent1@example.com",
            headers=auth(intruder),
            json=[{"AppUsername": "Hijacked Username"}],
        )
    elif attempt == "delete by query":
        response = await client.delete(MAPPING_URL, params=query, headers=auth(intruder))
    else:
        response = await client.delete(f"{USERS_URL}/agent1@example.com", headers=auth(intruder))

    failed(response, 404)
    after = await get_mapping(client, victim, "agent1@example.com")
    assert after["AppUsername"] == before["AppUsername"]


async def test_deleting_a_list_of_another_apps_user_ids_deletes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    intruder = await app_with_token(client, settings)
    victim = await app_with_token(client, settings)
    await map_users(client, victim, new_mapping(1))

    response = await delete_with_body(client, intruder, USERS_URL, ["agent1@example.com"])

    assert success(response) == {"Deleted": 0}
    assert await mapped_user_ids(client, victim) == ["agent1@example.com"]


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", MAPPING_URL, [new_mapping(2)]),
        ("GET", MAPPING_URL, None),
        ("GET", MAPPING_URL + "?user_id=agent1@example.com", None),
        ("PUT", MAPPING_URL + "/agent1@example.com", [{"Role": "admin"}]),
        ("DELETE", MAPPING_URL, None),
        ("DELETE", USERS_URL + "/agent1@example.com", None),
        ("DELETE", USERS_URL, ["agent1@example.com"]),
    ],
)
async def test_a_customer_token_on_a_user_endpoint_is_403(
    client: httpx.AsyncClient, settings: Settings, method: str, url: str, body: Any
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    await map_users(client, app, new_mapping(1))

    response = await client.request(
        method, url, headers={"Authorization": customer.token}, json=body
    )

    assert "app token" in failed(response, 403)
    assert await mapped_user_ids(client, app) == ["agent1@example.com"]
