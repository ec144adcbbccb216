"""exoplane, the Exotel sandbox and a webhook receiver, each on its own 127.0.0.1 port.

Nothing is mocked: the sandbox places and rings calls, runs flows against exoplane's URLs,
streams audio to its media core and sends StatusCallbacks, all over real HTTP and WebSocket;
exoplane's worker delivers signed webhooks to the receiver. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.serving import listening_socket, serving, url_of
from tests.conftest import make_settings
from tests.e2e.servers import Sandbox, running_sandbox
from tests.factories import RegisteredApp, customer_with_token, register_app
from tests.voicebot.factories import Operator, create_operator
from tests.waiting import WAIT_SECONDS
from tests.webhooks.receiver import Received, Receiver, running_receiver

ACCOUNT_SID = "exoplane-e2e"
EXOTEL_KEY, EXOTEL_TOKEN = "e2e-api-key-7f3a", "e2e-api-token-91c2"
CALLER = "+919812345678"
# The sandbox's magic numbers: the last four digits decide how a PSTN number answers.
BUSY_SUFFIX, NO_ANSWER_SUFFIX = "0001", "0002"
INBOUND_FLOW = "1001"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox with one account whose key and token exoplane is given."""
    async with running_sandbox(ACCOUNT_SID, EXOTEL_KEY, EXOTEL_TOKEN) as running:
        yield running


# --- exoplane -----------------------------------------------------------------------------


@dataclass
class Exoplane:
    url: str
    http: httpx.AsyncClient
    settings: Settings


@contextlib.asynccontextmanager
async def running_exoplane(
    home: Path, database_url: str, sandbox: Sandbox, **overrides: Any
) -> AsyncIterator[Exoplane]:
    """exoplane with its webhook worker, on a real port the sandbox can reach."""
    values: dict[str, Any] = {
        "allow_private_networks": True,
        "exotel_api_base_url": sandbox.url,
        "exotel_timeout_seconds": 5.0,
        "media_require_signature": True,
        "webhook_poll_seconds": 0.05,
        "webhook_retry_schedule": [0.05] * 4,
        "webhook_timeout_seconds": 2.0,
        **overrides,
    }
    with contextlib.closing(listening_socket()) as sock:
        url = url_of(sock)
        settings = make_settings(home, database_url, public_url=url, **values)
        async with (
            serving(create_app(settings, run_worker=True), sock, timeout=WAIT_SECONDS),
            httpx.AsyncClient(base_url=url, timeout=WAIT_SECONDS) as http,
        ):
            yield Exoplane(url, http, settings)


@pytest.fixture
async def exoplane(tmp_path: Path, database_url: str, sandbox: Sandbox) -> AsyncIterator[Exoplane]:
    async with running_exoplane(tmp_path / "home", database_url, sandbox) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


# --- an integrator's app, its agents, and the flow on its ExoPhones -----------------------


@dataclass
class CallCentre:
    """An app on the sandbox's account whose webhooks all go to the receiver."""

    exoplane: Exoplane
    sandbox: Sandbox
    app: RegisteredApp
    signing_secret: str
    flow_urls: dict[str, Any]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": self.app.token}

    @property
    def base(self) -> str:
        return f"/v2/integrations/{self.app.customer_id}/apps/{self.app.id}"

    async def add_agent(
        self, user_id: str, *, phone: str, exophone: str, devices: dict[str, bool]
    ) -> str:
        """An agent owning ``exophone`` (which runs the inbound flow); their SIP username."""
        response = await self.exoplane.http.post(
            self.base + "/users",
            headers=self.auth,
            json={
                "user_id": user_id,
                "name": user_id.title(),
                "email": f"{user_id}@example.com",
                "phone_number": phone,
                "virtual_number": exophone,
            },
        )
        assert response.status_code == 201, response.text
        sip_username: str = response.json()["data"]["sip"]["username"]
        response = await self.exoplane.http.put(
            f"{self.base}/users/{user_id}/devices", headers=self.auth, json=devices
        )
        assert response.status_code == 200, response.text
        await self.sandbox.add_exophone(exophone, INBOUND_FLOW)
        return sip_username

    async def deliveries(self) -> list[dict[str, Any]]:
        """The delivery log, oldest first: the order in which exoplane raised its events."""
        response = await self.exoplane.http.get(
            self.base + "/webhooks/deliveries", headers=self.auth, params={"limit": 100}
        )
        assert response.status_code == 200, response.text
        deliveries: list[dict[str, Any]] = response.json()["data"]["deliveries"]
        return deliveries[::-1]


@pytest.fixture
async def call_centre(exoplane: Exoplane, sandbox: Sandbox, receiver: Receiver) -> CallCentre:
    """The app, its webhook URLs (recording on), and the helpdesk flow from seed 02's hooks:
    Passthru popup → Connect (exoplane routes) → Passthru hung-up → Hangup; nobody answering
    leads to Passthru missed-call."""
    customer = await customer_with_token(exoplane.http, exoplane.settings)
    app = await register_app(
        exoplane.http,
        customer,
        ExotelAccountSid=ACCOUNT_SID,
        ExotelApiKey=EXOTEL_KEY,
        ExotelApiToken=EXOTEL_TOKEN,
    )
    centre = CallCentre(exoplane, sandbox, app, "", {})
    response = await exoplane.http.put(
        centre.base + "/settings",
        headers=centre.auth,
        json={
            "popup_url": receiver.url("/popup"),
            "missed_call_url": receiver.url("/missed"),
            "callback_url": receiver.url("/callback"),
            "recording_url": receiver.url("/recording"),
            "recording_enabled": True,
        },
    )
    assert response.status_code == 200, response.text
    secret = await exoplane.http.get(centre.base + "/webhooks/secret", headers=centre.auth)
    centre.signing_secret = secret.json()["data"]["secret"]
    urls = await exoplane.http.get(centre.base + "/flow-urls", headers=centre.auth)
    centre.flow_urls = urls.json()["data"]
    hooks = centre.flow_urls["passthru_urls"]
    await sandbox.add_flow(
        INBOUND_FLOW,
        [
            {"type": "passthru", "url": hooks["popup"]},
            {
                "type": "connect",
                "url": centre.flow_urls["connect_applet_url"],
                "on_no_answer": "missed",
            },
            {"type": "passthru", "url": hooks["incomingcallhungup"]},
            {"type": "hangup"},
            {"id": "missed", "type": "passthru", "url": hooks["missedcall"]},
        ],
    )
    return centre


# --- the voice-bot side: an operator, Exotel credentials, the core fleet ------------------


@dataclass
class Platform:
    operator: Operator

    @property
    def auth(self) -> dict[str, str]:
        return self.operator.headers


@pytest.fixture
async def platform(exoplane: Exoplane, sandbox: Sandbox) -> Platform:
    """An operator with Exotel credentials for the sandbox and this exoplane as core fleet."""
    operator = await create_operator(exoplane.settings, "root@example.com", "super_admin")
    response = await exoplane.http.put(
        "/api/v1/integrations/exotel",
        headers=operator.headers,
        json={
            "account_sid": ACCOUNT_SID,
            "api_key": EXOTEL_KEY,
            "api_token": EXOTEL_TOKEN,
            "api_base_url": sandbox.url,
        },
    )
    assert response.status_code == 200, response.text
    response = await exoplane.http.put(
        "/api/v1/settings", headers=operator.headers, json={"core_fleet": [exoplane.url]}
    )
    assert response.status_code == 200, response.text
    return Platform(operator)


# --- webhooks -----------------------------------------------------------------------------


async def webhooks_for(receiver: Receiver, call_sid: str, events: list[str]) -> dict[str, Received]:
    """The webhooks about ``call_sid`` once ``events`` have all arrived, by event name.

    Fails when an event arrives twice: exoplane raises each fact about a call once.
    """

    def about_call() -> list[Received]:
        return [item for item in receiver.received if item.json.get("call_sid") == call_sid]

    async with receiver.arrived:
        try:
            await asyncio.wait_for(
                receiver.arrived.wait_for(
                    lambda: {item.json["event"] for item in about_call()} >= set(events)
                ),
                WAIT_SECONDS,
            )
        except TimeoutError:
            got = [item.json["event"] for item in about_call()]
            raise AssertionError(f"call {call_sid}: expected {events}, got {got}") from None
    arrived = about_call()
    names = [item.json["event"] for item in arrived]
    assert sorted(names) == sorted(set(names)), f"an event arrived twice: {names}"
    return {item.json["event"]: item for item in arrived}


def verified(item: Received, secret: str) -> dict[str, Any]:
    """The payload, after checking its Standard Webhooks signature with the app's secret."""
    payload: dict[str, Any] = Webhook(secret).verify(item.body, item.headers)
    headers = {name.lower(): value for name, value in item.headers.items()}
    assert headers["webhook-id"] == payload["event_id"]
    return payload
