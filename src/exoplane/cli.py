"""The ``exoplane`` command."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from exoplane.config import Settings, describe_invalid_settings

if TYPE_CHECKING:
    from exoplane.db import SchemaUpgrade

T = TypeVar("T")

app = typer.Typer(
    help="exoplane: a self-hostable implementation of Exotel's integration platform.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
customers_app = typer.Typer(
    help="Customers (integrators) and their credentials.", no_args_is_help=True
)
operators_app = typer.Typer(
    help="Bot-platform operators (console and /api/v1).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(customers_app, name="customers")
app.add_typer(operators_app, name="operators")

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on (1-65535).")]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("exoplane")
    except PackageNotFoundError:
        from exoplane import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"exoplane {_version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """exoplane: a self-hostable implementation of Exotel's integration platform."""


def _fail(lines: list[str], code: int = 2) -> NoReturn:
    for line in lines:
        typer.echo(f"exoplane: {line}", err=True)
    raise typer.Exit(code=code)


def _settings() -> Settings:
    """The settings from the environment and ``.env``; a bad one ends the command with a
    line naming its variable (exit 2), never a traceback or the value itself."""
    try:
        return Settings()
    except ValidationError as exc:
        _fail(describe_invalid_settings(exc))


def _emit(data: dict[str, object], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(data))
    else:
        for line in lines:
            typer.echo(line)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: PortOption = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=MAX_API_PROCESSES,
            help="API processes sharing the port (each runs the webhook worker unless "
            "--no-worker).",
        ),
    ] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the webhook worker in this process.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Serve the API, console and media core. On SQLite the schema is created or upgraded."""
    import uvicorn

    settings = _settings()
    secret_key = _secret_key(settings)
    if settings.is_sqlite:
        _on_database(settings, _upgrade(settings), "cannot upgrade")
    else:
        _require_current_schema(settings)
    _require_cluster_key(settings, secret_key)
    sock = _bind(host, port)
    url = _http_url(host, port)
    if "public_url" not in settings.model_fields_set:
        # Flow URLs handed out must reach this server: the address it actually serves on.
        settings = settings.model_copy(update={"public_url": _http_url(_reachable(host), port)})
    database = _safe_url(settings.database_url)
    processes = f"{workers} processes; " if workers > 1 else ""
    _emit(
        {"url": url, "docs": f"{url}/docs", "database": database, "workers": workers},
        as_json,
        [f"exoplane serving on {url} ({processes}API docs at {url}/docs; database {database})"],
    )
    options: dict[str, Any] = {
        "access_log": False,
        "log_level": "warning",
        # uvicorn's own lines go through the project's JSON logging (configured by create_app).
        "log_config": None,
        "proxy_headers": False,
        "ws_max_size": settings.media_max_message_bytes,
    }
    if workers == 1:
        from exoplane.app import create_app

        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, run_worker=not no_worker), **options)
        )
        server.run(sockets=[sock])
        if not server.started:
            raise typer.Exit(code=1)
        return
    _serve_processes(settings, sock, workers, run_worker=not no_worker, options=options)


# More API processes than this on one machine is a mistake, not a configuration.
MAX_API_PROCESSES = 64


def _serve_processes(
    settings: Settings,
    sock: socket.socket,
    workers: int,
    *,
    run_worker: bool,
    options: dict[str, Any],
) -> None:
    """Run ``workers`` API processes on ``sock`` under uvicorn's supervisor, which restarts
    one that dies and passes SIGTERM on to all of them."""
    import os

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from exoplane.logs import configure_logging

    configure_logging(settings)
    # Each process reads its settings from the environment, as this one did; the public URL
    # this process worked out from the bound port goes with them.
    os.environ["EXOPLANE_PUBLIC_URL"] = settings.public_url
    factory = "exoplane.app:create_app_with_worker" if run_worker else "exoplane.app:create_app"
    config = uvicorn.Config(factory, factory=True, workers=workers, **options)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise typer.Exit(code=1)


# The status uvicorn gives a process whose app failed to start.
STARTUP_FAILURE = 3


def _secret_key(settings: Settings) -> bytes:
    """The server key, or one line saying why there is none (exit 1), before anything
    touches the database."""
    from exoplane.security import SecretKeyError, load_secret_key

    try:
        return load_secret_key(settings)
    except SecretKeyError as exc:
        _fail([str(exc)], code=1)


def _require_cluster_key(settings: Settings, secret_key: bytes) -> None:
    """End the command with one line (exit 1) unless ``secret_key`` is the key the database
    was set up with; the first process on a database records it."""
    from exoplane.security import SecretKeyError

    async def check() -> None:
        from exoplane.cluster.service import check_cluster_key
        from exoplane.db import create_engine, create_session_factory

        engine = create_engine(
            settings.database_url,
            connect_timeout_seconds=settings.database_connect_timeout_seconds,
            statement_timeout_seconds=settings.database_statement_timeout_seconds,
        )
        try:
            await check_cluster_key(create_session_factory(engine), secret_key)
        finally:
            await engine.dispose()

    try:
        _on_database(settings, check(), "cannot reach")
    except SecretKeyError as exc:
        _fail([str(exc)], code=1)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one line saying why not (exit 1)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        _fail([f"cannot listen on {_http_url(host, port)}: {exc.strerror}"], code=1)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        _fail([f"cannot listen on {_http_url(host, port)}: {exc.strerror or exc}"], code=1)
    return sock


def _reachable(host: str) -> str:
    """``host``, or the loopback address when it names every interface."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _upgrade(settings: Settings) -> SchemaUpgrade:
    from exoplane.db import create_engine, upgrade_schema

    engine = create_engine(
        settings.database_url,
        connect_timeout_seconds=settings.database_connect_timeout_seconds,
        statement_timeout_seconds=None,
    )
    try:
        return await upgrade_schema(engine)
    finally:
        await engine.dispose()


@app.command()
def worker(as_json: JsonOption = False) -> None:
    """Deliver webhooks (standalone; `serve` runs one in-process unless --no-worker)."""
    settings = _settings()
    secret_key = _secret_key(settings)
    if settings.is_sqlite:
        _on_database(settings, _upgrade(settings), "cannot upgrade")
    else:
        _require_current_schema(settings)
    _require_cluster_key(settings, secret_key)
    _emit(
        {"worker": "webhooks", "database": _safe_url(settings.database_url)},
        as_json,
        [f"exoplane webhook worker on {_safe_url(settings.database_url)}"],
    )
    asyncio.run(_run_worker(settings))


async def _run_worker(settings: Settings) -> None:
    import signal

    from exoplane.db import create_engine, create_session_factory
    from exoplane.logs import configure_logging
    from exoplane.security import Vault, load_secret_key
    from exoplane.webhooks.worker import WebhookWorker

    configure_logging(settings)
    engine = create_engine(
        settings.database_url,
        connect_timeout_seconds=settings.database_connect_timeout_seconds,
        statement_timeout_seconds=settings.database_statement_timeout_seconds,
    )
    delivery = WebhookWorker(
        settings, create_session_factory(engine), Vault(load_secret_key(settings))
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, delivery.stop)
    try:
        await delivery.run()
    finally:
        await engine.dispose()


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: PortOption = 8081,
    database: Annotated[
        Path | None,
        typer.Option(help="Keep the sandbox's state in this SQLite file (default: memory)."),
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(help="Multiply simulated waits (rings, talk time) by this factor."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the Exotel emulator: v1 Calls API, simulated calls and flows, /_sandbox control."""
    import uvicorn

    from exoplane.logs import configure_logging
    from exoplane.sandbox.app import SandboxSettings, create_sandbox_app

    configure_logging(_settings())
    overrides: dict[str, Any] = {}
    if database is not None:
        overrides["database"] = database
    if time_scale is not None:
        overrides["time_scale"] = time_scale
    try:
        sandbox_settings = SandboxSettings(**overrides)
    except ValidationError as exc:
        typer.echo(f"Invalid sandbox setting: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(code=2) from None
    _emit(
        {"url": f"http://{host}:{port}", "database": str(sandbox_settings.database or "")},
        as_json,
        [
            f"exoplane sandbox (Exotel emulator) on http://{host}:{port}",
            f"state: {sandbox_settings.database or 'in memory'}",
        ],
    )
    uvicorn.run(
        create_sandbox_app(sandbox_settings),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        log_config=None,
    )


@app.command()
def demo(
    as_json: JsonOption = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep running afterwards (the console), until Ctrl-C")
    ] = False,
) -> None:
    """Play the whole system offline: exoplane, the sandbox and a webhook receiver on
    127.0.0.1, an inbound call, a missed call, a voice-bot test call and a click-to-call;
    prints the console's URL and its operator's sign-in."""
    from exoplane.demo import run_demo

    _settings()
    ok = asyncio.run(run_demo(typer.echo, as_json=as_json, keep=keep))
    if not ok:
        raise typer.Exit(code=1)


def _require_current_schema(settings: Settings) -> None:
    from exoplane.db import create_engine, pending_migrations

    async def pending() -> list[str]:
        engine = create_engine(settings.database_url)
        try:
            return await pending_migrations(engine)
        finally:
            await engine.dispose()

    missing = _on_database(settings, pending(), "cannot reach")
    if missing:
        typer.echo(
            f"The database schema is behind by {len(missing)} migration(s); "
            "run `exoplane db upgrade` first.",
            err=True,
        )
        raise typer.Exit(code=1)


def _on_database(settings: Settings, work: Coroutine[Any, Any, T], failure: str) -> T:
    """Run ``work``; a database that cannot be reached or refuses the login ends the command
    with one line (exit 1): the driver's reason and the URL with its password masked."""
    from sqlalchemy.exc import DBAPIError

    try:
        return asyncio.run(work)
    except (OSError, DBAPIError) as exc:
        text = str(exc.orig if isinstance(exc, DBAPIError) else exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        _fail([f"{failure} {_safe_url(settings.database_url)}: {reason}"], code=1)


def _with_cluster_key(settings: Settings, work: Coroutine[Any, Any, T], failure: str) -> T:
    """``_on_database`` for work that checks the server key against the database first: a
    key the database was not set up with ends the command with one line (exit 1)."""
    from exoplane.security import SecretKeyError

    try:
        return _on_database(settings, work, failure)
    except SecretKeyError as exc:
        _fail([str(exc)], code=1)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Apply all pending migrations (required before `serve` on PostgreSQL)."""
    settings = _settings()
    database = _safe_url(settings.database_url)
    upgrade = _on_database(settings, _upgrade(settings), "cannot upgrade")
    if upgrade.changed:
        line = f"Upgraded {database} from {upgrade.before or 'an empty schema'} to {upgrade.after}."
    else:
        line = f"{database} is already at {upgrade.after}; nothing to do."
    _emit(
        {
            "database": database,
            "status": "upgraded" if upgrade.changed else "current",
            "from": upgrade.before,
            "to": upgrade.after,
        },
        as_json,
        [line],
    )


@customers_app.command("create")
def customers_create(
    name: Annotated[str, typer.Option("--name", help="The customer's name.")],
    as_json: JsonOption = False,
) -> None:
    """Create a customer and print its CustomerID and CustomerSecret (shown only once)."""
    if not name.strip():
        raise typer.BadParameter("must not be empty", param_hint="--name")
    settings = _settings()
    database = _safe_url(settings.database_url)
    secret_key = _secret_key(settings)
    customer_id, secret = _with_cluster_key(
        settings, _create_customer(settings, secret_key, name.strip()), "cannot write to"
    )
    _emit(
        {
            "CustomerID": customer_id,
            "CustomerSecret": secret,
            "Name": name.strip(),
            "database": database,
        },
        as_json,
        [
            f"CustomerID:     {customer_id}",
            f"CustomerSecret: {secret}",
            f"Database:       {database}",
            "The secret is shown only now; store it safely.",
        ],
    )


async def _create_customer(settings: Settings, secret_key: bytes, name: str) -> tuple[str, str]:
    from exoplane.cluster.service import check_cluster_key
    from exoplane.db import create_engine, create_session_factory, unit_of_work, upgrade_schema
    from exoplane.integrations.service import create_customer
    from exoplane.security import Vault

    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade_schema(engine)
        sessions = create_session_factory(engine)
        # The secret is hashed under the server key: under another key it would never match.
        await check_cluster_key(sessions, secret_key)
        async with unit_of_work(sessions) as session:
            customer, secret = await create_customer(session, Vault(secret_key), name)
            return customer.id, secret
    finally:
        await engine.dispose()


# As the API's (``exoplane.admin.schemas``), without importing it before a command runs.
DEFAULT_GRACE_SECONDS = 24 * 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600
LIST_PAGE = 200


@customers_app.command("list")
def customers_list(
    search: Annotated[
        str | None, typer.Option("--search", help="Only names containing this, any case.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List customers, oldest first: id, name, whether disabled. Never a secret."""
    settings = _settings()
    customers = _on_database(settings, _list_customers(settings, search), "cannot read")
    _emit(
        {"customers": customers, "database": _safe_url(settings.database_url)},
        as_json,
        [
            f"{row['id']}  {'disabled' if row['disabled'] else 'active  '}  {row['name']}"
            for row in customers
        ]
        or ["No customers."],
    )


async def _list_customers(settings: Settings, search: str | None) -> list[dict[str, Any]]:
    from exoplane.admin.schemas import customer_view
    from exoplane.admin.service import list_customers
    from exoplane.db import create_engine, create_session_factory, unit_of_work, upgrade_schema

    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade_schema(engine)
        async with unit_of_work(create_session_factory(engine)) as session:
            rows: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                page, cursor = await list_customers(
                    session, search=search, cursor=cursor, limit=LIST_PAGE
                )
                rows += [customer_view(customer) for customer in page]
                if cursor is None:
                    return rows
    finally:
        await engine.dispose()


@customers_app.command("rotate-secret")
def customers_rotate_secret(
    customer_id: Annotated[str, typer.Option("--id", help="The CustomerID.")],
    grace_seconds: Annotated[
        int,
        typer.Option(
            "--grace-seconds",
            min=0,
            max=MAX_GRACE_SECONDS,
            help="How long the old secret keeps working (0 to 604800).",
        ),
    ] = DEFAULT_GRACE_SECONDS,
    as_json: JsonOption = False,
) -> None:
    """Issue a new CustomerSecret (shown only once); the old one works for the grace period."""
    settings = _settings()
    database = _safe_url(settings.database_url)
    secret_key = _secret_key(settings)
    rotated = _with_cluster_key(
        settings,
        _rotate_customer_secret(settings, secret_key, customer_id.strip(), grace_seconds),
        "cannot write to",
    )
    if rotated is None:
        _fail([f"No customer {customer_id.strip()!r} in {database}."], code=1)
    secret, expires_at = rotated
    _emit(
        {
            "CustomerID": customer_id.strip(),
            "CustomerSecret": secret,
            "PreviousSecretExpiresAt": expires_at,
            "database": database,
        },
        as_json,
        [
            f"CustomerID:     {customer_id.strip()}",
            f"CustomerSecret: {secret}",
            f"The old secret works until {expires_at}.",
            "The new secret is shown only now; store it safely.",
        ],
    )


async def _rotate_customer_secret(
    settings: Settings, secret_key: bytes, customer_id: str, grace_seconds: int
) -> tuple[str, str] | None:
    from exoplane.admin.errors import CustomerNotFound
    from exoplane.admin.service import rotate_customer_secret
    from exoplane.cluster.service import check_cluster_key
    from exoplane.db import create_engine, create_session_factory, unit_of_work, upgrade_schema
    from exoplane.responses import resource_time
    from exoplane.security import Vault

    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade_schema(engine)
        sessions = create_session_factory(engine)
        await check_cluster_key(sessions, secret_key)
        async with unit_of_work(sessions) as session:
            try:
                rotated = await rotate_customer_secret(
                    session, Vault(secret_key), None, customer_id, grace_seconds
                )
            except CustomerNotFound:
                return None
            return rotated.secret, resource_time(rotated.previous_secret_expires_at)
    finally:
        await engine.dispose()


class Role(StrEnum):
    super_admin = "super_admin"
    admin = "admin"


@operators_app.command("create")
def operators_create(
    email: Annotated[str, typer.Option("--email", help="The operator's email (login).")],
    role: Annotated[Role, typer.Option("--role", help="super_admin or admin.")],
    as_json: JsonOption = False,
) -> None:
    """Create an operator; prints a password and an API key, shown only once."""
    if "@" not in email or len(email.strip()) < 3:
        raise typer.BadParameter(f"{email!r} is not an email address", param_hint="--email")
    settings = _settings()
    database = _safe_url(settings.database_url)
    created = _on_database(
        settings, _create_operator(settings, email, role.value), "cannot write to"
    )
    if created is None:
        typer.echo(f"An operator with email {email.strip().lower()} exists already.", err=True)
        raise typer.Exit(code=1)
    operator_id, password, api_key = created
    _emit(
        {
            "id": operator_id,
            "email": email.strip().lower(),
            "role": role.value,
            "password": password,
            "api_key": api_key,
            "database": database,
        },
        as_json,
        [
            f"Operator:  {email.strip().lower()} ({role.value})",
            f"Password:  {password}",
            f"API key:   {api_key}",
            f"Database:  {database}",
            "Both are shown only now; store them safely.",
        ],
    )


async def _create_operator(
    settings: Settings, email: str, role: str
) -> tuple[str, str, str] | None:
    from exoplane.db import create_engine, create_session_factory, unit_of_work, upgrade_schema
    from exoplane.errors import Conflict
    from exoplane.voicebot.service import create_operator

    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade_schema(engine)
        async with unit_of_work(create_session_factory(engine)) as session:
            try:
                created = await create_operator(session, email, role)
            except Conflict:
                return None
            return created.operator.id, created.password, created.api_key
    finally:
        await engine.dispose()


@operators_app.command("list")
def operators_list(as_json: JsonOption = False) -> None:
    """List operators, oldest first: id, email, role, whether disabled. Never a hash or key."""
    settings = _settings()
    operators = _on_database(settings, _list_operators(settings), "cannot read")
    _emit(
        {"operators": operators, "database": _safe_url(settings.database_url)},
        as_json,
        [
            f"{row['id']}  {row['role']:<11}  "
            f"{'disabled' if row['disabled'] else 'active  '}  {row['email']}"
            for row in operators
        ]
        or ["No operators."],
    )


async def _list_operators(settings: Settings) -> list[dict[str, Any]]:
    from exoplane.admin.schemas import operator_view
    from exoplane.admin.service import list_operators
    from exoplane.db import create_engine, create_session_factory, unit_of_work, upgrade_schema

    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade_schema(engine)
        async with unit_of_work(create_session_factory(engine)) as session:
            rows: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                page, cursor = await list_operators(session, cursor=cursor, limit=LIST_PAGE)
                rows += [operator_view(operator) for operator in page]
                if cursor is None:
                    return rows
    finally:
        await engine.dispose()


def main() -> None:
    try:
        app()
    except ValidationError as exc:
        # Settings read outside a command's own check (a library default, say) still end
        # with the variable named and no traceback.
        if exc.title != Settings.__name__:
            raise
        for line in describe_invalid_settings(exc):
            typer.echo(f"exoplane: {line}", err=True)
        raise SystemExit(2) from None
