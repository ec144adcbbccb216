"""Click-to-call (SPEC §4.7, exotel-facts §1.9): ``POST /v2/integrations/call/outbound_call``
against a real HTTP server standing in for Exotel."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from exoplane.config import Settings
from tests.conftest import make_settings
from tests.factories import (
    APP_BODY,
    RegisteredApp,
    create_user,
    customer_with_token,
    register_app,
)
from tests.voicebot.exotel_standin import (
    ExotelStandIn,
    json_call,
    running_exotel,
    xml_rest_exception,
)

OUTBOUND = "/v2/integrations/call/outbound_call"
API_KEY = "app-exotel-key-51d0c7"
API_TOKEN = "app-exotel-token-e2a94b"
AGENT = "agent_001"
AGENT_PHONE = "+919876500001"
VIRTUAL_NUMBER = "+918047491899"
STATUS_PATH = re.compile(r"^/v2/integrations/call/status/(?P<call_id>[^/?]+)$")


@pytest.fixture
async def exotel() -> AsyncIterator[ExotelStandIn]:
    async with running_exotel() as standin:
        yield standin


@pytest.fixture
def settings(tmp_path: Path, database_url: str, exotel: ExotelStandIn) -> Settings:
    return make_settings(
        tmp_path / "home",
        database_url,
        exotel_api_base_url=exotel.base_url,
        allow_private_networks=True,
    )


@pytest.fixture
async def calling_app(client: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    """An app with its own Exotel credentials and one agent who has a virtual number."""
    customer = await customer_with_token(client, settings)
    registered = await register_app(
        client, customer, ExotelApiKey=API_KEY, ExotelApiToken=API_TOKEN
    )
    await create_user(client, registered, 1)
    return registered


async def set_devices(
    client: httpx.AsyncClient, app: RegisteredApp, *, phone: bool, sip: bool
) -> None:
    response = await client.put(
        f"{app.users_path}/{AGENT}/devices",
        headers={"Authorization": app.token},
        json={"phone": phone, "sip": sip},
    )
    assert response.status_code == 200, response.text


async def call_out(
    client: httpx.AsyncClient, app: RegisteredApp, **overrides: Any
) -> httpx.Response:
    body = {"app_id": app.id, "user_id": AGENT, "to": "09123456789", **overrides}
    return await client.post(OUTBOUND, headers={"Authorization": app.token}, json=body)


def failed(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["Status"] == "Failed"
    assert body["Code"] == status
    assert body["RequestId"] == response.headers["x-request-id"]
    message: str = body["Error"]
    assert message
    return message


async def test_the_sip_device_is_rung_first_when_it_is_enabled(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn
) -> None:
    response = await call_out(client, calling_app)

    assert response.status_code == 200, response.text
    [request] = exotel.requests
    assert request.path == f"/v1/Accounts/{APP_BODY['ExotelAccountSid']}/Calls/connect"
    assert request.form["From"] == f"sip:{AGENT}"
    assert request.form["To"] == "+919123456789"
    assert request.form["CallerId"] == VIRTUAL_NUMBER
    assert request.basic_auth == (API_KEY, API_TOKEN)


async def test_the_phone_is_rung_first_when_only_the_phone_is_enabled(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn
) -> None:
    await set_devices(client, calling_app, phone=True, sip=False)

    response = await call_out(client, calling_app)

    assert response.status_code == 200, response.text
    assert exotel.requests[0].form["From"] == AGENT_PHONE
    assert response.json()["Data"]["FromNumber"] == AGENT_PHONE


@pytest.mark.parametrize("to", ["9123456789", "+91 91234 56789", "0091-9123456789"])
async def test_the_called_number_is_normalised(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn, to: str
) -> None:
    await call_out(client, calling_app, to=to)

    assert exotel.requests[0].form["To"] == "+919123456789"


async def test_the_answer_is_the_legacy_envelope_with_the_call_sid(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn
) -> None:
    exotel.script.append(json_call("sid-outbound-1", "in-progress"))

    response = await call_out(client, calling_app)

    body = response.json()
    assert response.status_code == 200
    assert body == {
        "RequestId": response.headers["x-request-id"],
        "Status": "Success",
        "Code": 200,
        "Error": "",
        "Data": {"CallSid": "sid-outbound-1", "AppUserID": AGENT, "FromNumber": f"sip:{AGENT}"},
    }


async def test_status_callbacks_come_back_to_a_signed_url_for_this_call(
    client: httpx.AsyncClient, calling_app: RegisteredApp, settings: Settings, exotel: ExotelStandIn
) -> None:
    exotel.script.append(json_call("sid-outbound-1"))
    await call_out(client, calling_app)

    form = exotel.requests[0].form
    url = urlsplit(form["StatusCallback"])
    match = STATUS_PATH.match(url.path)
    assert f"{url.scheme}://{url.netloc}" == settings.public_url
    assert match is not None
    assert parse_qs(url.query)["sig"][0]
    assert form["CustomField"] == f"exoplane:{match['call_id']}"
    assert form["StatusCallbackContentType"] == "application/json"
    callback = await client.post(
        f"{url.path}?{url.query}", json={"CallSid": "sid-outbound-1", "EventType": "answered"}
    )
    assert callback.status_code == 200, callback.text


async def test_an_unknown_user_is_404_and_rings_nobody(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn
) -> None:
    response = await call_out(client, calling_app, user_id="nobody")

    assert "nobody" in failed(response, 404)
    assert exotel.requests == []


async def test_a_user_without_a_virtual_number_is_400_and_rings_nobody(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn
) -> None:
    await create_user(client, calling_app, 2, virtual_number=None)

    response = await call_out(client, calling_app, user_id="agent_002")

    assert "VirtualNumber" in failed(response, 400)
    assert exotel.requests == []


async def test_an_exotel_rest_exception_is_502_with_its_message(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn
) -> None:
    exotel.script.append(xml_rest_exception("Insufficient balance", 402))

    response = await call_out(client, calling_app)

    assert "Insufficient balance" in failed(response, 502)


async def test_another_apps_id_with_this_token_is_404_and_rings_nobody(
    client: httpx.AsyncClient, calling_app: RegisteredApp, settings: Settings, exotel: ExotelStandIn
) -> None:
    other = await register_app(client, await customer_with_token(client, settings))
    await create_user(client, other, 1)

    response = await call_out(client, calling_app, app_id=other.id)

    failed(response, 404)
    assert exotel.requests == []


async def test_an_invalid_called_number_is_400_and_rings_nobody(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn
) -> None:
    response = await call_out(client, calling_app, to="12345")

    assert "'to'" in failed(response, 400)
    assert exotel.requests == []


async def test_click_to_call_without_a_token_is_401(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: ExotelStandIn
) -> None:
    response = await client.post(
        OUTBOUND, json={"app_id": calling_app.id, "user_id": AGENT, "to": "x"}
    )

    failed(response, 401)
    assert exotel.requests == []
