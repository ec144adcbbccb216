"""Shared fixtures: an isolated database per test, the real app over ASGI, a real server process.

The backend is chosen by ``EXOPLANE_TEST_BACKEND``: ``sqlite`` (default) or ``postgres``, which
needs ``EXOPLANE_TEST_POSTGRES_URL`` and ``EXOPLANE_TEST_REDIS_URL`` and refuses to run without
them, rather than skipping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.db import create_engine, upgrade_schema

BACKEND = os.environ.get("EXOPLANE_TEST_BACKEND", "sqlite")
POSTGRES_URL = os.environ.get("EXOPLANE_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("EXOPLANE_TEST_REDIS_URL", "")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# PostgreSQL needs the key set, shared by every process of a test; SQLite generates its own.
SECRET_KEY = secrets.token_urlsafe(48)


def pytest_configure(config: pytest.Config) -> None:
    if BACKEND not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"EXOPLANE_TEST_BACKEND must be sqlite or postgres, not {BACKEND}")
    if BACKEND == "postgres":
        if not POSTGRES_URL or not REDIS_URL:
            raise pytest.UsageError(
                "EXOPLANE_TEST_BACKEND=postgres needs EXOPLANE_TEST_POSTGRES_URL and "
                "EXOPLANE_TEST_REDIS_URL"
            )
        problems = asyncio.run(_check_services())
        if problems:
            raise pytest.UsageError("test services unreachable: " + "; ".join(problems))


async def _check_services() -> list[str]:
    import asyncpg
    import redis.asyncio as redis

    problems = []
    try:
        connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
        await connection.close()
    except Exception as exc:
        problems.append(f"PostgreSQL at {POSTGRES_URL}: {exc}")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        problems.append(f"Redis at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    return problems


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


# --- databases ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "exoplane.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    name = f"exoplane_template_{os.getpid()}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'))
    asyncio.run(_migrate(_with_database(POSTGRES_URL, name)))
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()


async def _admin(*statements: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database for this test alone."""
    if BACKEND == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "exoplane.db"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template_name: str = request.getfixturevalue("postgres_template")
    name = f"exoplane_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    yield _with_database(POSTGRES_URL, name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url() -> str:
    """Redis for tests that need one: skipped locally without it, a failure in CI."""
    if not REDIS_URL:
        if IN_CI:
            pytest.fail("EXOPLANE_TEST_REDIS_URL is not set; CI must provide Redis")
        pytest.skip("EXOPLANE_TEST_REDIS_URL is not set")
    return REDIS_URL


# --- the app ------------------------------------------------------------------------------


def make_settings(home: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "redis_url": REDIS_URL if BACKEND == "postgres" else None,
        "secret_key": SECRET_KEY if BACKEND == "postgres" else None,
        "redis_key_prefix": f"exoplane-test-{uuid.uuid4().hex[:12]}",
        "log_level": "debug",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "home", database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[ASGIApp]:
    """The app with its lifespan running; its lifespan state reaches every request."""
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app


@pytest.fixture
async def client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


# --- a real server process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``exoplane serve`` in a child process, with its output kept for inspection."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / f"server-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self.env = {**os.environ, "EXOPLANE_HOME": str(home), **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exoplane", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.output()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not come up:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture
def server_env(database_url: str) -> dict[str, str]:
    env = {
        "EXOPLANE_DATABASE_URL": database_url,
        "EXOPLANE_LOG_LEVEL": "debug",
        "EXOPLANE_REDIS_KEY_PREFIX": f"exoplane-test-{uuid.uuid4().hex[:12]}",
    }
    if BACKEND == "postgres":
        env["EXOPLANE_REDIS_URL"] = REDIS_URL
        env["EXOPLANE_SECRET_KEY"] = SECRET_KEY
    return env


@pytest.fixture
def server(tmp_path: Path, server_env: dict[str, str]) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "server-home", server_env)
    yield process
    process.stop()
