"""The fixed CLI interface (SPEC §3): commands, --help, --json."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from exoplane.config import Settings
from exoplane.security import load_secret_key
from tests.conftest import SECRET_KEY
from tests.voicebot.factories import create_operator


def exoplane(
    home: Path, *args: str, database_url: str | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXOPLANE_HOME": str(home), **settings}
    if database_url:
        env["EXOPLANE_DATABASE_URL"] = database_url
        env.setdefault("EXOPLANE_SECRET_KEY", SECRET_KEY)
    return subprocess.run(
        [sys.executable, "-m", "exoplane", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("serve",),
        ("worker",),
        ("db",),
        ("db", "upgrade"),
        ("customers",),
        ("customers", "create"),
        ("customers", "list"),
        ("customers", "rotate-secret"),
        ("operators",),
        ("operators", "create"),
        ("operators", "list"),
    ],
)
def test_every_command_has_help(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = exoplane(tmp_path, *args, "--help")

    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_help_lists_the_commands(tmp_path: Path) -> None:
    output = exoplane(tmp_path, "--help").stdout

    for command in ("serve", "worker", "db", "customers", "operators"):
        assert command in output


def test_db_upgrade_creates_the_schema_and_says_so_in_json(tmp_path: Path) -> None:
    result = exoplane(tmp_path, "db", "upgrade", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "upgraded"
    assert report["from"] is None
    assert report["to"] == head_revision()
    assert report["database"] == f"sqlite+aiosqlite:///{tmp_path / 'exoplane.db'}"


def test_db_upgrade_says_which_revision_it_upgraded_from_and_to(tmp_path: Path) -> None:
    result = exoplane(tmp_path, "db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"Upgraded sqlite+aiosqlite:///{tmp_path / 'exoplane.db'} "
        f"from an empty schema to {head_revision()}."
    )


def test_db_upgrade_on_a_current_database_says_it_did_nothing(
    tmp_path: Path, database_url: str
) -> None:
    text = exoplane(tmp_path, "db", "upgrade", database_url=database_url)
    as_json = exoplane(tmp_path, "db", "upgrade", "--json", database_url=database_url)

    assert text.returncode == 0, text.stderr
    assert f"already at {head_revision()}" in text.stdout
    assert json.loads(as_json.stdout) == {
        "database": safe_url(database_url),
        "status": "current",
        "from": head_revision(),
        "to": head_revision(),
    }


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from exoplane.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def test_db_upgrade_never_prints_the_database_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://user:hunter2@127.0.0.1:1/none"

    result = exoplane(tmp_path, "db", "upgrade", database_url=url)

    assert result.returncode == 1
    assert "hunter2" not in result.stdout + result.stderr
    assert result.stderr.startswith("exoplane: cannot upgrade postgresql+asyncpg://user:***@")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_customers_create_prints_id_and_secret_once(tmp_path: Path, database_url: str) -> None:
    result = exoplane(
        tmp_path, "customers", "create", "--name", "Acme", "--json", database_url=database_url
    )

    customer = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert set(customer) == {"CustomerID", "CustomerSecret", "Name", "database"}
    assert customer["Name"] == "Acme"
    assert customer["database"] == safe_url(database_url)


def test_commands_that_write_say_which_database_without_its_password(
    tmp_path: Path, database_url: str
) -> None:
    url = with_password(database_url, "hunter2")
    customer = exoplane(tmp_path, "customers", "create", "--name", "Acme", database_url=url)
    operator = exoplane(
        tmp_path,
        "operators",
        "create",
        "--email",
        "ops@example.com",
        "--role",
        "admin",
        "--json",
        database_url=url,
    )

    assert customer.returncode == 0, customer.stderr
    assert operator.returncode == 0, operator.stderr
    assert f"Database:       {safe_url(url)}" in customer.stdout.splitlines()
    assert json.loads(operator.stdout)["database"] == safe_url(url)
    for result in (customer, operator):
        assert "hunter2" not in result.stdout + result.stderr


def with_password(url: str, password: str) -> str:
    """``url`` with a password (PostgreSQL's trust authentication on loopback ignores it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)


def test_customers_create_in_plain_text_warns_that_the_secret_is_shown_once(
    tmp_path: Path, database_url: str
) -> None:
    result = exoplane(tmp_path, "customers", "create", "--name", "Acme", database_url=database_url)

    assert "CustomerSecret:" in result.stdout
    assert "only now" in result.stdout


def test_customers_create_refuses_an_empty_name(tmp_path: Path) -> None:
    result = exoplane(tmp_path, "customers", "create", "--name", "  ")

    assert result.returncode == 2
    assert "--name" in result.stderr


def test_customers_create_on_a_fresh_sqlite_home_creates_the_schema(tmp_path: Path) -> None:
    result = exoplane(tmp_path, "customers", "create", "--name", "Acme", "--json")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "exoplane.db").exists()


def test_serve_refuses_a_postgresql_database_that_was_not_upgraded(
    tmp_path: Path, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite databases are upgraded by serve itself")
    base, _, _ = database_url.rpartition("/")
    empty = f"{base}/postgres"

    result = exoplane(tmp_path, "serve", "--port", "1", database_url=empty)

    assert result.returncode == 1
    assert "exoplane db upgrade" in result.stderr


def test_operators_create_prints_a_password_and_an_api_key_once(
    tmp_path: Path, database_url: str
) -> None:
    args = ("operators", "create", "--email", "Ops@Example.com", "--role", "super_admin")

    first = exoplane(tmp_path, *args, "--json", database_url=database_url)
    again = exoplane(tmp_path, *args, database_url=database_url)

    created = json.loads(first.stdout)
    assert first.returncode == 0, first.stderr
    assert created["email"] == "ops@example.com"
    assert created["role"] == "super_admin"
    assert created["api_key"].startswith("exo_")
    assert len(created["password"]) >= 16
    assert again.returncode == 1
    assert "exists already" in again.stderr


def test_operators_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    result = exoplane(tmp_path, "operators", "create", "--email", "a@b.co", "--role", "owner")

    assert result.returncode == 2
    assert "--role" in result.stderr


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = exoplane(tmp_path, "--version")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"exoplane {version('exoplane')}"


def test_serve_refuses_a_port_past_65535(tmp_path: Path) -> None:
    result = exoplane(tmp_path, "serve", "--port", "99999")

    assert result.returncode == 2
    assert "--port" in result.stderr
    assert "99999" not in result.stdout


SHORT_KEY = "too-short-but-secret"
BAD_SETTINGS = [
    (
        "EXOPLANE_DATABASE_URL",
        "mysql://user:hunter2@127.0.0.1/exoplane",
        "unsupported scheme 'mysql'; use sqlite+aiosqlite or postgresql+asyncpg",
    ),
    ("EXOPLANE_PUBLIC_URL", "exoplane.example.com", "not an http(s) URL"),
    ("EXOPLANE_CORE_FLEET", "not a url", "must be an http or https base URL"),
    ("EXOPLANE_SECRET_KEY", SHORT_KEY, "at least 32 characters"),
    ("EXOPLANE_WEBHOOK_CONCURRENCY", "0", "greater than or equal to 1"),
]


@pytest.mark.parametrize(("variable", "value", "message"), BAD_SETTINGS)
def test_a_bad_setting_is_one_line_naming_its_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = exoplane(tmp_path, "customers", "create", "--name", "Acme", **{variable: value})

    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"exoplane: {variable}: ")
    assert message in result.stderr
    assert "hunter2" not in result.stderr
    assert SHORT_KEY not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "1"),
        ("worker",),
        ("sandbox", "--port", "1"),
        ("demo",),
        ("db", "upgrade"),
        ("customers", "create", "--name", "Acme"),
        ("operators", "create", "--email", "a@b.co", "--role", "admin"),
        ("customers", "list"),
        ("customers", "rotate-secret", "--id", "x"),
        ("operators", "list"),
    ],
)
def test_every_command_refuses_a_bad_setting_the_same_way(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = exoplane(tmp_path, *args, EXOPLANE_SECRET_KEY=SHORT_KEY)

    assert result.returncode == 2
    assert result.stderr == ("exoplane: EXOPLANE_SECRET_KEY: must be at least 32 characters long\n")
    assert not (tmp_path / "exoplane.db").exists()


def test_a_fresh_home_and_its_database_are_private_to_their_owner(tmp_path: Path) -> None:
    home = tmp_path / "home"

    result = exoplane(home, "customers", "create", "--name", "Acme")

    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files = [home / "exoplane.db", home / "exoplane.db-wal", home / "exoplane.db-shm"]
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files if path.exists()}
    assert modes.get("exoplane.db") == 0o600
    assert set(modes.values()) == {0o600}


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "1"),
        ("worker",),
        ("db", "upgrade"),
        ("customers", "create", "--name", "Acme"),
        ("operators", "create", "--email", "a@b.co", "--role", "admin"),
        ("customers", "list"),
        ("customers", "rotate-secret", "--id", "x"),
        ("operators", "list"),
    ],
)
def test_an_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    # Nothing listens on port 1 of the loopback interface.
    url = "postgresql+asyncpg://user:hunter2@127.0.0.1:1/none"

    result = exoplane(tmp_path, *args, database_url=url, EXOPLANE_SECRET_KEY="k" * 40)

    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("exoplane: ")
    assert "postgresql+asyncpg://user:***@127.0.0.1:1/none: " in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def created_customer(home: Path, database_url: str, name: str, **settings: str) -> dict[str, str]:
    result = exoplane(
        home, "customers", "create", "--name", name, "--json", database_url=database_url, **settings
    )
    assert result.returncode == 0, result.stderr
    customer: dict[str, str] = json.loads(result.stdout)
    return customer


def test_customers_list_shows_names_and_state_and_never_a_secret(
    tmp_path: Path, database_url: str
) -> None:
    acme = created_customer(tmp_path, database_url, "Acme")
    globex = created_customer(tmp_path, database_url, "Globex")

    as_json = exoplane(tmp_path, "customers", "list", "--json", database_url=database_url)
    text = exoplane(tmp_path, "customers", "list", database_url=database_url)
    found = exoplane(
        tmp_path, "customers", "list", "--search", "GLO", "--json", database_url=database_url
    )

    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert [(row["id"], row["name"], row["disabled"]) for row in listed["customers"]] == [
        (acme["CustomerID"], "Acme", False),
        (globex["CustomerID"], "Globex", False),
    ]
    assert listed["database"] == safe_url(database_url)
    assert [row["name"] for row in json.loads(found.stdout)["customers"]] == ["Globex"]
    assert acme["CustomerID"] in text.stdout
    assert "Globex" in text.stdout
    for output in (as_json.stdout, text.stdout):
        assert acme["CustomerSecret"] not in output
        assert "hash" not in output


def test_customers_rotate_secret_prints_the_new_secret_once_and_keeps_the_old_for_the_grace(
    tmp_path: Path, database_url: str
) -> None:
    acme = created_customer(tmp_path, database_url, "Acme")
    args = ("customers", "rotate-secret", "--id", acme["CustomerID"], "--grace-seconds", "3600")

    rotated = exoplane(tmp_path, *args, "--json", database_url=database_url)
    text = exoplane(tmp_path, *args, database_url=database_url)

    assert rotated.returncode == 0, rotated.stderr
    first = json.loads(rotated.stdout)
    assert set(first) == {"CustomerID", "CustomerSecret", "PreviousSecretExpiresAt", "database"}
    assert first["CustomerSecret"] != acme["CustomerSecret"]
    assert text.returncode == 0, text.stderr
    assert "shown only now" in text.stdout
    assert first["CustomerSecret"] not in text.stdout


async def test_a_secret_rotated_from_the_command_line_is_audited_and_the_old_one_still_works(
    tmp_path: Path, database_url: str, client: httpx.AsyncClient, settings: Settings
) -> None:
    # Secrets are hashed with the server key, so the command line must use the server's.
    key = {"EXOPLANE_SECRET_KEY": load_secret_key(settings).decode()}
    acme = created_customer(tmp_path, database_url, "Acme", **key)
    args = ("customers", "rotate-secret", "--id", acme["CustomerID"], "--json")

    rotated = json.loads(exoplane(tmp_path, *args, database_url=database_url, **key).stdout)
    root = await create_operator(settings, "root@example.com", "super_admin")
    audit = await client.get("/api/v1/audit", headers=root.headers)

    for secret in (acme["CustomerSecret"], rotated["CustomerSecret"]):
        minted = await client.post(
            "/v2/integrations/token",
            json={"Id": acme["CustomerID"], "Secret": secret, "Entity": "customer"},
        )
        assert minted.status_code == 200, minted.text
    entries = audit.json()["entries"]
    assert [(entry["action"], entry["operator"]) for entry in entries] == [
        ("customer.rotate_secret", "command line")
    ]
    assert rotated["CustomerSecret"] not in audit.text


@pytest.mark.parametrize("command", ["create", "rotate-secret"])
async def test_a_customer_secret_is_not_written_under_a_key_the_database_was_not_set_up_with(
    tmp_path: Path, database_url: str, client: httpx.AsyncClient, command: str
) -> None:
    # The server (the ``client`` fixture) has recorded its key's fingerprint in the database.
    args = ("--name", "Acme") if command == "create" else ("--id", "x")

    result = exoplane(
        tmp_path,
        "customers",
        command,
        *args,
        database_url=database_url,
        EXOPLANE_SECRET_KEY="another key, at least thirty-two characters long",
    )

    assert result.returncode == 1
    assert result.stderr.startswith("exoplane: EXOPLANE_SECRET_KEY does not match"), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("grace", ["-1", "604801", "soon"])
def test_customers_rotate_secret_refuses_a_grace_out_of_bounds(tmp_path: Path, grace: str) -> None:
    result = exoplane(tmp_path, "customers", "rotate-secret", "--id", "x", "--grace-seconds", grace)

    assert result.returncode == 2
    assert "--grace-seconds" in result.stderr


def test_customers_rotate_secret_of_an_unknown_customer_says_so(
    tmp_path: Path, database_url: str
) -> None:
    result = exoplane(
        tmp_path, "customers", "rotate-secret", "--id", "nobody", database_url=database_url
    )

    assert result.returncode == 1
    assert "No customer 'nobody'" in result.stderr


def test_operators_list_shows_roles_and_never_a_password_key_or_hash(
    tmp_path: Path, database_url: str
) -> None:
    create = ("operators", "create", "--json", "--email")
    root = json.loads(
        exoplane(
            tmp_path,
            *create,
            "root@example.com",
            "--role",
            "super_admin",
            database_url=database_url,
        ).stdout
    )
    ops = json.loads(
        exoplane(
            tmp_path, *create, "ops@example.com", "--role", "admin", database_url=database_url
        ).stdout
    )

    as_json = exoplane(tmp_path, "operators", "list", "--json", database_url=database_url)
    text = exoplane(tmp_path, "operators", "list", database_url=database_url)

    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)["operators"]
    assert [(row["email"], row["role"], row["disabled"]) for row in rows] == [
        ("root@example.com", "super_admin", False),
        ("ops@example.com", "admin", False),
    ]
    assert "ops@example.com" in text.stdout
    for output in (as_json.stdout, text.stdout):
        for secret in (root["api_key"], root["password"], ops["api_key"], ops["password"]):
            assert secret not in output
        assert "hash" not in output
