"""Devices (seed 03, SPEC §4.6): ``/{customer_id}/apps/{app_id}/users/{user_id}/devices``, SIP
registration reports, and the Exotel-compatible ``PUT /device`` (exotel-facts §1.8)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory, unit_of_work
from exoplane.models import User
from tests.factories import (
    RegisteredApp,
    app_with_token,
    create_user,
    customer_with_token,
    register_app,
)

DEVICE_URL = "/v2/integrations/device"
RESOURCE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SEED_USER_ID = "agent_001"
SEED_NUMBER = "+919876543210"


def auth(app: RegisteredApp) -> dict[str, str]:
    return {"Authorization": app.token}


def bearer(app: RegisteredApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.token}"}


def devices_path(app: RegisteredApp, user_id: str = SEED_USER_ID) -> str:
    return f"{app.users_path}/{user_id}/devices"


def registration_path(app: RegisteredApp, user_id: str = SEED_USER_ID) -> str:
    return devices_path(app, user_id) + "/sip/registration"


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
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


def legacy_success(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"RequestId", "Status", "Code", "Error", "Data"}
    assert body["Status"] == "Success"
    assert body["Code"] == 200
    assert body["Error"] == ""
    data: dict[str, Any] = body["Data"]
    return data


def legacy_failed(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Status"] == "Failed"
    assert body["Code"] == status
    assert body["Data"] is None
    message: str = body["Error"]
    assert message
    return message


async def app_with_seed_user(
    client: httpx.AsyncClient, settings: Settings
) -> tuple[RegisteredApp, dict[str, Any]]:
    """An app with seed 03's user: ``agent_001`` whose PSTN phone is +919876543210."""
    app = await app_with_token(client, settings)
    user = await create_user(client, app, 1, phone_number=SEED_NUMBER)
    return app, user


async def put_devices(
    client: httpx.AsyncClient, app: RegisteredApp, body: dict[str, Any]
) -> httpx.Response:
    return await client.put(devices_path(app), headers=auth(app), json=body)


async def device_flags(client: httpx.AsyncClient, app: RegisteredApp) -> tuple[bool, bool]:
    devices = ok(await client.get(devices_path(app), headers=auth(app)))["devices"]
    return devices["phone"]["enabled"], devices["sip"]["enabled"]


async def set_registered_until(settings: Settings, user_id: str, until: datetime) -> None:
    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            await session.execute(
                update(User).where(User.user_id == user_id).values(sip_registered_until=until)
            )
    finally:
        await engine.dispose()


async def registered_until(settings: Settings, user_id: str) -> datetime | None:
    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            query = select(User.sip_registered_until).where(User.user_id == user_id)
            until: datetime | None = await session.scalar(query)
            return until
    finally:
        await engine.dispose()


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


# --- seed 03 examples -----------------------------------------------------------------------


async def test_seed_update_example_answers_with_the_seed_response(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.put(
        devices_path(app), headers=bearer(app), json={"phone": False, "sip": True}
    )

    data = ok(response)
    assert list(data) == ["user_id", "devices", "updated_at"]
    assert data["user_id"] == SEED_USER_ID
    assert data["devices"] == {
        "phone": {"enabled": False, "number": SEED_NUMBER},
        "sip": {"enabled": True, "username": f"{SEED_USER_ID}@exoteldemo.voip.exotel.com"},
    }
    assert RESOURCE_TIME.match(data["updated_at"])


async def test_seed_get_example_answers_with_the_seed_response(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    ok(await client.put(devices_path(app), headers=bearer(app), json={"phone": False, "sip": True}))
    ok(await client.post(registration_path(app), headers=bearer(app), json={"registered": True}))

    response = await client.get(devices_path(app), headers=bearer(app))

    data = ok(response)
    assert list(data) == ["user_id", "devices"]
    assert data["user_id"] == SEED_USER_ID
    assert data["devices"]["phone"] == {"enabled": False, "number": SEED_NUMBER}
    sip = data["devices"]["sip"]
    assert list(sip) == ["enabled", "username", "registered", "last_seen"]
    assert sip["enabled"] is True
    assert sip["username"] == f"{SEED_USER_ID}@exoteldemo.voip.exotel.com"
    assert sip["registered"] is True
    assert RESOURCE_TIME.match(sip["last_seen"])


# --- the device behaviour table -------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "sip"),
    [(True, True), (True, False), (False, True)],
    ids=["both", "phone-only", "sip-only"],
)
async def test_an_allowed_row_of_the_behaviour_table_is_stored(
    client: httpx.AsyncClient, settings: Settings, phone: bool, sip: bool
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    data = ok(await put_devices(client, app, {"phone": phone, "sip": sip}))

    assert data["devices"]["phone"]["enabled"] is phone
    assert data["devices"]["sip"]["enabled"] is sip
    assert await device_flags(client, app) == (phone, sip)


async def test_disabling_both_devices_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await put_devices(client, app, {"phone": False, "sip": False})

    assert error(response, 400)["code"] == "device_rule_violation"
    assert await device_flags(client, app) == (True, True)


@pytest.mark.parametrize(("first", "second"), [("phone", "sip"), ("sip", "phone")])
async def test_disabling_the_last_enabled_device_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, first: str, second: str
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    ok(await put_devices(client, app, {first: False}))
    before = ok(await client.get(devices_path(app), headers=auth(app)))

    response = await put_devices(client, app, {second: False})

    assert error(response, 400)["code"] == "device_rule_violation"
    assert ok(await client.get(devices_path(app), headers=auth(app))) == before


async def test_switching_from_one_device_to_the_other_in_one_request_is_allowed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    ok(await put_devices(client, app, {"sip": False}))

    ok(await put_devices(client, app, {"phone": False, "sip": True}))

    assert await device_flags(client, app) == (False, True)


async def test_a_device_not_sent_keeps_its_state(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    ok(await put_devices(client, app, {"phone": False}))

    data = ok(await put_devices(client, app, {"sip": True}))

    assert data["devices"]["phone"]["enabled"] is False
    assert await device_flags(client, app) == (False, True)


async def test_a_new_user_has_both_devices_enabled_and_sip_unregistered(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    data = ok(await client.get(devices_path(app), headers=auth(app)))

    assert data["devices"] == {
        "phone": {"enabled": True, "number": SEED_NUMBER},
        "sip": {
            "enabled": True,
            "username": f"{SEED_USER_ID}@exoteldemo.voip.exotel.com",
            "registered": False,
            "last_seen": None,
        },
    }


async def test_a_user_without_a_phone_number_shows_a_null_number(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1, phone_number=None)

    data = ok(await client.get(devices_path(app), headers=auth(app)))

    assert data["devices"]["phone"] == {"enabled": True, "number": None}


async def test_updated_at_of_the_answer_moves_with_each_change(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, user = await app_with_seed_user(client, settings)

    first = ok(await put_devices(client, app, {"phone": False}))
    second = ok(await put_devices(client, app, {"phone": True}))

    assert first["updated_at"] >= user["updated_at"]
    assert second["updated_at"] > first["updated_at"]


async def test_concurrent_updates_never_leave_both_devices_disabled(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    bodies = [{"phone": False} if n % 2 == 0 else {"sip": False} for n in range(20)]

    responses = await asyncio.gather(*(put_devices(client, app, body) for body in bodies))

    succeeded = [body for body, r in zip(bodies, responses, strict=True) if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert succeeded
    assert {(r.status_code, r.json()["error"]["code"]) for r in refused} <= {
        (400, "device_rule_violation")
    }
    assert len({next(iter(body)) for body in succeeded}) == 1
    assert await device_flags(client, app) != (False, False)


# --- invalid requests -----------------------------------------------------------------------


async def test_an_empty_body_is_400_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await put_devices(client, app, {})

    error(response, 400)
    assert await device_flags(client, app) == (True, True)


async def test_a_missing_body_is_400(client: httpx.AsyncClient, settings: Settings) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.put(devices_path(app), headers=auth(app))

    error(response, 400)


@pytest.mark.parametrize("value", ["false", 0, "off"])
async def test_a_device_flag_must_be_a_json_boolean(
    client: httpx.AsyncClient, settings: Settings, value: object
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await put_devices(client, app, {"phone": value, "sip": True})

    assert error(response, 400)["field"] == "phone"
    assert await device_flags(client, app) == (True, True)


async def test_an_unknown_device_field_is_400(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await put_devices(client, app, {"phone": False, "webrtc": True})

    assert error(response, 400)["field"] == "webrtc"
    assert await device_flags(client, app) == (True, True)


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_an_unknown_user_is_404(
    client: httpx.AsyncClient, settings: Settings, method: str
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.request(
        method, devices_path(app, "nobody"), headers=auth(app), json={"phone": True}
    )

    assert error(response, 404)["code"] == "user_not_found"


async def test_a_user_of_another_app_is_404(client: httpx.AsyncClient, settings: Settings) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    sibling = await register_app(client, customer, AppName="Sibling")
    await create_user(client, sibling, 1)

    response = await client.put(devices_path(sibling), headers=auth(app), json={"phone": False})

    error(response, 404)
    assert await device_flags(client, sibling) == (True, True)


async def test_a_customer_id_other_than_the_tokens_is_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    other = await customer_with_token(client, settings)
    path = f"/v2/integrations/{other.id}/apps/{app.id}/users/{SEED_USER_ID}/devices"

    response = await client.get(path, headers=auth(app))

    error(response, 404)


async def test_devices_without_a_token_are_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.get(devices_path(app))

    error(response, 401)


# --- SIP registration -----------------------------------------------------------------------


async def test_a_registration_report_marks_sip_registered_and_seen_now(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    before = datetime.now(UTC)

    answered = ok(
        await client.post(registration_path(app), headers=auth(app), json={"registered": True})
    )

    sip = ok(await client.get(devices_path(app), headers=auth(app)))["devices"]["sip"]
    assert answered["devices"]["sip"] == sip
    assert sip["registered"] is True
    last_seen = parse_time(sip["last_seen"])
    assert before - timedelta(seconds=1) <= last_seen <= datetime.now(UTC)


async def test_an_unregistration_report_marks_sip_unregistered(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    registered = ok(
        await client.post(registration_path(app), headers=auth(app), json={"registered": True})
    )

    ok(await client.post(registration_path(app), headers=auth(app), json={"registered": False}))

    sip = ok(await client.get(devices_path(app), headers=auth(app)))["devices"]["sip"]
    assert sip["registered"] is False
    assert sip["last_seen"] == registered["devices"]["sip"]["last_seen"]


async def test_a_registration_lapses_after_its_ttl(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    ok(
        await client.post(
            registration_path(app), headers=auth(app), json={"registered": True, "expires_in": 60}
        )
    )
    await set_registered_until(settings, SEED_USER_ID, datetime.now(UTC) - timedelta(seconds=1))

    sip = ok(await client.get(devices_path(app), headers=auth(app)))["devices"]["sip"]

    assert sip["registered"] is False
    assert sip["last_seen"] is not None


@pytest.mark.parametrize("expires_in", [10, 3600, 86_400])
async def test_a_registration_lasts_expires_in_seconds(
    client: httpx.AsyncClient, settings: Settings, expires_in: int
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    before = datetime.now(UTC)

    ok(
        await client.post(
            registration_path(app),
            headers=auth(app),
            json={"registered": True, "expires_in": expires_in},
        )
    )

    until = await registered_until(settings, SEED_USER_ID)
    assert until is not None
    ttl = timedelta(seconds=expires_in)
    assert before + ttl <= until <= datetime.now(UTC) + ttl


async def test_a_registration_without_expires_in_lasts_the_configured_ttl(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    before = datetime.now(UTC)

    ok(await client.post(registration_path(app), headers=auth(app), json={"registered": True}))

    until = await registered_until(settings, SEED_USER_ID)
    assert until is not None
    ttl = timedelta(seconds=settings.sip_registration_ttl_seconds)
    assert before + ttl <= until <= datetime.now(UTC) + ttl


@pytest.mark.parametrize("expires_in", [9, 0, -5, 86_401, "60"])
async def test_expires_in_outside_10_to_86400_seconds_is_400(
    client: httpx.AsyncClient, settings: Settings, expires_in: object
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.post(
        registration_path(app),
        headers=auth(app),
        json={"registered": True, "expires_in": expires_in},
    )

    assert error(response, 400)["field"] == "expires_in"
    sip = ok(await client.get(devices_path(app), headers=auth(app)))["devices"]["sip"]
    assert sip["registered"] is False


@pytest.mark.parametrize("body", [{}, {"registered": "true"}, {"registered": 1}])
async def test_registered_must_be_a_json_boolean(
    client: httpx.AsyncClient, settings: Settings, body: dict[str, Any]
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.post(registration_path(app), headers=auth(app), json=body)

    assert error(response, 400)["field"] == "registered"


async def test_a_registration_report_for_an_unknown_user_is_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.post(
        registration_path(app, "nobody"), headers=auth(app), json={"registered": True}
    )

    assert error(response, 404)["code"] == "user_not_found"


# --- Exotel-compatible PUT /device ----------------------------------------------------------


async def test_put_device_answers_with_the_user_mapping(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.put(
        DEVICE_URL,
        headers=auth(app),
        json={"UserId": SEED_USER_ID, "DeviceName": "phone", "DeviceStatus": False},
    )

    mapping = legacy_success(response)
    assert mapping["AppUserId"] == SEED_USER_ID
    assert mapping["AppID"] == app.id
    assert mapping["AgentNumber"] == SEED_NUMBER
    assert mapping["PhoneDeviceID"]
    assert mapping["SipDeviceID"]
    assert mapping["PhoneDeviceID"] != mapping["SipDeviceID"]
    assert mapping["ActiveDeviceId"] == mapping["SipDeviceID"]


@pytest.mark.parametrize(("device", "expected"), [("phone", (False, True)), ("sip", (True, False))])
async def test_put_device_turning_a_device_off_is_seen_by_the_resource_api(
    client: httpx.AsyncClient, settings: Settings, device: str, expected: tuple[bool, bool]
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    legacy_success(
        await client.put(
            DEVICE_URL,
            headers=auth(app),
            json={"UserId": SEED_USER_ID, "DeviceName": device, "DeviceStatus": False},
        )
    )

    assert await device_flags(client, app) == expected


async def test_put_device_with_only_the_phone_on_makes_the_phone_the_active_device(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    ok(await put_devices(client, app, {"sip": False}))

    mapping = legacy_success(
        await client.put(
            DEVICE_URL,
            headers=auth(app),
            json={"UserId": SEED_USER_ID, "DeviceName": "phone", "DeviceStatus": True},
        )
    )

    assert mapping["ActiveDeviceId"] == mapping["PhoneDeviceID"]


async def put_device(
    client: httpx.AsyncClient, app: RegisteredApp, device: str, status: bool
) -> httpx.Response:
    body = {"UserId": SEED_USER_ID, "DeviceName": device, "DeviceStatus": status}
    return await client.put(DEVICE_URL, headers=auth(app), json=body)


@pytest.mark.parametrize(("device", "expected"), [("phone", (True, False)), ("sip", (False, True))])
async def test_put_device_turning_one_device_on_turns_the_other_off(
    client: httpx.AsyncClient, settings: Settings, device: str, expected: tuple[bool, bool]
) -> None:
    app, _ = await app_with_seed_user(client, settings)  # both devices on

    mapping = legacy_success(await put_device(client, app, device, True))

    assert await device_flags(client, app) == expected
    active = "PhoneDeviceID" if device == "phone" else "SipDeviceID"
    assert mapping["ActiveDeviceId"] == mapping[active]


async def test_a_phone_or_browser_toggle_sending_only_the_on_half_moves_calls_each_time(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    to_phone = legacy_success(await put_device(client, app, "phone", True))
    flags_on_phone = await device_flags(client, app)
    to_browser = legacy_success(await put_device(client, app, "sip", True))

    assert flags_on_phone == (True, False)
    assert to_phone["ActiveDeviceId"] == to_phone["PhoneDeviceID"]
    assert await device_flags(client, app) == (False, True)
    assert to_browser["ActiveDeviceId"] == to_browser["SipDeviceID"]


@pytest.mark.parametrize(("device", "expected"), [("phone", (False, True)), ("sip", (True, False))])
async def test_put_device_turning_the_only_enabled_device_off_turns_the_other_on(
    client: httpx.AsyncClient, settings: Settings, device: str, expected: tuple[bool, bool]
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    only_this_one = {"phone": device == "phone", "sip": device == "sip"}
    ok(await put_devices(client, app, only_this_one))

    legacy_success(await put_device(client, app, device, False))

    assert await device_flags(client, app) == expected


async def test_put_device_cannot_make_a_phone_without_a_number_the_device_calls_ring_on(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1, phone_number=None)

    phone_on = await put_device(client, app, "phone", True)
    sip_off = await put_device(client, app, "sip", False)

    assert "AgentNumber" in legacy_failed(phone_on, 400)
    assert "AgentNumber" in legacy_failed(sip_off, 400)
    assert await device_flags(client, app) == (True, True)


async def test_the_resource_api_can_still_turn_both_devices_on_after_put_device(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)
    legacy_success(await put_device(client, app, "phone", True))

    ok(await put_devices(client, app, {"phone": True, "sip": True}))

    assert await device_flags(client, app) == (True, True)


@pytest.mark.parametrize(
    "body",
    [
        {"UserId": SEED_USER_ID, "DeviceName": "webrtc", "DeviceStatus": False},
        {"UserId": SEED_USER_ID, "DeviceName": "phone", "DeviceStatus": "false"},
        {"DeviceName": "phone", "DeviceStatus": False},
    ],
    ids=["unknown-device", "string-status", "no-user"],
)
async def test_put_device_with_an_invalid_body_is_400_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, body: dict[str, Any]
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.put(DEVICE_URL, headers=auth(app), json=body)

    legacy_failed(response, 400)
    assert await device_flags(client, app) == (True, True)


async def test_put_device_for_an_unknown_user_is_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app, _ = await app_with_seed_user(client, settings)

    response = await client.put(
        DEVICE_URL,
        headers=auth(app),
        json={"UserId": "nobody", "DeviceName": "phone", "DeviceStatus": False},
    )

    assert "nobody" in legacy_failed(response, 404)
