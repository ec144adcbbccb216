"""The rules of the integrations API. Never commits: the request's unit of work does."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from exoplane.config import Settings
from exoplane.db import Reader
from exoplane.errors import BadRequest
from exoplane.integrations import repository
from exoplane.integrations.auth import (
    AgentPrincipal,
    AppPrincipal,
    AppScoped,
    CustomerPrincipal,
    Principal,
    customer_disabled,
)
from exoplane.integrations.errors import (
    AccountMismatch,
    AppNotFound,
    DeviceRuleViolation,
    InvalidCredentials,
    SettingsConflict,
    UserExists,
    UserNotFound,
)
from exoplane.integrations.repository import AppRecord, UserRecord
from exoplane.integrations.schemas import (
    DEFAULT_AGENT_TOKEN_TTL_SECONDS,
    MAX_TOKEN_TTL_SECONDS,
    AgentTokenRequest,
    AppCreate,
    TokenRequest,
    UserFields,
    created_app_data,
)
from exoplane.models import App, AppSettings, Customer, User
from exoplane.models.base import utcnow
from exoplane.responses import legacy_time
from exoplane.security import Vault, hash_secret, new_id, new_secret, new_token
from exoplane.urls import STREAM, WEBHOOK, check_target
from exoplane.webhooks.signing import new_signing_secret

# --- customers ----------------------------------------------------------------------------


async def create_customer(session: AsyncSession, vault: Vault, name: str) -> tuple[Customer, str]:
    """A new customer and its secret; the secret is returned here and never again."""
    secret = new_secret()
    customer = Customer(id=new_id(), name=name, secret_hash=vault.hash_secret(secret))
    session.add(customer)
    await session.flush()
    return customer, secret


# --- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


async def issue_token(
    session: AsyncSession, reader: Reader, vault: Vault, request: TokenRequest
) -> IssuedToken:
    """A token for a customer's or an app's Id and Secret.

    The credentials are read and checked before the transaction: it only inserts the token
    (and, once, stores an unkeyed secret hash again in the keyed form).
    """
    holder = await repository.find_secret_holder(reader, request.Entity, request.Id)
    if holder is None or not await _secret_matches(session, vault, holder, request.Secret):
        raise _bad_credentials()
    if holder.customer_disabled_at is not None:
        raise customer_disabled(holder.customer_id)
    now = utcnow()
    ttl = request.TTLSeconds or MAX_TOKEN_TTL_SECONDS
    return await _insert_token(
        session,
        entity=request.Entity,
        customer_id=holder.customer_id,
        app_id=holder.id if request.Entity == "app" else None,
        user_id=None,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )


async def _insert_token(
    session: AsyncSession,
    *,
    entity: str,
    customer_id: str,
    app_id: str | None,
    user_id: int | None,
    created_at: datetime,
    expires_at: datetime,
) -> IssuedToken:
    token = new_token()
    values = {
        "id": new_id(),
        "token_hash": hash_secret(token),
        "entity": entity,
        "customer_id": customer_id,
        "app_id": app_id,
        "user_id": user_id,
        "created_at": created_at,
        "expires_at": expires_at,
    }
    try:
        await repository.insert_token(session, values)
    except IntegrityError as exc:  # its customer, app or user was deleted since it was read
        raise _bad_credentials() from exc
    return IssuedToken(token, expires_at)


async def issue_agent_token(
    session: AsyncSession, principal: AppPrincipal, request: AgentTokenRequest
) -> IssuedToken:
    """A token acting as one user of the app, for 12 hours unless asked otherwise, and never
    past 24 hours or the app token that minted it."""
    user = await get_user(session, principal, request.user_id)
    now = utcnow()
    ttl = timedelta(seconds=request.TTLSeconds or DEFAULT_AGENT_TOKEN_TTL_SECONDS)
    return await _insert_token(
        session,
        entity="agent",
        customer_id=principal.customer_id,
        app_id=principal.app_id,
        user_id=user.id,
        created_at=now,
        expires_at=min(now + ttl, principal.expires_at),
    )


def check_own_user(principal: AppScoped, user_id: str) -> None:
    """An agent token sees only its own user; the others look exactly like missing ones."""
    if isinstance(principal, AgentPrincipal) and principal.user_id != user_id:
        raise UserNotFound(f"No user {user_id!r} in this app")


def _bad_credentials() -> InvalidCredentials:
    return InvalidCredentials("Invalid Id or Secret for this Entity")


async def _secret_matches(
    session: AsyncSession, vault: Vault, holder: repository.SecretHolder, secret: str
) -> bool:
    """The current secret, or the one it replaced while that one's grace period lasts.

    A secret stored in an earlier version's unkeyed form is stored again in the keyed form
    once it has matched, in the transaction that issues the token.
    """
    current, previous = holder.secret_hash, holder.previous_secret_hash
    if vault.secret_matches(secret, current):
        matched = ("secret_hash", current)
    elif (
        previous is not None
        and holder.previous_secret_expires_at is not None
        and holder.previous_secret_expires_at > utcnow()
        and vault.secret_matches(secret, previous)
    ):
        matched = ("previous_secret_hash", previous)
    else:
        return False
    column, stored = matched
    if vault.needs_rehash(stored):
        await repository.rehash_secret(session, holder, column, stored, vault.hash_secret(secret))
    return True


def describe_token(principal: Principal) -> dict[str, Any]:
    if isinstance(principal, AgentPrincipal):
        return {
            "Entity": principal.entity,
            "Id": principal.user_id,
            "CustomerID": principal.customer_id,
            "AppID": principal.app_id,
            "UserID": principal.user_id,
            "ExpiresAt": legacy_time(principal.expires_at),
        }
    return {
        "Entity": principal.entity,
        "Id": principal.app_id if isinstance(principal, AppPrincipal) else principal.customer_id,
        "CustomerID": principal.customer_id,
        "AppID": principal.app_id if isinstance(principal, AppPrincipal) else None,
        "ExpiresAt": legacy_time(principal.expires_at),
    }


async def revoke_token(session: AsyncSession, principal: Principal) -> None:
    await repository.revoke_token(session, principal.token_id, utcnow())


async def rotate_app_secret(
    session: AsyncSession, vault: Vault, principal: AppPrincipal, grace_seconds: int
) -> dict[str, Any]:
    """Issue a new app secret; the current one keeps working for ``grace_seconds``."""
    app = await _own_app(session, principal)
    secret = new_secret()
    now = utcnow()
    app.previous_secret_hash = app.secret_hash if grace_seconds > 0 else None
    app.previous_secret_expires_at = now + timedelta(seconds=grace_seconds)
    app.secret_hash = vault.hash_secret(secret)
    app.updated_at = now
    await session.flush()
    return {
        "AppID": app.id,
        "AppSecret": secret,
        "PreviousSecretExpiresAt": legacy_time(app.previous_secret_expires_at),
    }


# --- apps ---------------------------------------------------------------------------------


async def register_app(
    session: AsyncSession, vault: Vault, principal: CustomerPrincipal, body: AppCreate
) -> dict[str, Any]:
    secret = new_secret()
    now = utcnow()
    app = App(
        id=new_id(),
        customer_id=principal.customer_id,
        name=body.AppName,
        exotel_account_sid=body.ExotelAccountSid,
        exotel_api_key_enc=vault.encrypt(body.ExotelApiKey),
        exotel_api_token_enc=vault.encrypt(body.ExotelApiToken),
        exotel_domain=body.ExotelDomain,
        is_active=body.IsActive,
        secret_hash=vault.hash_secret(secret),
        created_at=now,
        updated_at=now,
    )
    session.add(app)
    await session.flush()
    repository.add_settings(session, new_app_settings(vault, app.id, now))
    await session.flush()
    return created_app_data(app, secret, body.ExotelApiKey, body.ExotelApiToken)


async def _own_app(session: AsyncSession, principal: AppPrincipal) -> App:
    app = await repository.get_app(session, principal.app_id)
    if app is None:  # deleted while this request was in flight
        raise AppNotFound("App not found; it may have been deleted")
    return app


def get_app(principal: AppScoped) -> AppRecord:
    """The token's app, as read when the token was checked in this request."""
    return principal.app


async def list_apps(reader: Reader, principal: CustomerPrincipal) -> list[AppRecord]:
    return await repository.list_apps(reader, principal.customer_id)


async def delete_app(session: AsyncSession, principal: AppPrincipal) -> None:
    """Delete the app with its users and tokens. Irreversible."""
    await repository.delete_app(session, principal.app_id)


async def get_app_in_path(
    session: AsyncSession, principal: Principal, customer_id: str, app_id: str
) -> App:
    app = await repository.get_app(session, app_id)
    visible = (
        app is not None
        and app.customer_id == customer_id == principal.customer_id
        and (not isinstance(principal, AppPrincipal) or principal.app_id == app_id)
    )
    if app is None or not visible:
        raise AppNotFound(f"No app {app_id} for customer {customer_id}")
    return app


def check_app_path(principal: AppPrincipal, customer_id: str, app_id: str) -> None:
    """Resource paths name the app; another tenant's ids look exactly like missing ones."""
    if principal.customer_id != customer_id or principal.app_id != app_id:
        raise AppNotFound(f"No app {app_id} for customer {customer_id}")


# --- users --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatedUser:
    user: User
    sip_secret: str


async def create_users(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    principal: AppPrincipal,
    users: Sequence[UserFields],
    *,
    account_sids: Collection[str] = (),
) -> list[CreatedUser]:
    """Create every user or none: duplicates (in the request or the app) are a conflict.

    ``account_sids`` are the Exotel accounts the request claims the users belong to; each
    must be the app's own.
    """
    if account_sids:
        for account_sid in sorted(account_sids):
            if account_sid != principal.app.exotel_account_sid:
                raise AccountMismatch(
                    f"ExotelAccountSid {account_sid!r} is not this app's Exotel account",
                    field="ExotelAccountSid",
                )
    _reject_duplicates_within(users)
    existing = await repository.find_existing_users(
        session,
        principal.app_id,
        [user.user_id for user in users],
        [user.email for user in users],
    )
    if existing:
        _raise_taken(existing[0], users)

    now = utcnow()
    created: list[CreatedUser] = []
    for fields in users:
        sip_secret = secrets.token_urlsafe(18)
        user = User(
            app_id=principal.app_id,
            user_id=fields.user_id,
            name=fields.name,
            exotel_user_name=fields.exotel_user_name or fields.name,
            email=fields.email,
            phone_number=fields.phone_number,
            virtual_number=fields.virtual_number,
            role=fields.role,
            sip_username=sip_username(
                fields.user_id, principal.app.exotel_account_sid, settings.sip_domain
            ),
            sip_secret_enc=vault.encrypt(sip_secret),
            phone_enabled=True,
            sip_enabled=True,
            created_at=now,
            updated_at=now,
        )
        session.add(user)
        created.append(CreatedUser(user, sip_secret))
    await _flush_unique(session, "A user with this user id or email was just created")
    return created


# A user id made only of these is already a SIP user part that needs no escaping.
_PLAIN_SIP_USER = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9._-]")
_DIGEST_HEX = 12


def sip_user(user_id: str) -> str:
    """The SIP user (and digest user name) of an app user id.

    Exotel's browser SDK hands ``SipId``'s user part to SIP.js as it is, so it must be a plain
    token: an id that is one stays as it is; any other becomes its plain characters (others
    turned into ``_``), cut short, then ``~`` and 12 hex digits of the id's SHA-256. A plain id
    has no ``~``, and the digest tells two other ids apart, so two ids never share a SIP user.
    """
    if _PLAIN_SIP_USER.fullmatch(user_id) and user_id not in (".", ".."):
        return user_id
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_HEX]
    kept = _NOT_PLAIN.sub("_", user_id)[: 64 - 1 - _DIGEST_HEX]
    return f"{kept}~{digest}"


def sip_domain(account_sid: str, base_domain: str) -> str:
    """The SIP domain of an Exotel account, as Exotel's browser SDK builds it."""
    return f"{account_sid}.{base_domain}"


def sip_username(user_id: str, account_sid: str, base_domain: str) -> str:
    """A user's SIP identity: ``<SIP user>@<ExotelAccountSid>.<base domain>``."""
    return f"{sip_user(user_id)}@{sip_domain(account_sid, base_domain)}"


def _reject_duplicates_within(users: Sequence[UserFields]) -> None:
    seen_ids: set[str] = set()
    seen_emails: set[str] = set()
    for user in users:
        if user.user_id in seen_ids:
            raise UserExists(f"User id {user.user_id!r} appears twice in the request")
        if user.email in seen_emails:
            raise UserExists(f"Email {user.email!r} appears twice in the request")
        seen_ids.add(user.user_id)
        seen_emails.add(user.email)


def _raise_taken(taken: User, wanted: Sequence[UserFields]) -> None:
    if any(user.user_id == taken.user_id for user in wanted):
        raise UserExists(f"User id {taken.user_id!r} is already mapped in this app")
    raise UserExists(f"Email {taken.email!r} is already used by user {taken.user_id!r}")


async def _flush_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise UserExists(message) from exc


async def get_user(session: AsyncSession, principal: AppScoped, user_id: str) -> User:
    check_own_user(principal, user_id)
    return _found(await repository.get_user(session, principal.app_id, user_id), user_id)


async def read_user(reader: Reader, principal: AppScoped, user_id: str) -> UserRecord:
    """One user, read outside any transaction (for answers that change nothing)."""
    check_own_user(principal, user_id)
    return _found(await repository.read_user(reader, principal.app_id, user_id), user_id)


_User = TypeVar("_User", User, UserRecord)


def _found(user: _User | None, user_id: str) -> _User:
    if user is None:
        raise UserNotFound(f"No user {user_id!r} in this app")
    return user


async def list_users(
    reader: Reader, principal: AppPrincipal, *, after: int, limit: int
) -> tuple[list[UserRecord], int | None]:
    """A page of users in creation order, and the cursor of the next page (None at the end)."""
    rows = await repository.list_users(reader, principal.app_id, after_id=after, limit=limit + 1)
    page = rows[:limit]
    next_cursor = page[-1].id if len(rows) > limit else None
    return page, next_cursor


async def update_user(
    session: AsyncSession,
    principal: AppPrincipal,
    user_id: str,
    changes: dict[str, Any],
    *,
    rename_display_name: bool = False,
) -> User:
    """Apply ``changes``. With ``rename_display_name`` (the resource API, which has no
    display-name field), a new name also becomes the display name the SDK shows, unless the
    two had been set apart through ``/usermapping``."""
    user = await get_user(session, principal, user_id)
    if "email" in changes and changes["email"] != user.email:
        clash = await repository.find_existing_users(
            session, principal.app_id, [], [changes["email"]]
        )
        if clash:
            _raise_taken(clash[0], [])
    if rename_display_name and "name" in changes and user.exotel_user_name == user.name:
        changes = {**changes, "exotel_user_name": changes["name"]}
    for name, value in changes.items():
        if value is None and name in ("name", "email", "role", "exotel_user_name"):
            continue  # required fields: an explicit null leaves them as they are
        setattr(user, name, value)
    user.updated_at = utcnow()
    await _flush_unique(session, "Another user already has this email")
    return user


async def delete_user(session: AsyncSession, principal: AppPrincipal, user_id: str) -> None:
    deleted = await repository.delete_users(session, principal.app_id, [user_id])
    if deleted == 0:
        raise UserNotFound(f"No user {user_id!r} in this app")


async def delete_users(
    session: AsyncSession, principal: AppPrincipal, user_ids: Sequence[str]
) -> int:
    return await repository.delete_users(session, principal.app_id, user_ids)


async def delete_all_users(session: AsyncSession, principal: AppPrincipal) -> int:
    return await repository.delete_all_users(session, principal.app_id)


def sip_secret_of(vault: Vault, user: User | UserRecord) -> str:
    return vault.decrypt(user.sip_secret_enc)


# --- app settings (seed 02) ---------------------------------------------------------------

# Exotel-compatible keys of /app_setting and the setting each one is (SPEC §4.5).
SETTING_KEYS = {
    "popup": "popup_url",
    "missedCall": "missed_call_url",
    "callback": "callback_url",
    "record": "recording_enabled",
    "streaming": "streaming_url",
}


def new_app_settings(vault: Vault, app_id: str, now: datetime) -> AppSettings:
    return AppSettings(
        app_id=app_id,
        recording_enabled=False,
        streaming_enabled=False,
        extra_json="{}",
        webhook_secret_enc=vault.encrypt(new_signing_secret()),
        version=1,
        created_at=now,
        updated_at=now,
    )


async def app_settings(session: AsyncSession, vault: Vault, app_id: str) -> AppSettings:
    """The app's settings row, created on first use for apps that predate settings."""
    row = await repository.get_settings(session, app_id)
    if row is None:
        if await repository.get_app(session, app_id) is None:
            raise AppNotFound("App not found; it may have been deleted")
        row = new_app_settings(vault, app_id, utcnow())
        repository.add_settings(session, row)
        await session.flush()
    return row


def etag(row: AppSettings) -> str:
    return f'"{row.version}"'


async def update_settings(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    principal: AppPrincipal,
    changes: dict[str, Any],
    if_match: str | None,
) -> AppSettings:
    """Partial update: fields not sent keep their value. A stale ``If-Match`` is a 409."""
    row = await app_settings(session, vault, principal.app_id)
    if if_match is not None and if_match.strip() not in (etag(row), "*"):
        raise SettingsConflict(
            f"The settings changed since you read them (now {etag(row)}, you sent "
            f"{if_match.strip()}); read them again and resend",
        )
    for field, value in changes.items():
        if isinstance(value, str):
            await _check_setting_url(field, value, settings)
        setattr(row, field, value)
    row.updated_at = utcnow()
    try:
        await session.flush()
    except StaleDataError as exc:
        raise SettingsConflict("The settings were changed by another request; retry") from exc
    return row


async def _check_setting_url(field: str, value: str, settings: Settings) -> None:
    kind = STREAM if field == "streaming_url" else WEBHOOK
    await check_target(value, field, kind, allow_private=settings.allow_private_networks)


async def set_app_setting(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    principal: AppPrincipal,
    key: str,
    value: str,
) -> AppSettings:
    """``POST /app_setting``: known keys map onto the settings, others are kept as given."""
    field = SETTING_KEYS.get(key)
    if field is None:
        row = await app_settings(session, vault, principal.app_id)
        extra = json.loads(row.extra_json)
        extra[key] = value
        row.extra_json = json.dumps(extra)
        row.updated_at = utcnow()
        await session.flush()
        return row
    typed: Any = value.strip() or None
    if field == "recording_enabled":
        if value.strip().lower() not in ("true", "false"):
            raise BadRequest(
                f'The value of \'record\' must be "true" or "false"; got {value!r}',
                field="Value",
            )
        typed = value.strip().lower() == "true"
    return await update_settings(session, vault, settings, principal, {field: typed}, None)


def app_setting_items(row: AppSettings, principal: AppScoped) -> list[dict[str, Any]]:
    """Every set key in Exotel's shape, with both name pairs the SDKs read."""
    values: dict[str, str] = {}
    for key, field in SETTING_KEYS.items():
        value = getattr(row, field)
        if isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif value:
            values[key] = value
    values.update(json.loads(row.extra_json))
    return [
        {
            "CustomerID": principal.customer_id,
            "AppID": principal.app_id,
            "Key": key,
            "Value": value,
            "SettingKey": key,
            "SettingVal": value,
        }
        for key, value in values.items()
    ]


# --- devices (seed 03) --------------------------------------------------------------------


async def set_devices(
    session: AsyncSession,
    principal: AppPrincipal,
    user_id: str,
    *,
    phone: bool | None,
    sip: bool | None,
) -> User:
    user = await get_user(session, principal, user_id)
    if phone is None and sip is None:
        raise BadRequest("Send 'phone', 'sip' or both, as true or false", field="phone")
    changed = await repository.set_devices(session, user.id, phone=phone, sip=sip, when=utcnow())
    if not changed:
        raise DeviceRuleViolation(
            "At least one device must stay enabled: this change would disable both the "
            "phone and the SIP device"
        )
    await repository.refresh(session, user)
    return user


async def select_device(
    session: AsyncSession, principal: AppPrincipal, user_id: str, device: str, on: bool
) -> User:
    """``PUT /device``: Exotel rings one device, so turning one on turns the other off, and
    turning one off turns the other on. Integrators' phone-or-browser toggles send only the
    half that is on."""
    user = await get_user(session, principal, user_id)
    phone = on if device == "phone" else not on
    if phone and not user.phone_number:
        raise DeviceRuleViolation(
            f"User {user_id!r} has no AgentNumber, so the phone cannot be the device calls "
            "ring on; set an AgentNumber first"
        )
    await repository.set_devices(session, user.id, phone=phone, sip=not phone, when=utcnow())
    await repository.refresh(session, user)
    return user


async def report_sip_registration(
    session: AsyncSession,
    settings: Settings,
    principal: AppPrincipal,
    user_id: str,
    *,
    registered: bool,
    expires_in: int | None,
) -> User:
    """A registrar's report: registered until the TTL runs out, unless renewed."""
    user = await get_user(session, principal, user_id)
    now = utcnow()
    ttl = expires_in or settings.sip_registration_ttl_seconds
    until = now + timedelta(seconds=ttl) if registered else None
    await repository.set_sip_registration(session, user.id, until, now if registered else None)
    await repository.refresh(session, user)
    return user


async def rotate_webhook_secret(
    session: AsyncSession, vault: Vault, app_id: str, grace_seconds: int
) -> str:
    """Sign with a new secret from now on; the old one also signs during the grace period."""
    row = await app_settings(session, vault, app_id)
    secret = new_signing_secret()
    now = utcnow()
    row.previous_webhook_secret_enc = row.webhook_secret_enc if grace_seconds > 0 else None
    row.previous_webhook_secret_expires_at = now + timedelta(seconds=grace_seconds)
    row.webhook_secret_enc = vault.encrypt(secret)
    row.updated_at = now
    await session.flush()
    return secret
