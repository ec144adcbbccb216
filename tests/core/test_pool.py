"""PostgreSQL's pool: a connection that died while idle is replaced, not handed out."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from exoplane.db import create_engine
from tests.conftest import BACKEND


async def _backend_pid(url: str, *, idle_ping_seconds: float) -> tuple[int, int]:
    """The server process behind the pooled connection before and after it is killed."""
    engine = create_engine(url, idle_ping_seconds=idle_ping_seconds)
    admin = create_engine(url)
    try:
        async with engine.connect() as connection:
            before = int(await connection.scalar(text("SELECT pg_backend_pid()")) or 0)
        async with admin.connect() as connection:  # as a restart or a proxy timeout would
            await connection.execute(text(f"SELECT pg_terminate_backend({before})"))
        async with engine.connect() as connection:
            after = int(await connection.scalar(text("SELECT pg_backend_pid()")) or 0)
        return before, after
    finally:
        await engine.dispose()
        await admin.dispose()


async def test_a_connection_killed_while_idle_is_replaced_before_use(database_url: str) -> None:
    if BACKEND != "postgres":
        pytest.skip("SQLite keeps no server connections")

    before, after = await _backend_pid(database_url, idle_ping_seconds=0.0)

    assert after not in (0, before)


async def test_a_connection_in_constant_use_is_not_checked(database_url: str) -> None:
    if BACKEND != "postgres":
        pytest.skip("SQLite keeps no server connections")

    # Not idle long enough to be checked, the dead connection is handed out and fails.
    with pytest.raises(DBAPIError):
        await _backend_pid(database_url, idle_ping_seconds=3600.0)
