"""The call log: the app's calls, filtered and paged, and each call with its timeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exoplane.config import Settings
from tests.factories import RegisteredApp, app_with_token
from tests.waiting import polled
from tests.webhooks.conftest import (
    app_path,
    app_sending_to,
    auth,
    call_hook,
    serving,
    webhook_settings,
)
from tests.webhooks.receiver import Receiver, running_receiver

EXOPHONE = "08047491899"


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


def call_params(call_sid: str, caller: str = "09876543210") -> dict[str, str]:
    return {"CallSid": call_sid, "CallFrom": caller, "CallTo": EXOPHONE}


async def answered_call(client: httpx.AsyncClient, app: RegisteredApp, call_sid: str) -> None:
    await call_hook(client, app, "popup", call_params(call_sid))
    done = {**call_params(call_sid), "DialCallStatus": "completed", "DialCallDuration": "42"}
    await call_hook(client, app, "incomingcallhungup", done)


async def list_calls(
    client: httpx.AsyncClient, app: RegisteredApp, **params: Any
) -> httpx.Response:
    return await client.get(app_path(app, "/calls"), headers=auth(app), params=params)


async def call_sids(client: httpx.AsyncClient, app: RegisteredApp, **params: Any) -> list[str]:
    response = await list_calls(client, app, **params)
    assert response.status_code == 200, response.text
    return [call["call_sid"] for call in response.json()["data"]["calls"]]


async def test_a_webhook_that_fails_then_succeeds_shows_each_attempt_in_the_timeline(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    receiver.script = [500, 503, 200]

    await call_hook(client, app, "popup", call_params("c-retried"))

    async def timeline() -> list[dict[str, Any]]:
        response = await client.get(app_path(app, "/calls/c-retried"), headers=auth(app))
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["data"]["timeline"]
        return entries

    entries = await polled(
        timeline,
        lambda entries: entries[-1]["kind"] == "webhook_outcome",
        what="the webhook's outcome in the timeline",
        every=0.05,
    )
    assert [entry["kind"] for entry in entries] == [
        "hook_received",
        "webhook_queued",
        "webhook_attempt",
        "webhook_attempt",
        "webhook_attempt",
        "webhook_outcome",
    ]
    assert entries[0]["detail"] == {"type": "popup"}
    attempts = [entry["detail"] for entry in entries if entry["kind"] == "webhook_attempt"]
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert all(a["event"] == "incoming_call" and a["latency_ms"] >= 0 for a in attempts)
    assert entries[-1]["detail"]["status"] == "succeeded"
    assert entries[-1]["detail"]["attempts"] == 3
    times = [entry["at"] for entry in entries]
    assert times == sorted(times)


async def test_a_call_is_listed_with_its_outcome_agent_and_duration(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)

    await answered_call(client, app, "c-answered")

    response = await list_calls(client, app)
    [call] = response.json()["data"]["calls"]
    assert call["call_sid"] == "c-answered"
    assert (call["from"], call["to"], call["direction"]) == ("+919876543210", EXOPHONE, "inbound")
    assert (call["status"], call["outcome"], call["duration"]) == ("completed", "answered", 42)
    assert call["started_at"].endswith("Z")
    assert response.json()["data"]["has_more"] is False


async def test_the_list_filters_by_status_direction_number_and_time(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await answered_call(client, app, "c-1")
    await call_hook(client, app, "missedcall", call_params("c-2", caller="09876500002"))
    [started] = [
        c["started_at"]
        for c in (await list_calls(client, app, status="missed")).json()["data"]["calls"]
    ]
    await call_hook(client, app, "popup", call_params("c-3"))

    assert await call_sids(client, app, status="completed") == ["c-1"]
    assert await call_sids(client, app, status="missed") == ["c-2"]
    assert await call_sids(client, app, status="ringing") == ["c-3"]
    assert await call_sids(client, app, direction="inbound") == ["c-3", "c-2", "c-1"]
    assert await call_sids(client, app, direction="outbound") == []
    assert await call_sids(client, app, number="09876500002") == ["c-2"]
    assert await call_sids(client, app, number="+919876500002") == ["c-2"]
    assert await call_sids(client, app, since=started) == ["c-3", "c-2"]
    assert await call_sids(client, app, until=started) == ["c-1"]


async def test_the_list_pages_through_every_call_once_with_its_cursor(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    for n in range(5):
        await call_hook(client, app, "popup", call_params(f"c-{n}"))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        data = (await list_calls(client, app, **params)).json()["data"]
        pages += 1
        seen += [call["call_sid"] for call in data["calls"]]
        cursor = data["next_cursor"]
        assert data["has_more"] is (cursor is not None)
        if cursor is None:
            break

    assert pages == 3
    assert seen == ["c-4", "c-3", "c-2", "c-1", "c-0"]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("status", "exploded"),
        ("direction", "sideways"),
        ("since", "yesterday"),
        ("until", "2026-13-45"),
        ("since", "0001-01-01T00:00:00+01:00"),
        ("until", "9999-12-31T23:59:59-01:00"),
        ("limit", "0"),
        ("limit", "99999999999999999999999"),
        ("cursor", "not-a-cursor"),
        ("cursor", "999999999999999999.x"),
        ("number", "9" * 101),
    ],
)
async def test_a_bad_filter_value_is_400_naming_the_parameter(
    client: httpx.AsyncClient, settings: Settings, parameter: str, value: str
) -> None:
    app = await app_with_token(client, settings)

    response = await list_calls(client, app, **{parameter: value})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == parameter
    assert parameter in error["message"]


async def test_another_tenants_call_is_404(client: httpx.AsyncClient, settings: Settings) -> None:
    owner = await app_with_token(client, settings)
    other = await app_with_token(client, settings)
    await call_hook(client, owner, "popup", call_params("c-private"))

    mine = await client.get(app_path(owner, "/calls/c-private"), headers=auth(owner))
    theirs = await client.get(app_path(other, "/calls/c-private"), headers=auth(other))

    assert mine.status_code == 200
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "call_not_found"
    assert await call_sids(client, other) == []
