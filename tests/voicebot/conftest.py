"""The voice-bot admin under test: operators of both roles, and an Exotel stand-in.

The app here allows private networks (so ``api_base_url`` can point at the stand-in on
127.0.0.1) and gives up on Exotel after half a second; ``strict_client`` is the production
default, which refuses private upstreams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from exoplane.app import create_app
from exoplane.config import Settings
from tests.conftest import make_settings
from tests.voicebot.exotel_standin import ExotelStandIn, running_exotel
from tests.voicebot.factories import Operator, create_operator

EXOTEL_TIMEOUT_SECONDS = 0.5


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path / "home",
        database_url,
        allow_private_networks=True,
        exotel_timeout_seconds=EXOTEL_TIMEOUT_SECONDS,
    )


@pytest.fixture
async def strict_client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The same database served with the defaults: no private or loopback upstreams."""
    strict = make_settings(tmp_path / "home", database_url)
    assert strict.allow_private_networks is False
    async with LifespanManager(create_app(strict)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def super_admin(settings: Settings) -> Operator:
    return await create_operator(settings, "root@example.com", "super_admin")


@pytest.fixture
async def admin(settings: Settings) -> Operator:
    return await create_operator(settings, "ops@example.com", "admin")


@pytest.fixture
async def exotel() -> AsyncIterator[ExotelStandIn]:
    async with running_exotel() as standin:
        yield standin
