"""Fixtures shared by the sandbox's tests."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from exoplane.sandbox.app import SandboxSettings, create_sandbox_app
from tests.conftest import (
    BACKEND,
    POSTGRES_URL,
    REDIS_URL,
    SECRET_KEY,
    ServerProcess,
    _admin,
    _with_database,
)


@pytest.fixture(scope="module")
def media_core(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """``exoplane serve`` with default settings, shared by this module's tests."""
    env = {
        "EXOPLANE_SECRET_KEY": SECRET_KEY,
        "EXOPLANE_LOG_LEVEL": "info",
        "EXOPLANE_REDIS_KEY_PREFIX": f"exoplane-test-{uuid.uuid4().hex[:12]}",
    }
    database = None
    if BACKEND == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path_factory.mktemp("agentstream-db") / "exoplane.db"
        shutil.copyfile(template, path)
        env["EXOPLANE_DATABASE_URL"] = f"sqlite+aiosqlite:///{path}"
    else:
        template_name: str = request.getfixturevalue("postgres_template")
        database = f"exoplane_agentstream_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(f'CREATE DATABASE "{database}" TEMPLATE "{template_name}"'))
        env["EXOPLANE_DATABASE_URL"] = _with_database(POSTGRES_URL, database)
        env["EXOPLANE_REDIS_URL"] = REDIS_URL
    process = ServerProcess(tmp_path_factory.mktemp("agentstream-core"), env)
    yield process
    process.stop()
    if database is not None:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def core_url(core: ServerProcess, path: str) -> str:
    return "ws://" + core.base_url.removeprefix("http://") + path


@asynccontextmanager
async def signed_in(
    settings: SandboxSettings, sid: str, key: str, token: str, *flows: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    """The sandbox, running over ASGI, with the account ``sid`` and ``flows`` in it; a client
    that authenticates as that account."""
    async with LifespanManager(create_sandbox_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sandbox", auth=(key, token)
        ) as http:
            account = {"sid": sid, "api_key": key, "api_token": token}
            assert (await http.post("/_sandbox/accounts", json=account)).status_code == 201
            for flow in flows:
                assert (await http.post("/_sandbox/flows", json=flow)).status_code == 201
            yield http
