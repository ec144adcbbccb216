"""Hooks that arrive together are written together: each still gets its own outcome."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import delete, select

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory, unit_of_work
from exoplane.integrations.calls.schemas import CallParameters
from exoplane.integrations.calls.service import HookReport
from exoplane.integrations.calls.writer import HookWriter
from exoplane.integrations.errors import AppNotFound
from exoplane.models import AppSettings, Call, WebhookEvent
from exoplane.models.base import utcnow
from exoplane.security import Vault, load_secret_key
from exoplane.webhooks.service import NoLocalDelivery
from tests.webhooks.conftest import app_path, app_sending_to, auth, count_rows, hook_url
from tests.webhooks.receiver import Receiver


def call(sid: str) -> dict[str, str]:
    return {"CallSid": sid, "CallFrom": "09876543210", "CallTo": "08047491899"}


async def test_sixty_popups_at_once_each_record_their_call_and_raise_their_event(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    popup = await hook_url(client, app, "popup")

    responses = await asyncio.gather(
        *(client.get(popup + "&" + urlencode(call(f"batch_{n:02d}"))) for n in range(60))
    )
    received = await receiver.wait_for(60)

    assert [r.status_code for r in responses] == [200] * 60
    sids = sorted(json.loads(r.body)["call_sid"] for r in received)
    assert sids == [f"batch_{n:02d}" for n in range(60)]
    assert await count_rows(settings, Call) == 60
    assert await count_rows(settings, WebhookEvent) == 60


async def test_a_call_reported_ringing_and_ended_at_once_ends_completed_with_both_events(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    popup = await hook_url(client, app, "popup") + "&" + urlencode(call("both"))
    ended = (
        await hook_url(client, app, "incomingcallhungup")
        + "&"
        + urlencode({**call("both"), "DialCallStatus": "completed", "DialCallDuration": "42"})
    )

    responses = await asyncio.gather(client.get(popup), client.get(ended))
    received = await receiver.wait_for(2)

    assert [r.status_code for r in responses] == [200, 200]
    assert sorted(r.path for r in received) == ["/callback", "/popup"]
    listed = await client.get(app_path(app, "/webhooks/deliveries"), headers=auth(app))
    assert len(listed.json()["data"]["deliveries"]) == 2
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            status, duration = (
                await connection.execute(
                    select(Call.status, Call.duration).where(Call.call_sid == "both")
                )
            ).one()
    finally:
        await engine.dispose()
    assert (status, duration) == ("completed", 42)


class WakeCounter(NoLocalDelivery):
    """No worker of its own: counts the calls telling delivery that work was queued."""

    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


async def test_a_report_that_cannot_be_written_fails_alone(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    engine = create_engine(settings.database_url)
    delivery = WakeCounter()
    vault = Vault(load_secret_key(settings))
    writer = HookWriter(create_session_factory(engine), vault, delivery)
    writer.start()

    def report(app_id: str, sid: str) -> HookReport:
        params = CallParameters.read(call(sid))
        return HookReport(app_id, "08047491899", "popup", params, utcnow())

    try:
        good, bad = await asyncio.gather(
            writer.write(report(app.id, "good")),
            writer.write(report("app_that_does_not_exist", "bad")),
            return_exceptions=True,
        )
        async with unit_of_work(create_session_factory(engine)) as session:
            stored = set((await session.scalars(select(Call.call_sid))).all())
    finally:
        await writer.stop()
        await engine.dispose()

    assert good is None
    assert isinstance(bad, AppNotFound)
    assert stored == {"good"}
    assert delivery.wakes  # the good report's event was queued, and delivery told so
    received = await receiver.wait_for(1)
    assert json.loads(received[0].body)["call_sid"] == "good"


async def test_a_writer_that_is_not_running_refuses_reports(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    vault = Vault(load_secret_key(settings))
    writer = HookWriter(create_session_factory(engine), vault, NoLocalDelivery())
    report = HookReport("app", "08047491899", "popup", CallParameters.read(call("x")), utcnow())
    try:
        with pytest.raises(RuntimeError, match="not running"):
            await writer.write(report)
    finally:
        await engine.dispose()


async def test_a_hook_for_an_app_without_settings_makes_them_and_records_the_call(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    popup = await hook_url(client, app, "popup")
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as connection:  # as for an app made before settings existed
            await connection.execute(delete(AppSettings).where(AppSettings.app_id == app.id))
    finally:
        await engine.dispose()

    response = await client.get(popup + "&" + urlencode(call("no_settings")))
    read_back = await client.get(app_path(app, "/settings"), headers=auth(app))

    assert response.status_code == 200
    assert read_back.status_code == 200, read_back.text
    assert read_back.json()["data"]["settings"]["popup_url"] is None
    assert await count_rows(settings, Call) == 1
    assert await count_rows(settings, WebhookEvent) == 1


async def test_a_hook_for_a_deleted_app_is_404_and_records_nothing(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    popup = await hook_url(client, app, "popup")
    deleted = await client.delete("/v2/integrations/app", headers=auth(app))
    assert deleted.status_code == 200

    response = await client.get(popup + "&" + urlencode(call("after_delete")))

    assert response.status_code == 404
    assert await count_rows(settings, Call) == 0
