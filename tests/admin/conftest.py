"""Operators of both roles, for the administration API."""

from __future__ import annotations

import pytest

from exoplane.config import Settings
from tests.voicebot.factories import Operator, create_operator


@pytest.fixture
async def super_admin(settings: Settings) -> Operator:
    return await create_operator(settings, "root@example.com", "super_admin")


@pytest.fixture
async def admin(settings: Settings) -> Operator:
    return await create_operator(settings, "ops@example.com", "admin")
