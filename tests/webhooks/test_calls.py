"""The Connect applet's routing URL, StatusCallbacks, and the SSRF guard at delivery."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from exoplane.app import create_app
from exoplane.capabilities import Capabilities
from exoplane.config import Settings
from exoplane.integrations.calls.schemas import CallParameters
from exoplane.integrations.calls.service import status_callback_url
from exoplane.models import Call
from exoplane.security import load_secret_key
from tests.factories import RegisteredApp, app_with_token, database_session
from tests.webhooks.conftest import CALL, app_path, app_sending_to, auth, call_hook
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_delivery import _only_delivery


async def route_url(client: httpx.AsyncClient, app: RegisteredApp) -> str:
    response = await client.get(app_path(app, "/flow-urls"), headers=auth(app))
    parts = urlsplit(response.json()["data"]["connect_applet_url"])
    return f"{parts.path}?{parts.query}"


async def agent_with_devices(
    client: httpx.AsyncClient, app: RegisteredApp, *, phone: bool, sip: bool
) -> None:
    await client.post(
        app.users_path,
        headers=auth(app),
        json={
            "user_id": "agent_001",
            "name": "Agent",
            "email": "agent@example.com",
            "phone_number": "9876543210",
            "virtual_number": "08047491899",
        },
    )
    response = await client.put(
        f"{app.users_path}/agent_001/devices", headers=auth(app), json={"phone": phone, "sip": sip}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("phone", "sip", "numbers"),
    [
        (True, False, ["+919876543210"]),
        (False, True, ["sip:agent_001"]),
        (True, True, ["+919876543210", "sip:agent_001"]),
    ],
)
async def test_route_dials_the_devices_the_user_enabled(
    client: httpx.AsyncClient,
    settings: Settings,
    phone: bool,
    sip: bool,
    numbers: list[str],
) -> None:
    app = await app_with_token(client, settings)
    await agent_with_devices(client, app, phone=phone, sip=sip)

    response = await client.get(await route_url(client, app) + "&CallSid=c1&CallTo=08047491899")

    answer = response.json()
    assert response.status_code == 200
    assert answer["destination"] == {"numbers": numbers}
    assert answer["parallel_ringing"]["activate"] is (len(numbers) > 1)
    assert answer["outgoing_phone_number"] == "08047491899"
    assert answer["record"] is False
    assert "/call/inbound_call/" in answer["dial_passthru_event_url"]


async def test_route_records_when_the_app_records(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await agent_with_devices(client, app, phone=True, sip=True)
    await client.put(
        app_path(app, "/settings"), headers=auth(app), json={"recording_enabled": True}
    )

    response = await client.get(await route_url(client, app) + "&CallSid=c1&CallTo=+918047491899")

    assert response.json()["record"] is True


async def test_an_unknown_virtual_number_gets_a_clear_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.get(await route_url(client, app) + "&CallSid=c1&CallTo=08000000000")

    assert response.status_code == 404
    assert response.json()["Status"] == "Failed"
    assert "+918000000000" in response.json()["Error"]


async def test_route_without_a_valid_capability_is_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    response = await client.get(f"/v2/integrations/call/route/{app.id}?CallTo=08047491899")

    assert response.status_code == 401


async def _status_url(settings: Settings, app: RegisteredApp) -> str:
    async with database_session(settings) as session:
        call = await session.scalar(select(Call).where(Call.app_id == app.id))
    assert call is not None
    url = status_callback_url(settings, Capabilities(load_secret_key(settings)), call)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_status_callbacks_report_answered_then_completed_with_the_recording(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await call_hook(client, app, "popup", CALL)
    await receiver.wait_for(1)
    url = await _status_url(settings, app)

    answered = await client.post(url, data={"CallSid": "call_123", "EventType": "answered"})
    terminal = await client.post(
        url,
        json={
            "CallSid": "call_123",
            "EventType": "terminal",
            "Status": "completed",
            "ConversationDuration": 42,
            "RecordingUrl": "https://recordings.exotel.com/call_123.mp3",
        },
    )
    received = await receiver.wait_for(4)

    assert answered.status_code == 200
    assert terminal.status_code == 200
    events = [(item.path, item.json["event"]) for item in received[1:]]
    assert events[0] == ("/callback", "call_answered")
    assert sorted(events[1:]) == [
        ("/callback", "call_completed"),
        ("/recording", "recording_ready"),
    ]
    completed = next(item.json for item in received if item.json["event"] == "call_completed")
    assert completed["status"] == "completed"
    assert completed["duration"] == 42


async def test_a_status_callback_with_a_forged_capability_is_401(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await call_hook(client, app, "popup", CALL)
    url = await _status_url(settings, app)

    response = await client.post(url.split("sig=")[0] + "sig=forged", data={"Status": "completed"})
    unknown = await client.post("/v2/integrations/call/status/no-such-call?sig=x", data={})

    assert response.status_code == 401
    assert unknown.status_code == 401


async def _call_being_placed(settings: Settings, app: RegisteredApp) -> str:
    """A click-to-call recorded before Exotel answered with its CallSid; its status URL."""
    call = Call(
        id="placing-1",
        app_id=app.id,
        call_sid=None,
        direction="outbound",
        from_number="sip:agent_001",
        to_number="+919123456789",
        user_id="agent_001",
        status="queued",
    )
    async with database_session(settings) as session:
        session.add(call)
    parts = urlsplit(status_callback_url(settings, Capabilities(load_secret_key(settings)), call))
    return f"{parts.path}?{parts.query}"


async def test_a_status_callback_before_exotel_answered_gives_the_call_its_sid(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    url = await _call_being_placed(settings, app)

    answered = await client.post(url, data={"CallSid": "call_early", "EventType": "answered"})
    [webhook] = await receiver.wait_for(1)

    assert answered.status_code == 200, answered.text
    assert (webhook.json["event"], webhook.json["call_sid"]) == ("call_answered", "call_early")
    assert webhook.json["from"] == "sip:agent_001"


async def test_a_status_callback_without_a_sid_for_a_call_being_placed_is_400(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    url = await _call_being_placed(settings, app)

    response = await client.post(url, data={"EventType": "answered"})

    assert response.status_code == 400
    assert "'CallSid'" in response.json()["Error"]
    assert receiver.received == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_delivery_to_a_private_address_fails_when_private_networks_are_not_allowed(
    settings: Settings, receiver: Receiver, host: str
) -> None:
    # Saved while allowed (as in development); delivered by a worker that does not allow it.
    strict = settings.model_copy(update={"allow_private_networks": False})
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            popup = receiver.url("/popup").replace("127.0.0.1", host)
            app = await app_sending_to(client, settings, receiver, popup_url=popup)
            await call_hook(client, app, "popup", CALL)
    async with LifespanManager(create_app(strict, run_worker=True)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            detail = await _only_delivery(client, app, status="failed")

    assert receiver.received == []
    assert detail["attempts"] == 1
    assert "forbidden target" in str(detail["last_error"])


@pytest.mark.parametrize(
    ("sent", "read"),
    [("42", 42), ("9" * 30, None), ("\u00b2", None), ("-3", None), ("", None)],
)
def test_a_duration_is_read_only_when_a_column_can_hold_it(sent: str, read: int | None) -> None:
    assert CallParameters.read({"Duration": sent}).duration == read
