"""exoplane against the sandbox: a voice-bot test call reaches it exactly as seed 04 says."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.sandbox.app import SandboxSettings, create_sandbox_app
from exoplane.serving import listening_socket, serving, url_of
from tests.conftest import make_settings
from tests.voicebot.factories import create_operator

SID, KEY, TOKEN = "platform", "platform-key", "platform-token"


@pytest.fixture
async def sandbox_url() -> AsyncIterator[str]:
    """The sandbox on a real port, as exoplane's HTTP client needs."""
    app = create_sandbox_app(SandboxSettings(_env_file=None, time_scale=0.01))
    with contextlib.closing(listening_socket()) as sock:
        url = url_of(sock)
        async with serving(app, sock), httpx.AsyncClient() as http:
            await http.post(
                url + "/_sandbox/accounts", json={"sid": SID, "api_key": KEY, "api_token": TOKEN}
            )
            flow = {"account_sid": SID, "id": "1", "applets": [{"type": "hangup"}]}
            assert (await http.post(url + "/_sandbox/flows", json=flow)).status_code == 201
            yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "home", database_url, allow_private_networks=True)


async def test_a_test_call_through_the_sandbox_returns_its_call_sid(
    settings: Settings, sandbox_url: str
) -> None:
    operator = await create_operator(settings, "root@example.com", "super_admin")
    headers = {"Authorization": f"Bearer {operator.api_key}"}
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.put(
                "/api/v1/integrations/exotel",
                headers=headers,
                json={
                    "account_sid": SID,
                    "api_key": KEY,
                    "api_token": TOKEN,
                    "api_base_url": sandbox_url + "/some/path/",
                },
            )
            did = (
                await client.post(
                    "/api/v1/integrations/exotel/dids",
                    headers=headers,
                    json={
                        "number": "08047491899",
                        "bot_id": "echo",
                        "flow_url": f"http://my.exotel.com/{SID}/exoml/start_voice/1",
                    },
                )
            ).json()
            answer = await client.post(
                f"/api/v1/integrations/exotel/dids/{did['id']}/test-call",
                headers=headers,
                json={"to_number": "9876543210"},
            )

    async with httpx.AsyncClient() as http:
        calls = (await http.get(sandbox_url + "/_sandbox/calls")).json()
        requests = (await http.get(sandbox_url + "/_sandbox/requests")).json()
    assert answer.status_code == 200, answer.text
    assert answer.json()["call_sid"] == calls[0]["Sid"]
    assert answer.json()["provider_status"] == "queued"
    assert requests[0]["path"] == f"/v1/Accounts/{SID}/Calls/connect"
    assert requests[0]["fields"] == {
        "From": "+919876543210",
        "CallerId": "+918047491899",
        "Url": f"http://my.exotel.com/{SID}/exoml/start_voice/1",
        "CallType": "trans",
        "CustomField": f"cxb-test:{did['id']}",
    }
