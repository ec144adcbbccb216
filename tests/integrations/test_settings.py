"""App settings (seed 02, SPEC §4.5): the resource-style ``/{customer_id}/apps/{app_id}/settings``
and the Exotel-compatible ``/app_setting`` (exotel-facts §1.6) over the same data."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from exoplane.app import create_app
from exoplane.config import Settings
from tests.conftest import make_settings
from tests.factories import RegisteredApp, app_with_token, customer_with_token, register_app

APP_SETTING_URL = "/v2/integrations/app_setting"
RESOURCE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# Seed 02, "Request Body" and "Example Request".
SEED_FULL_BODY: dict[str, Any] = {
    "popup_url": "https://your-server.com/webhook/popup",
    "missed_call_url": "https://your-server.com/webhook/missed-call",
    "callback_url": "https://your-server.com/webhook/callback",
    "recording_enabled": True,
    "recording_url": "https://your-server.com/webhook/recording",
    "streaming_enabled": False,
    "streaming_url": "https://your-server.com/webhook/stream",
}
SEED_EXAMPLE_BODY: dict[str, Any] = {
    "popup_url": "https://your-server.com/webhook/popup",
    "missed_call_url": "https://your-server.com/webhook/missed-call",
    "recording_enabled": True,
    "recording_url": "https://your-server.com/webhook/recording",
}
SETTING_FIELDS = (
    "popup_url",
    "missed_call_url",
    "callback_url",
    "recording_enabled",
    "recording_url",
    "streaming_enabled",
    "streaming_url",
)
DEFAULTS: dict[str, Any] = {
    "popup_url": None,
    "missed_call_url": None,
    "callback_url": None,
    "recording_enabled": False,
    "recording_url": None,
    "streaming_enabled": False,
    "streaming_url": None,
}
WEBHOOK_URL_FIELDS = ("popup_url", "missed_call_url", "callback_url", "recording_url")
NON_PUBLIC_URLS = (
    "http://127.0.0.1/x",
    "http://10.0.0.1/x",
    "http://169.254.169.254/latest",
    "http://localhost/x",
)


def auth(app: RegisteredApp) -> dict[str, str]:
    return {"Authorization": app.token}


def bearer(app: RegisteredApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.token}"}


def settings_path(app: RegisteredApp) -> str:
    return f"/v2/integrations/{app.customer_id}/apps/{app.id}/settings"


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


def invalid(response: httpx.Response, field: str) -> dict[str, Any]:
    """A 400 that names ``field`` both in ``error.field`` and in the message."""
    details = error(response, 400)
    assert details["field"] == field
    assert field in details["message"]
    return details


def legacy_success(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"RequestId", "Status", "Code", "Error", "Data"}
    assert body["Status"] == "Success"
    assert body["Code"] == 200
    assert body["Error"] == ""
    return body["Data"]


def legacy_failed(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Status"] == "Failed"
    assert body["Code"] == status
    assert body["Data"] is None
    message: str = body["Error"]
    assert message
    return message


async def get_settings(client: httpx.AsyncClient, app: RegisteredApp) -> dict[str, Any]:
    settings: dict[str, Any] = ok(await client.get(settings_path(app), headers=auth(app)))[
        "settings"
    ]
    return settings


async def put_settings(
    client: httpx.AsyncClient, app: RegisteredApp, body: dict[str, Any]
) -> dict[str, Any]:
    settings: dict[str, Any] = ok(
        await client.put(settings_path(app), headers=auth(app), json=body)
    )["settings"]
    return settings


async def post_setting(
    client: httpx.AsyncClient, app: RegisteredApp, key: str, value: str
) -> httpx.Response:
    return await client.post(APP_SETTING_URL, headers=auth(app), json={"Key": key, "Value": value})


def without_timestamps(settings: dict[str, Any]) -> dict[str, Any]:
    return {name: settings[name] for name in SETTING_FIELDS}


# --- seed 02 examples -----------------------------------------------------------------------


async def test_seed_update_example_answers_with_the_seed_response(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(settings_path(app), headers=bearer(app), json=SEED_EXAMPLE_BODY)

    data = ok(response)
    assert set(data) == {"app_id", "settings"}
    assert data["app_id"] == app.id
    assert list(data["settings"]) == [*SETTING_FIELDS, "updated_at"]
    assert without_timestamps(data["settings"]) == {
        "popup_url": "https://your-server.com/webhook/popup",
        "missed_call_url": "https://your-server.com/webhook/missed-call",
        "callback_url": None,
        "recording_enabled": True,
        "recording_url": "https://your-server.com/webhook/recording",
        "streaming_enabled": False,
        "streaming_url": None,
    }
    assert RESOURCE_TIME.match(data["settings"]["updated_at"])


async def test_seed_get_example_answers_with_the_seed_response(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    updated = ok(await client.put(settings_path(app), headers=bearer(app), json=SEED_EXAMPLE_BODY))

    response = await client.get(settings_path(app), headers=bearer(app))

    data = ok(response)
    assert set(data) == {"app_id", "settings"}
    assert data["app_id"] == app.id
    assert list(data["settings"]) == [*SETTING_FIELDS, "created_at", "updated_at"]
    assert without_timestamps(data["settings"]) == without_timestamps(updated["settings"])
    assert RESOURCE_TIME.match(data["settings"]["created_at"])
    assert data["settings"]["updated_at"] == updated["settings"]["updated_at"]


async def test_seed_full_request_body_is_stored_as_sent(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    answered = await put_settings(client, app, SEED_FULL_BODY)

    assert without_timestamps(answered) == SEED_FULL_BODY
    assert without_timestamps(await get_settings(client, app)) == SEED_FULL_BODY


# --- reading and partial updates ------------------------------------------------------------


async def test_a_new_app_has_no_urls_and_recording_and_streaming_off(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    current = await get_settings(client, app)

    assert without_timestamps(current) == DEFAULTS
    assert current["created_at"] == current["updated_at"]


async def test_fields_not_sent_keep_their_value(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await put_settings(client, app, SEED_FULL_BODY)

    answered = await put_settings(
        client, app, {"callback_url": "https://hooks.example.com/cb", "streaming_enabled": True}
    )

    expected = {
        **SEED_FULL_BODY,
        "callback_url": "https://hooks.example.com/cb",
        "streaming_enabled": True,
    }
    assert without_timestamps(answered) == expected
    assert without_timestamps(await get_settings(client, app)) == expected


async def test_an_explicit_null_clears_a_url(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)
    await put_settings(client, app, SEED_FULL_BODY)

    answered = await put_settings(client, app, {"popup_url": None, "streaming_url": None})

    assert answered["popup_url"] is None
    assert answered["streaming_url"] is None
    current = await get_settings(client, app)
    assert current["popup_url"] is None
    assert current["streaming_url"] is None
    assert current["missed_call_url"] == SEED_FULL_BODY["missed_call_url"]


async def test_an_update_moves_updated_at_and_keeps_created_at(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    before = await get_settings(client, app)

    await put_settings(client, app, {"recording_enabled": True})

    after = await get_settings(client, app)
    assert after["created_at"] == before["created_at"]
    assert after["updated_at"] > before["updated_at"]


async def test_a_bare_token_is_accepted_like_a_bearer_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    bare = await client.get(settings_path(app), headers=auth(app))
    with_bearer = await client.get(settings_path(app), headers=bearer(app))

    assert ok(bare) == ok(with_bearer)


async def test_settings_without_a_token_are_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.get(settings_path(app))

    error(response, 401)


# --- validation -----------------------------------------------------------------------------


async def test_an_unknown_field_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(
        settings_path(app),
        headers=auth(app),
        json={"popup_url": "https://hooks.example.com/p", "popupUrl": "https://x.example.com"},
    )

    invalid(response, "popupUrl")
    assert (await get_settings(client, app))["popup_url"] is None


@pytest.mark.parametrize("field", ["recording_enabled", "streaming_enabled"])
@pytest.mark.parametrize("value", ["true", 1, "yes"])
async def test_a_boolean_setting_must_be_a_json_boolean(
    client: httpx.AsyncClient, settings: Settings, field: str, value: object
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(settings_path(app), headers=auth(app), json={field: value})

    invalid(response, field)
    assert (await get_settings(client, app))[field] is False


@pytest.mark.parametrize("field", ["recording_enabled", "streaming_enabled"])
async def test_a_null_boolean_setting_is_rejected_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    app = await app_with_token(client, settings)
    await put_settings(client, app, {field: True})

    response = await client.put(settings_path(app), headers=auth(app), json={field: None})

    invalid(response, field)
    assert (await get_settings(client, app))[field] is True


@pytest.mark.parametrize("field", [*WEBHOOK_URL_FIELDS, "streaming_url"])
@pytest.mark.parametrize(
    "url",
    ["/webhook/popup", "your-server.com/webhook", "ftp://files.example.com/x", "https://", ""],
)
async def test_a_setting_url_must_be_absolute_http(
    client: httpx.AsyncClient, settings: Settings, field: str, url: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(settings_path(app), headers=auth(app), json={field: url})

    invalid(response, field)
    assert (await get_settings(client, app))[field] is None


@pytest.mark.parametrize("url", ["wss://stream.example.com/audio", "ws://stream.example.com/a"])
async def test_streaming_url_may_be_a_websocket_url(
    client: httpx.AsyncClient, settings: Settings, url: str
) -> None:
    app = await app_with_token(client, settings)

    answered = await put_settings(client, app, {"streaming_url": url})

    assert answered["streaming_url"] == url
    assert (await get_settings(client, app))["streaming_url"] == url


@pytest.mark.parametrize("field", WEBHOOK_URL_FIELDS)
async def test_a_webhook_url_may_not_be_a_websocket_url(
    client: httpx.AsyncClient, settings: Settings, field: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(
        settings_path(app), headers=auth(app), json={field: "wss://hooks.example.com/x"}
    )

    invalid(response, field)


@pytest.mark.parametrize("field", WEBHOOK_URL_FIELDS)
@pytest.mark.parametrize("url", NON_PUBLIC_URLS)
async def test_a_webhook_url_to_a_non_public_address_is_forbidden(
    client: httpx.AsyncClient, settings: Settings, field: str, url: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(settings_path(app), headers=auth(app), json={field: url})

    details = invalid(response, field)
    assert details["code"] == "forbidden_target"
    assert (await get_settings(client, app))[field] is None


async def test_a_forbidden_url_rejects_the_whole_update(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.put(
        settings_path(app),
        headers=auth(app),
        json={
            "missed_call_url": "https://hooks.example.com/missed",
            "recording_enabled": True,
            "popup_url": "http://10.0.0.1/x",
        },
    )

    invalid(response, "popup_url")
    current = await get_settings(client, app)
    assert current["missed_call_url"] is None
    assert current["recording_enabled"] is False
    assert current["popup_url"] is None


@pytest.mark.parametrize("url", NON_PUBLIC_URLS)
async def test_non_public_webhook_urls_are_allowed_when_private_networks_are_allowed(
    tmp_path: Path, database_url: str, url: str
) -> None:
    private = make_settings(tmp_path / "home", database_url, allow_private_networks=True)
    async with LifespanManager(create_app(private)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            app = await app_with_token(client, private)

            answered = await put_settings(client, app, {"popup_url": url, "recording_url": url})
            current = await get_settings(client, app)

    assert answered["popup_url"] == url
    assert current["recording_url"] == url


# --- optimistic concurrency -----------------------------------------------------------------


async def test_every_response_carries_the_settings_version_as_etag(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    first = await client.get(settings_path(app), headers=auth(app))
    updated = await client.put(
        settings_path(app), headers=auth(app), json={"recording_enabled": True}
    )
    second = await client.get(settings_path(app), headers=auth(app))

    assert re.fullmatch(r'"\d+"', first.headers["ETag"])
    assert updated.headers["ETag"] != first.headers["ETag"]
    assert second.headers["ETag"] == updated.headers["ETag"]


async def test_a_matching_if_match_updates(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)
    etag = (await client.get(settings_path(app), headers=auth(app))).headers["ETag"]

    response = await client.put(
        settings_path(app),
        headers={**auth(app), "If-Match": etag},
        json={"popup_url": "https://hooks.example.com/popup"},
    )

    assert ok(response)["settings"]["popup_url"] == "https://hooks.example.com/popup"
    assert (await get_settings(client, app))["popup_url"] == "https://hooks.example.com/popup"


async def test_a_stale_if_match_is_409_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    stale = (await client.get(settings_path(app), headers=auth(app))).headers["ETag"]
    await put_settings(client, app, {"popup_url": "https://hooks.example.com/first"})
    before = (await client.get(settings_path(app), headers=auth(app))).headers["ETag"]

    response = await client.put(
        settings_path(app),
        headers={**auth(app), "If-Match": stale},
        json={"popup_url": "https://hooks.example.com/second", "recording_enabled": True},
    )

    assert error(response, 409)["code"] == "settings_conflict"
    after = await client.get(settings_path(app), headers=auth(app))
    assert ok(after)["settings"]["popup_url"] == "https://hooks.example.com/first"
    assert ok(after)["settings"]["recording_enabled"] is False
    assert after.headers["ETag"] == before


async def test_a_write_through_app_setting_makes_an_earlier_etag_stale(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    etag = (await client.get(settings_path(app), headers=auth(app))).headers["ETag"]
    legacy_success(await post_setting(client, app, "popup", "https://hooks.example.com/p"))

    response = await client.put(
        settings_path(app),
        headers={**auth(app), "If-Match": etag},
        json={"popup_url": "https://hooks.example.com/other"},
    )

    assert error(response, 409)["code"] == "settings_conflict"
    assert (await get_settings(client, app))["popup_url"] == "https://hooks.example.com/p"


# --- the path must be the token's app -------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_a_customer_id_other_than_the_tokens_is_404(
    client: httpx.AsyncClient, settings: Settings, method: str
) -> None:
    app = await app_with_token(client, settings)
    other = await customer_with_token(client, settings)
    path = f"/v2/integrations/{other.id}/apps/{app.id}/settings"

    response = await client.request(method, path, headers=auth(app), json={})

    error(response, 404)


@pytest.mark.parametrize("method", ["GET", "PUT"])
async def test_an_app_id_other_than_the_tokens_is_404(
    client: httpx.AsyncClient, settings: Settings, method: str
) -> None:
    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    sibling = await register_app(client, customer, AppName="Sibling")

    response = await client.request(
        method, settings_path(sibling), headers=auth(app), json={"recording_enabled": True}
    )

    error(response, 404)
    assert (await get_settings(client, sibling))["recording_enabled"] is False


async def test_an_unknown_app_id_is_404(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)
    path = f"/v2/integrations/{app.customer_id}/apps/{uuid.uuid4()}/settings"

    response = await client.get(path, headers=auth(app))

    error(response, 404)


# --- Exotel-compatible /app_setting ---------------------------------------------------------


async def test_posting_an_app_setting_answers_with_customer_app_key_and_value(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await post_setting(client, app, "popup", "https://your-server.com/webhook/popup")

    assert legacy_success(response) == {
        "CustomerID": app.customer_id,
        "AppID": app.id,
        "Key": "popup",
        "Value": "https://your-server.com/webhook/popup",
    }


@pytest.mark.parametrize(
    ("key", "value", "field", "stored"),
    [
        ("popup", "https://hooks.example.com/popup", "popup_url", None),
        ("missedCall", "https://hooks.example.com/missed", "missed_call_url", None),
        ("callback", "https://hooks.example.com/cb", "callback_url", None),
        ("record", "true", "recording_enabled", True),
        ("streaming", "wss://stream.example.com/audio", "streaming_url", None),
    ],
)
async def test_an_exotel_key_writes_its_resource_setting(
    client: httpx.AsyncClient,
    settings: Settings,
    key: str,
    value: str,
    field: str,
    stored: object,
) -> None:
    app = await app_with_token(client, settings)

    legacy_success(await post_setting(client, app, key, value))

    assert (await get_settings(client, app))[field] == (value if stored is None else stored)


@pytest.mark.parametrize(("value", "stored"), [("true", True), ("false", False)])
async def test_record_takes_true_or_false_as_a_string(
    client: httpx.AsyncClient, settings: Settings, value: str, stored: bool
) -> None:
    app = await app_with_token(client, settings)
    await put_settings(client, app, {"recording_enabled": not stored})

    legacy_success(await post_setting(client, app, "record", value))

    assert (await get_settings(client, app))["recording_enabled"] is stored


@pytest.mark.parametrize("value", ["yes", "1", "", "on"])
async def test_record_with_another_value_is_400_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, value: str
) -> None:
    app = await app_with_token(client, settings)

    response = await post_setting(client, app, "record", value)

    assert "record" in legacy_failed(response, 400)
    assert (await get_settings(client, app))["recording_enabled"] is False


async def test_an_app_setting_value_must_be_a_string(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.post(
        APP_SETTING_URL, headers=auth(app), json={"Key": "record", "Value": True}
    )

    assert "Value" in legacy_failed(response, 400)
    assert (await get_settings(client, app))["recording_enabled"] is False


@pytest.mark.parametrize("key", ["popup", "missedCall", "callback"])
@pytest.mark.parametrize("url", NON_PUBLIC_URLS)
async def test_an_exotel_webhook_key_to_a_non_public_address_is_forbidden(
    client: httpx.AsyncClient, settings: Settings, key: str, url: str
) -> None:
    app = await app_with_token(client, settings)

    response = await post_setting(client, app, key, url)

    legacy_failed(response, 400)
    listed = legacy_success(await client.get(APP_SETTING_URL, headers=auth(app)))
    assert key not in {item["Key"] for item in listed}


async def test_an_exotel_url_key_with_a_relative_url_is_400(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await post_setting(client, app, "popup", "/webhook/popup")

    assert "popup_url" in legacy_failed(response, 400)
    assert (await get_settings(client, app))["popup_url"] is None


async def test_reposting_a_key_replaces_its_value(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    legacy_success(await post_setting(client, app, "popup", "https://hooks.example.com/old"))

    legacy_success(await post_setting(client, app, "popup", "https://hooks.example.com/new"))

    item = legacy_success(
        await client.get(APP_SETTING_URL, headers=auth(app), params={"key": "popup"})
    )
    assert item["Value"] == "https://hooks.example.com/new"


async def test_settings_written_as_resources_are_listed_by_app_setting(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await put_settings(client, app, SEED_FULL_BODY)

    listed = legacy_success(await client.get(APP_SETTING_URL, headers=auth(app)))

    expected = {
        "popup": SEED_FULL_BODY["popup_url"],
        "missedCall": SEED_FULL_BODY["missed_call_url"],
        "callback": SEED_FULL_BODY["callback_url"],
        "record": "true",
        "streaming": SEED_FULL_BODY["streaming_url"],
    }
    assert sorted(listed, key=lambda item: item["Key"]) == [
        {
            "CustomerID": app.customer_id,
            "AppID": app.id,
            "Key": key,
            "Value": value,
            "SettingKey": key,
            "SettingVal": value,
        }
        for key, value in sorted(expected.items())
    ]


async def test_settings_written_through_app_setting_are_read_as_resources(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    for key, value in [
        ("popup", "https://hooks.example.com/popup"),
        ("missedCall", "https://hooks.example.com/missed"),
        ("callback", "https://hooks.example.com/cb"),
        ("record", "true"),
        ("streaming", "wss://stream.example.com/audio"),
    ]:
        legacy_success(await post_setting(client, app, key, value))

    assert without_timestamps(await get_settings(client, app)) == {
        "popup_url": "https://hooks.example.com/popup",
        "missed_call_url": "https://hooks.example.com/missed",
        "callback_url": "https://hooks.example.com/cb",
        "recording_enabled": True,
        "recording_url": None,
        "streaming_enabled": False,
        "streaming_url": "wss://stream.example.com/audio",
    }


async def test_a_new_app_lists_only_record_as_false(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    listed = legacy_success(await client.get(APP_SETTING_URL, headers=auth(app)))

    assert [(item["Key"], item["Value"]) for item in listed] == [("record", "false")]


async def test_get_app_setting_with_a_key_answers_that_one_item(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await put_settings(client, app, {"popup_url": "https://hooks.example.com/popup"})

    response = await client.get(APP_SETTING_URL, headers=auth(app), params={"key": "popup"})

    assert legacy_success(response) == {
        "CustomerID": app.customer_id,
        "AppID": app.id,
        "Key": "popup",
        "Value": "https://hooks.example.com/popup",
        "SettingKey": "popup",
        "SettingVal": "https://hooks.example.com/popup",
    }


@pytest.mark.parametrize("key", ["nothing", "popup"])
async def test_get_app_setting_with_a_key_not_set_is_404(
    client: httpx.AsyncClient, settings: Settings, key: str
) -> None:
    app = await app_with_token(client, settings)

    response = await client.get(APP_SETTING_URL, headers=auth(app), params={"key": key})

    assert key in legacy_failed(response, 404)


async def test_other_keys_are_stored_and_listed_as_given(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    legacy_success(await post_setting(client, app, "WidgetPosition", "bottom-right"))

    item = legacy_success(
        await client.get(APP_SETTING_URL, headers=auth(app), params={"key": "WidgetPosition"})
    )
    assert item["Value"] == item["SettingVal"] == "bottom-right"
    assert without_timestamps(await get_settings(client, app)) == DEFAULTS


async def test_app_setting_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(APP_SETTING_URL)

    legacy_failed(response, 401)
