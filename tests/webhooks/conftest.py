"""An app with its delivery worker running, and a receiver to deliver to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.db import create_engine
from exoplane.models.base import Base
from tests.conftest import make_settings
from tests.factories import RegisteredApp, app_with_token
from tests.webhooks.receiver import Receiver, running_receiver


def webhook_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    """Settings for fast delivery tests: short timeouts and retries, receivers on loopback."""
    values: dict[str, Any] = {
        "allow_private_networks": True,
        "webhook_retry_schedule": [0.05] * 8,
        "webhook_timeout_seconds": 0.5,
        "webhook_poll_seconds": 0.05,
    }
    return make_settings(tmp_path / "home", database_url, **(values | overrides))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return webhook_settings(tmp_path, database_url)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its delivery worker running, and a client for it."""
    async with LifespanManager(create_app(settings, run_worker=True)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings) as http:
        yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


def auth(app: RegisteredApp) -> dict[str, str]:
    return {"Authorization": app.token}


def app_path(app: RegisteredApp, tail: str) -> str:
    return f"/v2/integrations/{app.customer_id}/apps/{app.id}{tail}"


async def app_sending_to(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, **extra: Any
) -> RegisteredApp:
    """An app whose every webhook URL points at the receiver, one path per event."""
    app = await app_with_token(client, settings)
    body = {
        "popup_url": receiver.url("/popup"),
        "missed_call_url": receiver.url("/missed"),
        "callback_url": receiver.url("/callback"),
        "recording_url": receiver.url("/recording"),
        **extra,
    }
    response = await client.put(app_path(app, "/settings"), headers=auth(app), json=body)
    assert response.status_code == 200, response.text
    return app


async def hook_url(client: httpx.AsyncClient, app: RegisteredApp, kind: str) -> str:
    """The Passthru URL exoplane gives for ``kind``, as a path the test client can call."""
    response = await client.get(app_path(app, "/flow-urls"), headers=auth(app))
    url = str(response.json()["data"]["passthru_urls"][kind])
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def call_hook(
    client: httpx.AsyncClient,
    app: RegisteredApp,
    kind: str,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """Call the hook as Exotel does: its own parameters appended to the configured URL."""
    url = await hook_url(client, app, kind)
    return await client.get(url + ("&" + urlencode(params) if params else ""))


async def signing_secret(client: httpx.AsyncClient, app: RegisteredApp) -> str:
    response = await client.get(app_path(app, "/webhooks/secret"), headers=auth(app))
    return str(response.json()["data"]["secret"])


CALL = {"CallSid": "call_123", "CallFrom": "09876543210", "CallTo": "08047491899"}


async def count_rows(settings: Settings, model: type[Base]) -> int:
    """Rows of ``model``'s table, read straight from the database."""
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        await engine.dispose()
