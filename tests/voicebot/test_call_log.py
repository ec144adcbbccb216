"""``/api/v1/calls``: the platform's test calls and bot streams, each with its timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from exoplane.config import Settings
from exoplane.integrations.calls import repository
from exoplane.integrations.calls.service import TimelineEntry, timeline_entry
from tests.factories import database_session
from tests.voicebot.factories import Operator

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def a_bot_stream(settings: Settings, call_sid: str, at: datetime, *, code: int) -> None:
    """A stream's steps as the media core writes them once the stream has closed."""
    steps = [
        TimelineEntry(at, "stream_handshake", {"bot_id": "echo", "sample_rate": 8000}),
        TimelineEntry(
            at,
            "stream_start",
            {"bot_id": "echo", "from": "+919876543210", "to": "+918047491899"},
        ),
        TimelineEntry(at + timedelta(seconds=1), "first_outbound_media", {"after_start_ms": 1000}),
        TimelineEntry(at + timedelta(seconds=30), "stream_closed", {"code": code}),
    ]
    async with database_session(settings) as session:
        rows = [timeline_entry(None, call_sid, s.kind, s.detail, s.at) for s in steps]
        await repository.add_call_events(session, rows)


async def test_a_bot_stream_is_listed_with_its_bot_outcome_and_duration(
    client: httpx.AsyncClient, settings: Settings, admin: Operator
) -> None:
    await a_bot_stream(settings, "s-1", T0, code=1000)

    response = await client.get("/api/v1/calls", headers=admin.headers)

    assert response.status_code == 200, response.text
    [call] = response.json()["calls"]
    assert call["call_sid"] == "s-1"
    assert (call["from"], call["to"], call["direction"]) == (
        "+919876543210",
        "+918047491899",
        "inbound",
    )
    assert (call["agent"], call["status"], call["outcome"], call["duration"]) == (
        "echo",
        "completed",
        "answered",
        30,
    )
    detail = await client.get("/api/v1/calls/s-1", headers=admin.headers)
    assert [entry["kind"] for entry in detail.json()["timeline"]] == [
        "stream_handshake",
        "stream_start",
        "first_outbound_media",
        "stream_closed",
    ]


async def test_the_list_pages_by_cursor_and_filters_by_time(
    client: httpx.AsyncClient, settings: Settings, admin: Operator
) -> None:
    for n in range(3):
        await a_bot_stream(settings, f"s-{n}", T0 + timedelta(hours=n), code=1011)

    first = (await client.get("/api/v1/calls?limit=2", headers=admin.headers)).json()
    rest = await client.get(
        "/api/v1/calls", headers=admin.headers, params={"cursor": first["next_cursor"]}
    )
    late = await client.get(
        "/api/v1/calls",
        headers=admin.headers,
        params={"since": (T0 + timedelta(hours=1)).isoformat()},
    )

    assert [c["call_sid"] for c in first["calls"]] == ["s-2", "s-1"]
    assert first["has_more"] is True
    assert [c["call_sid"] for c in rest.json()["calls"]] == ["s-0"]
    assert rest.json()["next_cursor"] is None
    assert [c["call_sid"] for c in late.json()["calls"]] == ["s-2", "s-1"]
    assert {c["outcome"] for c in first["calls"]} == {"failed"}


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("since", "soon"),
        ("until", "2026-02-30"),
        ("since", "0001-01-01T00:00:00+01:00"),
        ("limit", "0"),
        ("cursor", "-1"),
    ],
)
async def test_a_bad_filter_value_is_400_naming_the_parameter(
    client: httpx.AsyncClient, admin: Operator, parameter: str, value: str
) -> None:
    response = await client.get("/api/v1/calls", headers=admin.headers, params={parameter: value})

    assert response.status_code == 400, response.text
    assert parameter in response.text


async def test_an_unknown_call_is_404_and_the_log_needs_an_operator(
    client: httpx.AsyncClient, admin: Operator
) -> None:
    unknown = await client.get("/api/v1/calls/nope", headers=admin.headers)
    anonymous = await client.get("/api/v1/calls")

    assert unknown.status_code == 404
    assert anonymous.status_code == 401


async def a_test_call(settings: Settings, call_sid: str, at: datetime, to: str) -> None:
    """A test call Exotel accepted, whose stream has not started."""
    detail: dict[str, Any] = {"did_id": "d-1", "from": "+918047491899", "to": to}
    detail |= {"mode": "flow", "bot_id": None, "status": "queued"}
    async with database_session(settings) as session:
        row = timeline_entry(None, call_sid, "test_call_placed", detail, at)
        await repository.add_call_events(session, [row])


async def listed(client: httpx.AsyncClient, admin: Operator, **params: str) -> list[str]:
    response = await client.get("/api/v1/calls", headers=admin.headers, params=params)
    assert response.status_code == 200, response.text
    return [call["call_sid"] for call in response.json()["calls"]]


async def test_the_list_filters_by_status_direction_and_number(
    client: httpx.AsyncClient, settings: Settings, admin: Operator
) -> None:
    await a_bot_stream(settings, "s-ok", T0, code=1000)
    await a_bot_stream(settings, "s-broken", T0 + timedelta(minutes=1), code=1011)
    await a_test_call(settings, "t-ringing", T0 + timedelta(minutes=2), to="+919812345678")
    await a_test_call(settings, "t-other", T0 + timedelta(minutes=3), to="+919800000001")

    assert await listed(client, admin, status="completed") == ["s-ok"]
    assert await listed(client, admin, status="failed") == ["s-broken"]
    assert await listed(client, admin, status="queued") == ["t-other", "t-ringing"]
    assert await listed(client, admin, status="in-progress") == []
    assert await listed(client, admin, direction="outbound") == ["t-other", "t-ringing"]
    assert await listed(client, admin, direction="inbound") == ["s-broken", "s-ok"]
    # Numbers are normalised like everywhere: national or E.164 find the same calls.
    assert await listed(client, admin, number="09812345678") == ["t-ringing"]
    assert await listed(client, admin, number="+919876543210") == ["s-broken", "s-ok"]
    assert await listed(client, admin, direction="inbound", status="completed") == ["s-ok"]
    both = await listed(client, admin, number="+919876543210", limit="1")
    assert both == ["s-broken"]
    later = await listed(
        client, admin, number="+919876543210", until=(T0 + timedelta(seconds=30)).isoformat()
    )
    assert later == ["s-ok"]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("status", "answered"), ("direction", "sideways"), ("number", "9" * 101)],
)
async def test_a_bad_filter_is_400_naming_it(
    client: httpx.AsyncClient, admin: Operator, parameter: str, value: str
) -> None:
    response = await client.get("/api/v1/calls", headers=admin.headers, params={parameter: value})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == parameter


async def test_a_last_event_id_too_long_is_400_naming_the_header(
    client: httpx.AsyncClient, settings: Settings, admin: Operator
) -> None:
    await a_bot_stream(settings, "s-1", T0, code=1000)
    headers = {**admin.headers, "Last-Event-ID": "1" * 101}

    response = await client.get("/api/v1/calls/s-1/events", headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "Last-Event-ID"
