"""``/api/v1/apps/{app_id}/calls``: operators read any app's call log, a call's timeline,
and follow it live, as the app itself does under ``/v2/integrations``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from exoplane.config import Settings
from tests.integrations.calls.test_call_log import answered_call, call_params
from tests.voicebot.factories import Operator, create_operator
from tests.webhooks.conftest import (
    app_path,
    app_sending_to,
    auth,
    call_hook,
    serving,
    webhook_settings,
)
from tests.webhooks.receiver import Receiver, running_receiver


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return webhook_settings(tmp_path, database_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings) as http:
        yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


@pytest.fixture
async def operator(settings: Settings) -> Operator:
    return await create_operator(settings, "ops@example.com", "admin")


async def test_an_operator_sees_an_apps_calls_as_the_app_does(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, operator: Operator
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await answered_call(client, app, "c-answered")
    await call_hook(client, app, "popup", call_params("c-ringing", caller="09876543211"))
    base = f"/api/v1/apps/{app.id}/calls"

    listed = await client.get(base, headers=operator.headers)
    answered = await client.get(base, headers=operator.headers, params={"status": "completed"})
    by_number = await client.get(base, headers=operator.headers, params={"number": "09876543211"})
    page = await client.get(base, headers=operator.headers, params={"limit": 1})
    rest = await client.get(
        base, headers=operator.headers, params={"limit": 1, "cursor": page.json()["next_cursor"]}
    )
    one = await client.get(f"{base}/c-answered", headers=operator.headers)
    as_app = await client.get(app_path(app, "/calls/c-answered"), headers=auth(app))
    live = await client.get(f"{base}/c-answered/events", headers=operator.headers)

    assert listed.status_code == 200, listed.text
    assert [c["call_sid"] for c in listed.json()["calls"]] == ["c-ringing", "c-answered"]
    assert [c["call_sid"] for c in answered.json()["calls"]] == ["c-answered"]
    assert [c["call_sid"] for c in by_number.json()["calls"]] == ["c-ringing"]
    assert [c["call_sid"] for c in page.json()["calls"] + rest.json()["calls"]] == [
        "c-ringing",
        "c-answered",
    ]
    assert one.json()["timeline"] == as_app.json()["data"]["timeline"]
    assert one.json()["outcome"] == "answered"
    assert live.status_code == 200
    assert "hook_received" in live.text
    assert "event: end" in live.text


async def test_refusals_name_what_is_wrong(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, operator: Operator
) -> None:
    app = await app_sending_to(client, settings, receiver)
    base = f"/api/v1/apps/{app.id}/calls"

    unknown = await client.get(f"{base}/c-nowhere", headers=operator.headers)
    unknown_live = await client.get(f"{base}/c-nowhere/events", headers=operator.headers)
    bad_cursor = await client.get(base, headers=operator.headers, params={"cursor": "x"})
    bad_status = await client.get(base, headers=operator.headers, params={"status": "lost"})
    anonymous = await client.get(base)
    as_app = await client.get(base, headers=auth(app))

    assert [unknown.status_code, unknown_live.status_code] == [404, 404]
    assert bad_cursor.status_code == 400
    assert "cursor" in bad_cursor.json()["error"]["message"]
    assert bad_status.status_code == 400
    assert "status" in bad_status.json()["error"]["message"]
    assert [anonymous.status_code, as_app.status_code] == [401, 401]
