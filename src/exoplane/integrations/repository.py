"""All SQL of the integrations API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import Reader
from exoplane.models import App, AppSettings, Customer, Token, User


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def get_app(session: AsyncSession, app_id: str) -> App | None:
    return await session.get(App, app_id)


async def list_apps(reader: Reader, customer_id: str) -> list[AppRecord]:
    rows = await reader.all(_APPS_OF_CUSTOMER, {"customer_id": customer_id})
    return [AppRecord(*row) for row in rows]


async def delete_app(session: AsyncSession, app_id: str) -> None:
    # Users and tokens go with it (ON DELETE CASCADE); delete them explicitly as well so the
    # outcome does not depend on the backend enforcing foreign keys.
    await session.execute(delete(Token).where(Token.app_id == app_id))
    await session.execute(delete(User).where(User.app_id == app_id))
    await session.execute(delete(App).where(App.id == app_id))


@dataclass(frozen=True, slots=True)
class AppRecord:
    """An app as read on the hot path, outside any session."""

    id: str
    customer_id: str
    name: str
    exotel_account_sid: str
    exotel_domain: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as read on the hot path, outside any session."""

    id: int
    app_id: str
    user_id: str
    name: str
    exotel_user_name: str
    email: str
    phone_number: str | None
    virtual_number: str | None
    role: str
    sip_username: str
    sip_secret_enc: str
    phone_enabled: bool
    sip_enabled: bool
    devices_updated_at: datetime | None
    sip_registered_until: datetime | None
    sip_last_seen: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SecretHolder:
    """A customer or an app, with what checking its secret needs: for an app, its
    customer's ``disabled_at``."""

    entity: str
    id: str
    customer_id: str
    secret_hash: str
    previous_secret_hash: str | None
    previous_secret_expires_at: datetime | None
    customer_disabled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Credential:
    """A token with, for app and agent tokens, the app it belongs to, and for agent tokens
    the ``user_id`` of the user it acts as (None once that user is gone)."""

    token_id: str
    entity: str
    customer_id: str
    expires_at: datetime
    revoked_at: datetime | None
    user_id: str | None
    app: AppRecord | None
    customer_disabled: bool


_APP_RECORD = (
    App.id,
    App.customer_id,
    App.name,
    App.exotel_account_sid,
    App.exotel_domain,
    App.is_active,
    App.created_at,
    App.updated_at,
)
_CREDENTIAL = (
    select(
        Token.id, Token.entity, Token.customer_id, Token.expires_at, Token.revoked_at, User.user_id
    )
    .add_columns(Customer.disabled_at, *_APP_RECORD)
    .join(Customer, Token.customer_id == Customer.id)
    .outerjoin(App, Token.app_id == App.id)
    .outerjoin(User, (Token.user_id == User.id) & (User.app_id == Token.app_id))
    .where(Token.token_hash == bindparam("token_hash"))
)
_CUSTOMER_HOLDER = select(
    Customer.id,
    Customer.id.label("customer_id"),
    Customer.secret_hash,
    Customer.previous_secret_hash,
    Customer.previous_secret_expires_at,
    Customer.disabled_at,
).where(Customer.id == bindparam("id"))
_APP_HOLDER = (
    select(
        App.id,
        App.customer_id,
        App.secret_hash,
        App.previous_secret_hash,
        App.previous_secret_expires_at,
        Customer.disabled_at,
    )
    .join(Customer, App.customer_id == Customer.id)
    .where(App.id == bindparam("id"))
)
_USER_RECORD = tuple(getattr(User, field.name) for field in fields(UserRecord))
_USER = select(*_USER_RECORD).where(
    User.app_id == bindparam("app_id"), User.user_id == bindparam("user_id")
)
_USERS_PAGE = (
    select(*_USER_RECORD)
    .where(User.app_id == bindparam("app_id"), User.id > bindparam("after_id"))
    .order_by(User.id)
    .limit(bindparam("limit"))
)
_APPS_OF_CUSTOMER = (
    select(*_APP_RECORD)
    .where(App.customer_id == bindparam("customer_id"))
    .order_by(App.created_at, App.id)
)


async def find_secret_holder(reader: Reader, entity: str, holder_id: str) -> SecretHolder | None:
    """The customer (``entity`` "customer") or app with this id, as its secret is checked."""
    query = _CUSTOMER_HOLDER if entity == "customer" else _APP_HOLDER
    row = await reader.first(query, {"id": holder_id})
    return SecretHolder(entity, *row) if row is not None else None


async def rehash_secret(
    session: AsyncSession, holder: SecretHolder, column: str, stored: str, rehashed: str
) -> None:
    """Replace the hash in ``column`` (``secret_hash`` or ``previous_secret_hash``) by its
    keyed form, unless it changed since it was read (a rotation meanwhile wins)."""
    table = Customer if holder.entity == "customer" else App
    await session.execute(
        update(table)
        .where(table.id == holder.id, getattr(table, column) == stored)
        .values({column: rehashed})
    )


async def insert_token(session: AsyncSession, values: Mapping[str, object]) -> None:
    await session.execute(insert(Token), values)


async def find_credential(reader: Reader, token_hash: str) -> Credential | None:
    row = await reader.first(_CREDENTIAL, {"token_hash": token_hash})
    if row is None:
        return None
    token_id, entity, customer_id, expires_at, revoked_at, user_id, disabled_at, *app_columns = row
    app = AppRecord(*app_columns) if app_columns[0] is not None else None
    return Credential(
        token_id, entity, customer_id, expires_at, revoked_at, user_id, app, disabled_at is not None
    )


async def revoke_token(session: AsyncSession, token_id: str, when: datetime) -> None:
    await session.execute(update(Token).where(Token.id == token_id).values(revoked_at=when))


async def get_user(session: AsyncSession, app_id: str, user_id: str) -> User | None:
    query = select(User).where(User.app_id == app_id, User.user_id == user_id)
    return await session.scalar(query)


async def find_existing_users(
    session: AsyncSession, app_id: str, user_ids: Sequence[str], emails: Sequence[str]
) -> Sequence[User]:
    query = select(User).where(
        User.app_id == app_id, (User.user_id.in_(user_ids)) | (User.email.in_(emails))
    )
    return (await session.scalars(query)).all()


async def read_user(reader: Reader, app_id: str, user_id: str) -> UserRecord | None:
    row = await reader.first(_USER, {"app_id": app_id, "user_id": user_id})
    return UserRecord(*row) if row is not None else None


async def list_users(reader: Reader, app_id: str, *, after_id: int, limit: int) -> list[UserRecord]:
    rows = await reader.all(_USERS_PAGE, {"app_id": app_id, "after_id": after_id, "limit": limit})
    return [UserRecord(*row) for row in rows]


async def delete_users(session: AsyncSession, app_id: str, user_ids: Sequence[str]) -> int:
    # Their agent tokens go with them (ON DELETE CASCADE), explicitly too, as in delete_app.
    users = select(User.id).where(User.app_id == app_id, User.user_id.in_(user_ids))
    await session.execute(delete(Token).where(Token.user_id.in_(users)))
    result = await session.execute(
        delete(User).where(User.app_id == app_id, User.user_id.in_(user_ids))
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_all_users(session: AsyncSession, app_id: str) -> int:
    await session.execute(delete(Token).where(Token.app_id == app_id, Token.user_id.is_not(None)))
    result = await session.execute(delete(User).where(User.app_id == app_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def get_settings(session: AsyncSession, app_id: str) -> AppSettings | None:
    return await session.get(AppSettings, app_id)


def add_settings(session: AsyncSession, settings: AppSettings) -> None:
    session.add(settings)


async def set_devices(
    session: AsyncSession,
    user_pk: int,
    *,
    phone: bool | None,
    sip: bool | None,
    when: datetime,
) -> bool:
    """Change the device flags in one statement that also enforces "at least one enabled".

    The rule is checked against the row as it is when the update runs, not as it was read,
    so two concurrent requests that each disable a different device cannot both succeed.
    Returns False (and changes nothing) when the result would leave both disabled.
    """
    new_phone = User.phone_enabled if phone is None else literal(phone)
    new_sip = User.sip_enabled if sip is None else literal(sip)
    result = await session.execute(
        update(User)
        .where(User.id == user_pk, or_(new_phone, new_sip))
        .values(phone_enabled=new_phone, sip_enabled=new_sip, devices_updated_at=when)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def set_sip_registration(
    session: AsyncSession, user_pk: int, registered_until: datetime | None, seen: datetime | None
) -> None:
    values: dict[str, datetime | None] = {"sip_registered_until": registered_until}
    if seen is not None:
        values["sip_last_seen"] = seen
    await session.execute(
        update(User)
        .where(User.id == user_pk)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def refresh(session: AsyncSession, instance: object) -> None:
    await session.refresh(instance)
