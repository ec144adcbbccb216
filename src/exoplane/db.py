"""Engine, sessions, the unit of work, and schema migrations."""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import Depends
from sqlalchemy import Connection, Dialect, Insert, Select, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from exoplane.config import Settings
from exoplane.security import make_private_directory
from exoplane.state import State

MIGRATIONS = Path(__file__).parent / "migrations"


# Set in a session's info by whoever writes webhook events, read after its commit.
OUTBOX_WRITTEN = "outbox_written"


# A pooled connection idle for longer than this is checked before it is used again.
IDLE_PING_SECONDS = 10.0


def _default(name: str) -> float:
    default: float = Settings.model_fields[name].default
    return default


CONNECT_TIMEOUT_SECONDS = _default("database_connect_timeout_seconds")
STATEMENT_TIMEOUT_SECONDS = _default("database_statement_timeout_seconds")
# How long a migration on SQLite waits for a running server's write to finish.
MIGRATION_LOCK_WAIT_SECONDS = 60.0


def create_engine(
    database_url: str,
    *,
    idle_ping_seconds: float = IDLE_PING_SECONDS,
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
    statement_timeout_seconds: float | None = STATEMENT_TIMEOUT_SECONDS,
) -> AsyncEngine:
    """The engine, its every wait bounded so that an outage fails in seconds.

    On PostgreSQL, opening a connection, waiting for a free one and each statement are
    bounded (a statement that runs out of time is cancelled); on SQLite, waiting for the
    write lock. Migrations pass ``statement_timeout_seconds=None``: a schema change on a
    large table may take longer than any request should, and is not cut off.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        # Twenty connections kept open: with overflow connections, nearly every request
        # above the pool size opened and closed one of its own. Statement parameters hold
        # credentials, hashes and phone numbers: an error's message never shows them.
        engine = create_async_engine(
            url,
            pool_size=20,
            max_overflow=0,
            pool_timeout=connect_timeout_seconds,
            hide_parameters=True,
            connect_args={
                "timeout": connect_timeout_seconds,
                "command_timeout": statement_timeout_seconds,
            },
        )
        _ping_when_idle(engine, idle_ping_seconds)
        return engine
    if url.database and url.database != ":memory:":
        _create_private_file(Path(url.database))
    # One connection per process: SQLite has a single writer anyway, and queueing on the
    # pool is fairer and faster than threads spinning on the database lock.
    engine = create_async_engine(
        url, pool_size=1, max_overflow=0, pool_timeout=60, hide_parameters=True
    )
    lock_wait = (
        MIGRATION_LOCK_WAIT_SECONDS
        if statement_timeout_seconds is None
        else (statement_timeout_seconds)
    )
    _configure_sqlite(engine, busy_timeout_ms=round(lock_wait * 1000))
    return engine


def _create_private_file(path: Path) -> None:
    """Create the SQLite file, readable by its owner only, unless it exists.

    SQLite gives the -wal and -shm files it creates the database file's permissions.
    """
    make_private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Check a pooled connection before use only when it has been idle a while.

    A connection in constant use is known to be alive; one that sat idle may have been
    closed by the server, a restart or a proxy meanwhile. Pinging on every checkout (the
    pool's ``pre_ping``) cost every read and transaction an extra round trip.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"idle connection failed its check: {exc}") from exc
        if not alive:
            raise DisconnectionError("idle connection failed its check")


_RETURNED_AT = "returned_at"


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so BEGIN IMMEDIATE can be used.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            f"busy_timeout={busy_timeout_ms}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Take the write lock up front: a deferred transaction that reads and then writes
        # fails at once (not after busy_timeout) when another process wrote in between.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


AnySelect = Select[*tuple[Any, ...]]


class Reader:
    """Reads outside any unit of work, for the hot path (token lookups, listings).

    On PostgreSQL a read is one autocommit round trip. On SQLite it runs inline on the event
    loop through the standard library's driver: a point lookup takes a few microseconds, far
    less than handing each statement to a driver thread, and in WAL mode a reader never waits
    for a writer. Rows come back as plain tuples, their values converted by the column types.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite_path = engine.url.database if engine.dialect.name == "sqlite" else None
        self._sqlite: sqlite3.Connection | None = None
        self._compiled: dict[AnySelect, _CompiledRead] = {}

    async def first(
        self, statement: AnySelect, params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def all(self, statement: AnySelect, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        if self._sqlite_path is not None:
            return self._read_inline(statement, params)
        async with self._engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            return [tuple(row) for row in await autocommit.execute(statement, params)]

    def _read_inline(
        self, statement: AnySelect, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = _CompiledRead.of(statement, self._engine.dialect)
            self._compiled[statement] = compiled
        if self._sqlite is None:
            self._sqlite = sqlite3.connect(self._sqlite_path or ":memory:", timeout=0.25)
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._sqlite.execute("PRAGMA query_only=ON")
        cursor = self._sqlite.execute(compiled.sql, compiled.arguments(params))
        try:
            return [compiled.convert(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None


@dataclass(frozen=True, slots=True)
class _CompiledRead:
    """A read statement compiled once for the SQLite driver, with its column converters."""

    sql: str
    names: tuple[str, ...]
    # Values of parameters fixed in the statement itself (``id == 1``).
    fixed: dict[str, Any]
    # (position, converter) of the columns whose driver values need converting.
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]

    @classmethod
    def of(cls, statement: AnySelect, dialect: Dialect) -> _CompiledRead:
        compiled = statement.compile(dialect=dialect)
        return cls(
            sql=str(compiled),
            names=tuple(compiled.positiontup or ()),
            fixed={
                name: bind.effective_value
                for name, bind in compiled.binds.items()
                if not bind.required
            },
            processors=tuple(
                (position, process)
                for position, column in enumerate(statement.selected_columns)
                if (process := column.type.dialect_impl(dialect).result_processor(dialect, None))
            ),
        )

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self.fixed[name] for name in self.names]

    def convert(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self.processors:
            return row
        values = list(row)
        for position, process in self.processors:
            value = values[position]
            if value is not None:
                values[position] = process(value)
        return tuple(values)


@functools.cache
def insert_or_ignore(dialect: str, table: Any, key: tuple[str, ...]) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` in ``dialect``, built once per table;
    execute it with the row's values as parameters.

    Its row count says whether it inserted, so "insert unless it exists" is one statement
    and holds under concurrency (a check followed by an insert does not: two transactions
    can both pass the check, and the second then fails on the key).
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=list(key))


async def insert_missing(
    connection: AsyncConnection, table: Any, key: tuple[str, ...], rows: Sequence[dict[str, Any]]
) -> set[Any]:
    """Insert each row unless one with its ``key`` exists (in the table, or earlier in
    ``rows``); the ``id`` of every row this inserted.

    Many rows go in one executemany with RETURNING; a single row goes without, its row
    count saying whether it was inserted.
    """
    statement = insert_or_ignore(connection.dialect.name, table, key)
    if len(rows) == 1:
        inserted = (await connection.execute(statement, rows[0])).rowcount == 1
        return {rows[0]["id"]} if inserted else set()
    result = await connection.execute(statement.returning(table.c.id), list(rows))
    return set(result.scalars())


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block succeeds, rolled back when it raises.

    The transaction begins on first use, so a request that never touches the session costs
    no database round trip at all.
    """
    session = factory()
    try:
        yield session
        if session.in_transaction():
            await session.commit()
    except BaseException:
        if session.in_transaction():
            await session.rollback()
        raise
    finally:
        if session.sync_session.identity_map or session.in_transaction():
            await session.close()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@dataclass(frozen=True, slots=True)
class SchemaUpgrade:
    """The schema revision before and after an upgrade (``None``: no schema at all)."""

    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


async def upgrade_schema(engine: AsyncEngine) -> SchemaUpgrade:
    """Apply every pending migration on this engine's database."""

    def _revision(connection: Connection) -> str | None:
        heads = MigrationContext.configure(connection).get_current_heads()
        return ",".join(sorted(heads)) or None

    def _upgrade(connection: Connection) -> SchemaUpgrade:
        before = _revision(connection)
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        return SchemaUpgrade(before, _revision(connection))

    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade)


async def pending_migrations(engine: AsyncEngine) -> list[str]:
    """Revisions not yet applied to this engine's database (empty when it is current)."""

    def _pending(connection: Connection) -> list[str]:
        current = set(MigrationContext.configure(connection).get_current_heads())
        script = ScriptDirectory.from_config(alembic_config())
        applied: set[str] = set()
        for head in current:
            applied.update(rev.revision for rev in script.iterate_revisions(head, "base"))
        return [rev.revision for rev in script.walk_revisions() if rev.revision not in applied]

    async with engine.connect() as connection:
        return await connection.run_sync(_pending)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def get_session(state: State) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed if the endpoint succeeds, else rolled back."""
    async with unit_of_work(state.sessions) as session:
        yield session
    if session.info.pop(OUTBOX_WRITTEN, False):
        state.wake_webhooks()


# "function" scope: the commit happens before the response is sent, so a client never sees
# a success for work that was not committed, and a failed commit becomes an error response.
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
