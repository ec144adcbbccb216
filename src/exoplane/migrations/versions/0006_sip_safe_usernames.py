"""SIP-safe usernames: plain SIP users under the Exotel account's SIP domain

``<escaped user id>@<app id>.<base>`` becomes ``<SIP user>@<ExotelAccountSid>.<base>``, where
the SIP user is the id itself when it is a plain token, else a token derived from it. The
base domain was ``exotel.com`` by default and is now ``voip.exotel.com``, as in Exotel's SDK.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_users = sa.table(
    "users",
    sa.column("id", sa.BigInteger()),
    sa.column("app_id", sa.String()),
    sa.column("user_id", sa.String()),
    sa.column("sip_username", sa.String()),
)
_apps = sa.table("apps", sa.column("id", sa.String()), sa.column("exotel_account_sid", sa.String()))

# The rule as it was when this migration was written (exoplane.integrations.service.sip_user);
# a migration keeps its own copy so that later changes to the rule do not rewrite history.
_PLAIN_SIP_USER = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9._-]")
# EXOPLANE_SIP_DOMAIN's default before and after; a base domain set by hand is kept.
_OLD_DEFAULT = "exotel.com"
_NEW_DEFAULT = "voip.exotel.com"


def _sip_user(user_id: str) -> str:
    if _PLAIN_SIP_USER.fullmatch(user_id) and user_id not in (".", ".."):
        return user_id
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{_NOT_PLAIN.sub('_', user_id)[:51]}~{digest}"


def _rewrite(new_username: Callable[[Any], str]) -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            _users.c.id,
            _users.c.app_id,
            _users.c.user_id,
            _users.c.sip_username,
            _apps.c.exotel_account_sid,
        ).join(_apps, _apps.c.id == _users.c.app_id)
    ).all()
    changes = []
    for row in rows:
        username = new_username(row)
        if username != row.sip_username:
            changes.append({"pk": row.id, "username": username})
    if changes:
        connection.execute(
            sa.update(_users)
            .where(_users.c.id == sa.bindparam("pk"))
            .values(sip_username=sa.bindparam("username")),
            changes,
        )


def _domain(username: str) -> str:
    return username.split("@", 1)[1] if "@" in username else ""


def _to_account_domain(row: Any) -> str:
    base = _domain(row.sip_username).removeprefix(f"{row.app_id}.")
    base = _NEW_DEFAULT if base == _OLD_DEFAULT else base
    return f"{_sip_user(row.user_id)}@{row.exotel_account_sid}.{base}"


def _to_app_domain(row: Any) -> str:
    base = _domain(row.sip_username).removeprefix(f"{row.exotel_account_sid}.")
    base = _OLD_DEFAULT if base == _NEW_DEFAULT else base
    return f"{quote(row.user_id, safe='')}@{row.app_id}.{base}"


def upgrade() -> None:
    _rewrite(_to_account_domain)


def downgrade() -> None:
    _rewrite(_to_app_domain)
