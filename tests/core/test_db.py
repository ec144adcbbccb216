"""The engine: statement parameters stay out of error messages; SQLite files stay private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from exoplane.db import create_engine, upgrade_schema
from exoplane.models.base import utcnow
from exoplane.models.customer import Customer
from tests.conftest import BACKEND

DISTINCTIVE = "parameter-value-7f3c9a"


async def test_a_database_error_does_not_show_the_statement_parameters(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    row = {
        "id": "00000000-0000-4000-8000-000000000001",
        "secret_hash": "0" * 64,
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(Customer), {**row, "name": "first"})
        with pytest.raises(IntegrityError) as refused:
            async with engine.begin() as connection:
                # The same id again: the error is about the key, not the name.
                await connection.execute(insert(Customer), {**row, "name": DISTINCTIVE})
    finally:
        await engine.dispose()

    assert "INSERT INTO customers" in str(refused.value)
    assert DISTINCTIVE not in str(refused.value)


async def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "exoplane.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade_schema(engine)
        files = [path, path.with_name("exoplane.db-wal"), path.with_name("exoplane.db-shm")]
        modes = [stat.S_IMODE(file.stat().st_mode) for file in files if file.exists()]
    finally:
        await engine.dispose()

    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(modes) == 3
    assert set(modes) == {0o600}


async def test_a_statement_past_its_timeout_is_cancelled_but_a_migration_engine_waits(
    database_url: str,
) -> None:
    if BACKEND != "postgres":
        pytest.skip("statement timeouts are PostgreSQL's; SQLite bounds only its lock wait")
    bounded = create_engine(database_url, statement_timeout_seconds=0.2)
    unbounded = create_engine(database_url, statement_timeout_seconds=None)
    try:
        with pytest.raises(TimeoutError):
            async with bounded.connect() as connection:
                await connection.execute(text("SELECT pg_sleep(1)"))
        async with unbounded.connect() as connection:
            await connection.execute(text("SELECT pg_sleep(1)"))
    finally:
        await bounded.dispose()
        await unbounded.dispose()
