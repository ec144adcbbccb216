"""The fixed CLI interface (SPEC §3): commands, --help, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def exoplane(
    home: Path, *args: str, database_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXOPLANE_HOME": str(home)}
    if database_url:
        env["EXOPLANE_DATABASE_URL"] = database_url
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
        ("operators",),
        ("operators", "create"),
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


def test_db_upgrade_creates_the_schema_and_says_so_in_json(
    tmp_path: Path, database_url: str
) -> None:
    result = exoplane(tmp_path, "db", "upgrade", "--json", database_url=database_url)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "up to date"


def test_db_upgrade_never_prints_the_database_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://user:hunter2@127.0.0.1:1/none"

    result = exoplane(tmp_path, "db", "upgrade", database_url=url)

    assert result.returncode != 0
    assert "hunter2" not in result.stdout + result.stderr


def test_customers_create_prints_id_and_secret_once(tmp_path: Path, database_url: str) -> None:
    result = exoplane(
        tmp_path, "customers", "create", "--name", "Acme", "--json", database_url=database_url
    )

    customer = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert set(customer) == {"CustomerID", "CustomerSecret", "Name"}
    assert customer["Name"] == "Acme"


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
