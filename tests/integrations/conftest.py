"""exoplane on a real port with the Exotel sandbox behind it, for the tests that place calls.

The sandbox holds the account of the factories' app (``APP_BODY``), with the Exotel key and
token that ``register_app(..., ExotelApiKey=EXOTEL_API_KEY, ExotelApiToken=EXOTEL_API_TOKEN)``
stores; only the tests that ask for ``exotel`` or ``exoplane`` start them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Exoplane, running_exoplane
from tests.e2e.servers import Sandbox, running_sandbox
from tests.factories import APP_BODY

EXOTEL_API_KEY = "app-exotel-key-51d0c7"
EXOTEL_API_TOKEN = "app-exotel-token-e2a94b"


@pytest.fixture
async def exotel() -> AsyncIterator[Sandbox]:
    """The sandbox, holding the account the app's Exotel credentials belong to."""
    account_sid = str(APP_BODY["ExotelAccountSid"])
    async with running_sandbox(account_sid, EXOTEL_API_KEY, EXOTEL_API_TOKEN) as sandbox:
        yield sandbox


@pytest.fixture
async def exoplane(tmp_path: Path, database_url: str, exotel: Sandbox) -> AsyncIterator[Exoplane]:
    async with running_exoplane(tmp_path / "home", database_url, exotel) as running:
        yield running
