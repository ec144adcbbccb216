"""What the Chromium journeys run against: the Exotel sandbox, exoplane serving on 127.0.0.1
beside it, a super_admin, a webhook receiver and a browser.

A journey module imports the fixtures it uses, and may say how they are set up:

- ``SANDBOX_TIMING``: the sandbox's timing (by default its own, compressed time);
- ``EXOPLANE_SETTINGS``: settings for exoplane (a shorter retry schedule, say);
- ``VIEWPORT``: the browser's window size (by default Playwright's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.browser import Browser, chromium
from tests.e2e.conftest import ACCOUNT_SID, EXOTEL_KEY, EXOTEL_TOKEN, Exoplane, running_exoplane
from tests.e2e.servers import Sandbox, running_sandbox
from tests.voicebot.factories import Operator, create_operator
from tests.webhooks.receiver import Receiver, running_receiver


def _declared(request: pytest.FixtureRequest, name: str) -> Any:
    return getattr(request.module, name, None)


@pytest.fixture
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    timing = _declared(request, "SANDBOX_TIMING") or {}
    async with running_sandbox(ACCOUNT_SID, EXOTEL_KEY, EXOTEL_TOKEN, **timing) as running:
        yield running


@pytest.fixture
async def exoplane(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, sandbox: Sandbox
) -> AsyncIterator[Exoplane]:
    settings = _declared(request, "EXOPLANE_SETTINGS") or {}
    async with running_exoplane(tmp_path / "home", database_url, sandbox, **settings) as running:
        yield running


@pytest.fixture
async def super_admin(exoplane: Exoplane) -> Operator:
    return await create_operator(exoplane.settings, "root@example.com", "super_admin")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


@pytest.fixture
async def browser(
    request: pytest.FixtureRequest, exoplane: Exoplane, tmp_path: Path
) -> AsyncIterator[Browser]:
    async with chromium(exoplane.url, tmp_path) as running:
        if (viewport := _declared(request, "VIEWPORT")) is not None:
            await running.page.set_viewport_size(viewport)
        yield running
