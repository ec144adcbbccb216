"""Click-to-call (SPEC §4.7, exotel-facts §1.9): ``POST /v2/integrations/call/outbound_call``
against the Exotel sandbox, with exoplane on a real port so the sandbox's StatusCallbacks
reach it."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from exoplane.config import Settings
from exoplane.models import Call
from tests.e2e.conftest import Exoplane
from tests.e2e.servers import Sandbox
from tests.factories import (
    APP_BODY,
    RegisteredApp,
    create_user,
    customer_with_token,
    database_session,
    register_app,
)
from tests.integrations.conftest import EXOTEL_API_KEY, EXOTEL_API_TOKEN

OUTBOUND = "/v2/integrations/call/outbound_call"
AGENT = "agent_001"
AGENT_PHONE = "+919876500001"
VIRTUAL_NUMBER = "+918047491899"
STATUS_PATH = re.compile(r"^/v2/integrations/call/status/(?P<call_id>[^/?]+)$")


@pytest.fixture
def settings(exoplane: Exoplane) -> Settings:
    return exoplane.settings


@pytest.fixture
def client(exoplane: Exoplane) -> httpx.AsyncClient:
    return exoplane.http


@pytest.fixture
async def calling_app(client: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    """An app with its own Exotel credentials and one agent who has a virtual number."""
    customer = await customer_with_token(client, settings)
    registered = await register_app(
        client, customer, ExotelApiKey=EXOTEL_API_KEY, ExotelApiToken=EXOTEL_API_TOKEN
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


async def register_sip_client(exotel: Sandbox) -> None:
    """The agent's browser client is registered, so their SIP leg rings and answers."""
    registration = {"account_sid": exotel.account_sid, "username": AGENT, "registered": True}
    await exotel.post("/_sandbox/sip/registrations", registration, status=200)


def callbacks(call: dict[str, Any]) -> list[tuple[str, int]]:
    """The StatusCallbacks the sandbox sent for a call: (event, exoplane's HTTP status)."""
    return [(sent["event"], sent["status"]) for sent in call["Callbacks"]]


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
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    response = await call_out(client, calling_app)

    assert response.status_code == 200, response.text
    [request] = await exotel.calls_api_requests()
    assert request["path"] == f"/v1/Accounts/{APP_BODY['ExotelAccountSid']}/Calls/connect"
    assert request["fields"]["From"] == f"sip:{AGENT}"
    assert request["fields"]["To"] == "+919123456789"
    assert request["fields"]["CallerId"] == VIRTUAL_NUMBER
    # The sandbox places a call only for the account's own API key and token.
    assert request["status"] == 200


async def test_the_phone_is_rung_first_when_only_the_phone_is_enabled(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    await set_devices(client, calling_app, phone=True, sip=False)

    response = await call_out(client, calling_app)

    assert response.status_code == 200, response.text
    assert (await exotel.calls_api_requests())[0]["fields"]["From"] == AGENT_PHONE
    assert response.json()["Data"]["FromNumber"] == AGENT_PHONE


@pytest.mark.parametrize("to", ["9123456789", "+91 91234 56789", "0091-9123456789"])
async def test_the_called_number_is_normalised(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox, to: str
) -> None:
    await call_out(client, calling_app, to=to)

    assert (await exotel.calls_api_requests())[0]["fields"]["To"] == "+919123456789"


async def test_the_answer_is_the_legacy_envelope_with_the_call_sid(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    response = await call_out(client, calling_app)

    body = response.json()
    [placed] = await exotel.calls()
    assert response.status_code == 200
    assert body == {
        "RequestId": response.headers["x-request-id"],
        "Status": "Success",
        "Code": 200,
        "Error": "",
        "Data": {"CallSid": placed["Sid"], "AppUserID": AGENT, "FromNumber": f"sip:{AGENT}"},
    }


async def test_status_callbacks_come_back_to_a_signed_url_for_this_call(
    client: httpx.AsyncClient, calling_app: RegisteredApp, settings: Settings, exotel: Sandbox
) -> None:
    await register_sip_client(exotel)

    call_sid = (await call_out(client, calling_app)).json()["Data"]["CallSid"]

    [request] = await exotel.calls_api_requests()
    form = request["fields"]
    url = urlsplit(form["StatusCallback"])
    match = STATUS_PATH.match(url.path)
    assert f"{url.scheme}://{url.netloc}" == settings.public_url
    assert match is not None
    assert parse_qs(url.query)["sig"][0]
    assert form["CustomField"] == f"exoplane:{match['call_id']}"
    assert form["StatusCallbackContentType"] == "application/json"
    call = await exotel.finished_call(call_sid, reports=1)
    assert callbacks(call) == [("answered", 200), ("terminal", 200)]


async def stored_calls(settings: Settings) -> list[Call]:
    async with database_session(settings) as session:
        return list(await session.scalars(select(Call).order_by(Call.created_at)))


async def test_status_callbacks_sent_before_exotel_answers_the_request_are_not_lost(
    client: httpx.AsyncClient, calling_app: RegisteredApp, settings: Settings, exotel: Sandbox
) -> None:
    await register_sip_client(exotel)
    # The whole simulated call (about 0.2 s) is over before Exotel's answer arrives.
    await exotel.add_fault(route="calls_connect", reply_latency_seconds=1.0)

    response = await call_out(client, calling_app)

    assert response.status_code == 200, response.text
    call_sid = response.json()["Data"]["CallSid"]
    call = await exotel.finished_call(call_sid, reports=1)
    assert callbacks(call) == [("answered", 200), ("terminal", 200)]
    [stored] = await stored_calls(settings)
    assert (stored.call_sid, stored.status) == (call_sid, "completed")


async def test_a_placed_call_is_stored_with_its_sid_and_final_status(
    client: httpx.AsyncClient, calling_app: RegisteredApp, settings: Settings, exotel: Sandbox
) -> None:
    await register_sip_client(exotel)

    call_sid = (await call_out(client, calling_app)).json()["Data"]["CallSid"]

    await exotel.finished_call(call_sid, reports=1)
    [stored] = await stored_calls(settings)
    assert (stored.call_sid, stored.direction, stored.status) == (call_sid, "outbound", "completed")
    assert (stored.from_number, stored.to_number) == (f"sip:{AGENT}", "+919123456789")


async def test_an_unknown_user_is_404_and_rings_nobody(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    response = await call_out(client, calling_app, user_id="nobody")

    assert "nobody" in failed(response, 404)
    assert await exotel.calls_api_requests() == []


async def test_a_user_without_a_virtual_number_is_400_and_rings_nobody(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    await create_user(client, calling_app, 2, virtual_number=None)

    response = await call_out(client, calling_app, user_id="agent_002")

    assert "VirtualNumber" in failed(response, 400)
    assert await exotel.calls_api_requests() == []


async def test_an_exotel_rest_exception_is_502_with_its_message(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    rotated = {
        "sid": exotel.account_sid,
        "api_key": EXOTEL_API_KEY,
        "api_token": "rotated-elsewhere",
    }
    await exotel.post("/_sandbox/accounts", rotated)

    response = await call_out(client, calling_app)

    assert "Authentication failed" in failed(response, 502)
    assert await exotel.calls() == []


async def test_an_exotel_server_error_is_502_and_places_no_call(
    client: httpx.AsyncClient, calling_app: RegisteredApp, settings: Settings, exotel: Sandbox
) -> None:
    await exotel.add_fault(route="calls_connect", status=500)

    response = await call_out(client, calling_app)

    assert "Injected fault" in failed(response, 502)
    assert await exotel.calls() == []
    [stored] = await stored_calls(settings)
    assert (stored.call_sid, stored.status) == (None, "failed")


async def test_another_apps_id_with_this_token_is_404_and_rings_nobody(
    client: httpx.AsyncClient, calling_app: RegisteredApp, settings: Settings, exotel: Sandbox
) -> None:
    other = await register_app(client, await customer_with_token(client, settings))
    await create_user(client, other, 1)

    response = await call_out(client, calling_app, app_id=other.id)

    failed(response, 404)
    assert await exotel.calls_api_requests() == []


async def test_an_invalid_called_number_is_400_and_rings_nobody(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    response = await call_out(client, calling_app, to="12345")

    assert "'to'" in failed(response, 400)
    assert await exotel.calls_api_requests() == []


async def test_click_to_call_without_a_token_is_401(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    response = await client.post(
        OUTBOUND, json={"app_id": calling_app.id, "user_id": AGENT, "to": "x"}
    )

    failed(response, 401)
    assert await exotel.calls_api_requests() == []


# --- Exotel's nested error form -------------------------------------------------------------


def nested_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The ``error_data`` of the v2 envelope that ``Error`` carries as a JSON string."""
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["Status"], body["Code"], body["Data"]) == ("Failed", status, None)
    nested = json.loads(body["Error"])
    assert nested["request_id"] == body["RequestId"] == response.headers["x-request-id"]
    assert nested["method"] == "POST"
    assert nested["http_code"] == status
    assert nested["response"]["code"] == status
    assert nested["response"]["status"] == "failure"
    error_data: dict[str, Any] = nested["response"]["error_data"]
    assert error_data["code"] == status
    assert error_data["message"]
    return error_data


async def test_a_validation_error_is_in_exotels_nested_error_form(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    response = await call_out(client, calling_app, to="12345")

    assert "'to'" in nested_error(response, 400)["description"]
    assert await exotel.calls_api_requests() == []


async def test_a_missing_field_is_in_exotels_nested_error_form(
    client: httpx.AsyncClient, calling_app: RegisteredApp
) -> None:
    body = {"app_id": calling_app.id, "to": "09123456789"}

    response = await client.post(OUTBOUND, headers={"Authorization": calling_app.token}, json=body)

    assert "'user_id'" in nested_error(response, 400)["description"]


async def test_an_upstream_failure_is_in_exotels_nested_error_form(
    client: httpx.AsyncClient, calling_app: RegisteredApp, exotel: Sandbox
) -> None:
    rotated = {
        "sid": exotel.account_sid,
        "api_key": EXOTEL_API_KEY,
        "api_token": "rotated-elsewhere",
    }
    await exotel.post("/_sandbox/accounts", rotated)

    response = await call_out(client, calling_app)

    error_data = nested_error(response, 502)
    assert "Authentication failed" in error_data["description"]
    assert error_data["message"] == "Bad Gateway"


async def test_an_unknown_user_and_a_missing_token_are_in_exotels_nested_error_form(
    client: httpx.AsyncClient, calling_app: RegisteredApp
) -> None:
    unknown = await call_out(client, calling_app, user_id="nobody")
    no_token = await client.post(
        OUTBOUND, json={"app_id": calling_app.id, "user_id": AGENT, "to": "09123456789"}
    )

    assert "nobody" in nested_error(unknown, 404)["description"]
    assert nested_error(no_token, 401)["description"]


async def test_other_exotel_style_endpoints_keep_a_plain_error_message(
    client: httpx.AsyncClient, calling_app: RegisteredApp
) -> None:
    response = await client.get(
        "/v2/integrations/usermapping",
        headers={"Authorization": calling_app.token},
        params={"user_id": "nobody"},
    )

    assert response.status_code == 404
    error = response.json()["Error"]
    assert "nobody" in error
    assert not error.startswith("{")
