"""Schema migrations: they build what the models describe, and each one can be undone."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, text

from exoplane.config import Settings
from exoplane.db import alembic_config, create_engine
from exoplane.integrations import repository as integrations_repository
from exoplane.models import App, Call, Customer, StatsHour
from exoplane.models.base import Base
from exoplane.security import Vault, hash_secret, load_secret_key
from tests.factories import app_with_token, create_user, database_session, get_token

TOKEN_URL = "/v2/integrations/token"


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


async def test_migration_0006_gives_existing_users_sip_safe_usernames_and_can_be_undone(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1)
    await create_user(client, app, 2, user_id="asha.verma@example.com")
    await client.aclose()
    digest = hashlib.sha256(b"asha.verma@example.com").hexdigest()[:12]

    def usernames(connection: Connection) -> dict[str, str]:
        rows = connection.execute(text("SELECT user_id, sip_username FROM users"))
        return {user_id: username for user_id, username in rows}

    await _run(settings.database_url, _migrate("0005", down=True))
    before = await _run(settings.database_url, usernames)
    await _run(settings.database_url, _migrate("head"))
    after = await _run(settings.database_url, usernames)

    assert before == {
        "agent_001": f"agent_001@{app.id}.exotel.com",
        "asha.verma@example.com": f"asha.verma%40example.com@{app.id}.exotel.com",
    }
    assert after == {
        "agent_001": "agent_001@exoteldemo.voip.exotel.com",
        "asha.verma@example.com": f"asha.verma_example.com~{digest}@exoteldemo.voip.exotel.com",
    }


async def test_migration_0006_keeps_a_sip_domain_set_by_hand(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await create_user(client, app, 1, user_id="crm:42")
    await client.aclose()
    await _run(settings.database_url, _migrate("0005", down=True))
    old = f"crm%3A42@{app.id}.sip.example.org"

    def set_old_username(connection: Connection) -> None:
        connection.execute(text("UPDATE users SET sip_username = :old"), {"old": old})

    def username(connection: Connection) -> str:
        return str(connection.execute(text("SELECT sip_username FROM users")).scalar_one())

    await _run(settings.database_url, set_old_username)
    await _run(settings.database_url, _migrate("head"))
    upgraded = await _run(settings.database_url, username)
    await _run(settings.database_url, _migrate("0005", down=True))
    downgraded = await _run(settings.database_url, username)

    digest = hashlib.sha256(b"crm:42").hexdigest()[:12]
    assert upgraded == f"crm_42~{digest}@exoteldemo.sip.example.org"
    assert downgraded == old


async def _stored_secrets(settings: Settings, model: Any, ident: str) -> tuple[str, str | None]:
    async with database_session(settings) as session:
        row = await session.get(model, ident)
        assert row is not None
        return row.secret_hash, row.previous_secret_hash


async def _store_as_an_earlier_version_did(
    settings: Settings, model: Any, ident: str, secret: str, previous: str | None = None
) -> None:
    """The unkeyed SHA-256 hex that customer and app secrets were stored as before."""
    async with database_session(settings) as session:
        row = await session.get(model, ident)
        assert row is not None
        row.secret_hash = hash_secret(secret)
        if previous is not None:
            row.previous_secret_hash = hash_secret(previous)
            row.previous_secret_expires_at = datetime.now(UTC) + timedelta(hours=1)


async def test_secrets_stored_unkeyed_still_work_and_are_stored_keyed_once_used(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await _store_as_an_earlier_version_did(settings, Customer, app.customer_id, "c-secret")
    await _store_as_an_earlier_version_did(settings, App, app.id, app.secret)
    vault = Vault(load_secret_key(settings))

    wrong = await client.post(TOKEN_URL, json={"Id": app.id, "Secret": "nope", "Entity": "app"})
    assert wrong.status_code == 401, wrong.text
    assert (await _stored_secrets(settings, App, app.id))[0] == hash_secret(app.secret)

    await get_token(client, "app", app.id, app.secret)
    await get_token(client, "customer", app.customer_id, "c-secret")

    assert await _stored_secrets(settings, App, app.id) == (vault.hash_secret(app.secret), None)
    stored_customer, _ = await _stored_secrets(settings, Customer, app.customer_id)
    assert stored_customer == vault.hash_secret("c-secret")
    # And the keyed form goes on working.
    await get_token(client, "app", app.id, app.secret)
    await get_token(client, "customer", app.customer_id, "c-secret")


async def test_a_previous_secret_stored_unkeyed_works_for_its_grace_and_is_stored_keyed(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    app = await app_with_token(client, settings)
    await _store_as_an_earlier_version_did(settings, App, app.id, "new", previous="old")
    vault = Vault(load_secret_key(settings))

    await get_token(client, "app", app.id, "old")

    current, previous = await _stored_secrets(settings, App, app.id)
    assert current == hash_secret("new")  # not presented yet, so still in the old form
    assert previous == vault.hash_secret("old")
    await get_token(client, "app", app.id, "new")
    await get_token(client, "app", app.id, "old")
    assert await _stored_secrets(settings, App, app.id) == (
        vault.hash_secret("new"),
        vault.hash_secret("old"),
    )


async def test_a_rotation_between_the_check_and_the_rehash_is_not_undone(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret is checked before the token's transaction; a rotation in between wins over
    storing the checked (unkeyed) hash again in the keyed form."""
    app = await app_with_token(client, settings)
    await _store_as_an_earlier_version_did(settings, App, app.id, app.secret)
    vault = Vault(load_secret_key(settings))
    read = integrations_repository.find_secret_holder

    async def read_then_rotate(reader: Any, entity: str, holder_id: str) -> Any:
        holder = await read(reader, entity, holder_id)
        async with database_session(settings) as session:
            row = await session.get(App, holder_id)
            assert row is not None
            row.secret_hash = vault.hash_secret("rotated")
        return holder

    monkeypatch.setattr(integrations_repository, "find_secret_holder", read_then_rotate)
    await get_token(client, "app", app.id, app.secret)

    assert (await _stored_secrets(settings, App, app.id))[0] == vault.hash_secret("rotated")


async def test_migration_0014_adds_the_stats_rollup_and_can_be_undone(database_url: str) -> None:
    def tables(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names())

    def add_hour(connection: Connection) -> None:
        row = {
            "hour": datetime(2026, 12, 1, 10, tzinfo=UTC),
            "series": "calls",
            "counts": '{"completed":3}',
            "computed_at": datetime(2026, 12, 1, 11, tzinfo=UTC),
        }
        connection.execute(insert(StatsHour), row)

    def hours(connection: Connection) -> list[Any]:
        return list(connection.execute(text("SELECT series, counts FROM stats_hours")))

    await _run(database_url, add_hour)
    assert await _run(database_url, hours) == [("calls", '{"completed":3}')]
    await _run(database_url, _migrate("0013", down=True))
    downgraded = await _run(database_url, tables)
    await _run(database_url, _migrate("head"))

    assert "stats_hours" not in downgraded
    assert "portal_links" in downgraded
    assert "stats_hours" in await _run(database_url, tables)
    assert await _run(database_url, hours) == []
