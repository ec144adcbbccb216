"""Fixtures shared by the sandbox's tests."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    BACKEND,
    POSTGRES_URL,
    REDIS_URL,
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
