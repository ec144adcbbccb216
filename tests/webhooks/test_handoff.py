"""A hook's webhooks go straight to the worker in the same process while it has free slots;
the rest are queued and claimed as usual."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import create_engine, create_session_factory
from exoplane.security import Vault, load_secret_key
from exoplane.webhooks import repository
from exoplane.webhooks.repository import Claimed
from exoplane.webhooks.worker import WebhookWorker
from tests.waiting import polled, until
from tests.webhooks.conftest import (
    app_path,
    app_sending_to,
    auth,
    hook_url,
    serving,
    webhook_settings,
)
from tests.webhooks.receiver import Receiver


@pytest.fixture
def claimed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the deliveries the worker claims from the queue."""
    ids: list[int] = []
    claim_due = repository.claim_due

    async def recording_claim_due(
        session: AsyncSession, now: datetime, lease_until: datetime, token: str, limit: int
    ) -> list[Claimed]:
        deliveries: list[Claimed] = await claim_due(session, now, lease_until, token, limit)
        ids.extend(delivery.id for delivery in deliveries)
        return deliveries

    monkeypatch.setattr(repository, "claim_due", recording_claim_due)
    return ids


def ringing(sid: str) -> str:
    return urlencode({"CallSid": sid, "CallFrom": "09876543210", "CallTo": "08047491899"})


async def deliveries(client: httpx.AsyncClient, app: Any) -> Sequence[dict[str, Any]]:
    response = await client.get(app_path(app, "/webhooks/deliveries"), headers=auth(app))
    assert response.status_code == 200, response.text
    listed: Sequence[dict[str, Any]] = response.json()["data"]["deliveries"]
    return listed


async def settled(client: httpx.AsyncClient, app: Any, count: int) -> Sequence[dict[str, Any]]:
    """The delivery log once ``count`` deliveries have succeeded (the log follows the POST)."""
    return await polled(
        lambda: deliveries(client, app),
        lambda listed: sum(d["status"] == "succeeded" for d in listed) >= count,
        what=f"{count} succeeded deliveries",
    )


async def test_a_popup_is_delivered_at_once_without_waiting_to_be_claimed(
    tmp_path: Path, database_url: str, receiver: Receiver, claimed: list[int]
) -> None:
    # Claims only every 10 s: a webhook arriving sooner was never claimed.
    settings = webhook_settings(tmp_path, database_url, webhook_poll_seconds=10)
    async with serving(settings) as client:
        app = await app_sending_to(client, settings, receiver)
        popup = await hook_url(client, app, "popup")

        response = await client.get(f"{popup}&{ringing('handed')}")
        received = await receiver.wait_for(1, timeout=8.0)  # well before the first claim
        listed = await settled(client, app, 1)

    assert response.status_code == 200
    assert received[0].json["call_sid"] == "handed"
    assert [(d["status"], d["attempts"]) for d in listed] == [("succeeded", 1)]
    assert claimed == []


async def test_deliveries_beyond_the_free_slots_are_claimed_and_each_sent_once(
    tmp_path: Path, database_url: str, receiver: Receiver, claimed: list[int]
) -> None:
    settings = webhook_settings(
        tmp_path, database_url, webhook_concurrency=1, webhook_poll_seconds=0.05
    )
    async with serving(settings) as client:
        app = await app_sending_to(client, settings, receiver)
        popup = await hook_url(client, app, "popup")

        responses = await asyncio.gather(
            *(client.get(f"{popup}&{ringing(f'busy_{n}')}") for n in range(6))
        )
        received = await receiver.wait_for(6)
        listed = await settled(client, app, 6)

    assert [r.status_code for r in responses] == [200] * 6
    sids = sorted(json.loads(r.body)["call_sid"] for r in received)
    assert sids == [f"busy_{n}" for n in range(6)]
    assert [d["attempts"] for d in listed] == [1] * 6
    # With one slot, the batch could not all be handed over: the rest were claimed.
    assert claimed
    assert len(set(claimed)) == len(claimed) < 6


async def test_slots_held_for_a_transaction_that_fails_are_given_back(
    tmp_path: Path, database_url: str
) -> None:
    settings = webhook_settings(tmp_path, database_url, webhook_concurrency=4)
    engine = create_engine(settings.database_url)
    worker = WebhookWorker(
        settings, create_session_factory(engine), Vault(load_secret_key(settings))
    )
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: worker.handoff() is not None, what="the worker starting")
        first = worker.handoff()
        assert first is not None
        second = worker.handoff()
        assert second is not None

        assert first.take(10) == 4
        assert second.take(1) == 0  # every slot is held
        first.cancel()  # the transaction failed
        assert second.take(10) == 4
        second.send()  # committed, but nothing was written into the slots
        assert worker.handoff() is not None
        assert worker.handoff().take(10) == 4  # type: ignore[union-attr]
    finally:
        worker.stop()
        await running
        await engine.dispose()
    assert worker.handoff() is None  # a stopped worker takes nothing
