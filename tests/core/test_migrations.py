"""Schema migrations: they build what the models describe, and each one can be undone."""

from __future__ import annotations

from typing import Any

import httpx
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, text

from exoplane.config import Settings
from exoplane.db import alembic_config, create_engine
from exoplane.models import Call
from exoplane.models.base import Base
from tests.factories import app_with_token


async def _run(database_url: str, step: Any) -> Any:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(step)
    finally:
        await engine.dispose()


def _migrate(target: str, *, down: bool = False) -> Any:
    def step(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, target)

    return step


async def test_the_migrations_build_the_schema_the_models_describe(database_url: str) -> None:
    def differences(connection: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    assert await _run(database_url, differences) == []


async def test_a_call_being_placed_survives_undoing_and_redoing_migration_0004(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await client.aclose()

    def add_call_without_sid(connection: Connection) -> None:
        row = {
            "id": "c-1",
            "app_id": app.id,
            "call_sid": None,
            "direction": "outbound",
            "from_number": "sip:agent",
            "to_number": "+919123456789",
            "status": "queued",
        }
        connection.execute(insert(Call), row)

    def call_sids(connection: Connection) -> list[Any]:
        return list(connection.execute(text("SELECT call_sid FROM calls")).scalars())

    await _run(settings.database_url, add_call_without_sid)
    await _run(settings.database_url, _migrate("0003", down=True))
    after_downgrade = await _run(settings.database_url, call_sids)
    await _run(settings.database_url, _migrate("head"))

    assert after_downgrade == ["unknown:c-1"]
    assert await _run(settings.database_url, call_sids) == ["unknown:c-1"]
