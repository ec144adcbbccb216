"""``follow_call``: a call's timeline entries as they are recorded, the generator the live
endpoints and the console share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory
from exoplane.errors import BadRequest, NotFound
from exoplane.integrations.calls import service
from exoplane.integrations.calls.schemas import entry_view
from exoplane.integrations.calls.service import LiveEntry, follow_call
from tests.factories import RegisteredApp
from tests.integrations.calls.test_call_log import answered_call, call_params
from tests.waiting import WAIT_SECONDS, polled
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
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    try:
        yield create_session_factory(engine)
    finally:
        await engine.dispose()


async def followed(
    sessions: async_sessionmaker[AsyncSession],
    app_id: str,
    call_sid: str,
    **options: Any,
) -> list[LiveEntry]:
    """Every entry until the iteration ends by itself (within the bound)."""
    entries = await follow_call(sessions, app_id, call_sid, poll_seconds=0.02, **options)
    async with asyncio.timeout(WAIT_SECONDS):
        return [entry async for entry in entries]


async def settled_timeline(
    client: httpx.AsyncClient, app: RegisteredApp, call_sid: str, outcomes: int
) -> list[dict[str, Any]]:
    async def timeline() -> list[dict[str, Any]]:
        response = await client.get(app_path(app, f"/calls/{call_sid}"), headers=auth(app))
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["data"]["timeline"]
        return entries

    return await polled(
        timeline,
        lambda entries: [e["kind"] for e in entries].count("webhook_outcome") == outcomes,
        what=f"{outcomes} webhook outcomes in the timeline",
        every=0.05,
    )


async def test_a_call_that_has_not_ended_is_followed_no_longer_than_the_maximum(
    client: httpx.AsyncClient,
    settings: Settings,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await call_hook(client, app, "popup", call_params("c-ringing"))
    await settled_timeline(client, app, "c-ringing", outcomes=1)
    started = asyncio.get_running_loop().time()

    # Longer than the settling time on PostgreSQL, so the entries so far are given.
    entries = await followed(sessions, app.id, "c-ringing", max_seconds=2.0)

    assert asyncio.get_running_loop().time() - started < WAIT_SECONDS
    assert [live.entry.kind for live in entries] == [
        "hook_received",
        "webhook_queued",
        "webhook_attempt",
        "webhook_outcome",
    ]


async def test_resuming_after_any_entry_gives_exactly_the_entries_after_it(
    client: httpx.AsyncClient,
    settings: Settings,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "FOLLOW_LINGER_SECONDS", 0.05)
    app = await app_sending_to(client, settings, receiver)
    receiver.script = [500, 503]  # the first webhook fails twice, then succeeds
    await answered_call(client, app, "c-done")
    timeline = await settled_timeline(client, app, "c-done", outcomes=2)

    everything = await followed(sessions, app.id, "c-done")

    assert as_set(everything) == sorted(repr(entry) for entry in timeline)
    assert [live.entry.kind for live in everything].count("webhook_attempt") == 4
    for n, live in enumerate(everything):
        rest = await followed(sessions, app.id, "c-done", last_event_id=str(live.cursor))
        # The same entries; how kinds interleave depends on what each reading found.
        assert as_set(rest) == as_set(everything[n + 1 :])


def as_set(entries: list[LiveEntry]) -> list[str]:
    return sorted(repr(entry_view(live.entry)) for live in entries)


async def test_an_unknown_call_or_a_foreign_cursor_is_refused_before_any_entry(
    client: httpx.AsyncClient,
    settings: Settings,
    receiver: Receiver,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await call_hook(client, app, "popup", call_params("c-known"))

    with pytest.raises(NotFound):
        await follow_call(sessions, app.id, "c-unknown")
    with pytest.raises(NotFound):
        await follow_call(sessions, None, "c-known")  # an app's call is no platform call
    for cursor in ("", "1.2.3", "1.2.3.x", "-1.0.0.0", "1.2.3.4.5", "9" * 19 + ".0.0.0"):
        with pytest.raises(BadRequest) as refused:
            await follow_call(sessions, app.id, "c-known", last_event_id=cursor)
        assert refused.value.field == "Last-Event-ID"
