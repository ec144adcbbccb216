"""A customer's app as a super_admin administers it: its details, flow URLs, settings, webhook
signing secret and agents (the app's users), and importing agents from a CSV file.

Every function acts on the app through the same integrations services the app's own token
reaches (so the same rules and messages apply), after checking the app is the customer's, and
audits what it changed, never a secret value. Never commits: the request's unit of work does.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.admin import repository
from exoplane.capabilities import Capabilities
from exoplane.config import Settings
from exoplane.errors import BadRequest, describe_validation_errors
from exoplane.integrations import repository as integrations_repository
from exoplane.integrations import service as integrations
from exoplane.integrations.auth import AppPrincipal
from exoplane.integrations.calls import service as calls
from exoplane.integrations.errors import AppNotFound
from exoplane.integrations.repository import AppRecord
from exoplane.integrations.schemas import UserFields, UserMappingIn
from exoplane.models import App, AppSettings, User
from exoplane.models.base import utcnow
from exoplane.security import Vault
from exoplane.voicebot.auth import OperatorPrincipal
from exoplane.voicebot.service import audit

# --- the app ------------------------------------------------------------------------------


async def get_app(session: AsyncSession, customer_id: str, app_id: str) -> App:
    """The customer's app; another customer's looks exactly like a missing one."""
    app = await integrations_repository.get_app(session, app_id)
    if app is None or app.customer_id != customer_id:
        raise AppNotFound(f"No app {app_id} for customer {customer_id}")
    return app


async def as_app(session: AsyncSession, customer_id: str, app_id: str) -> AppPrincipal:
    """The app, as the integrations services know an app that acts on itself. No token is
    involved: the operator's own authentication was checked before this."""
    app = await get_app(session, customer_id, app_id)
    record = AppRecord(
        app.id,
        app.customer_id,
        app.name,
        app.exotel_account_sid,
        app.exotel_domain,
        app.is_active,
        app.created_at,
        app.updated_at,
    )
    return AppPrincipal(app.customer_id, app.id, "", utcnow(), record)


async def flow_urls(
    session: AsyncSession,
    settings: Settings,
    capabilities: Capabilities,
    customer_id: str,
    app_id: str,
) -> dict[str, Any]:
    app = await get_app(session, customer_id, app_id)
    return calls.flow_urls(settings, capabilities, app.id)


# --- settings and the signing secret ------------------------------------------------------


async def app_settings(
    session: AsyncSession, vault: Vault, customer_id: str, app_id: str
) -> AppSettings:
    app = await get_app(session, customer_id, app_id)
    return await integrations.app_settings(session, vault, app.id)


async def update_settings(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    changes: dict[str, Any],
    if_match: str | None,
) -> AppSettings:
    """Seed 02's partial update, with its URL checks and its 409 on a stale ``If-Match``."""
    principal = await as_app(session, customer_id, app_id)
    row = await integrations.update_settings(session, vault, settings, principal, changes, if_match)
    audit(session, operator, "app.update_settings", _target(principal), {"fields": sorted(changes)})
    return row


async def signing_secret(
    session: AsyncSession,
    vault: Vault,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
) -> str:
    """The webhook signing secret, revealed on request; the reveal itself is audited."""
    row = await app_settings(session, vault, customer_id, app_id)
    audit(session, operator, "app.reveal_webhook_secret", f"customers/{customer_id}/apps/{app_id}")
    return vault.decrypt(row.webhook_secret_enc)


async def rotate_signing_secret(
    session: AsyncSession,
    vault: Vault,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    grace_seconds: int,
) -> str:
    app = await get_app(session, customer_id, app_id)
    secret = await integrations.rotate_webhook_secret(session, vault, app.id, grace_seconds)
    target = f"customers/{customer_id}/apps/{app_id}"
    audit(session, operator, "app.rotate_webhook_secret", target, {"grace_seconds": grace_seconds})
    return secret


# --- agents -------------------------------------------------------------------------------


def _target(principal: AppPrincipal, user_id: str | None = None) -> str:
    target = f"customers/{principal.customer_id}/apps/{principal.app_id}"
    return f"{target}/agents/{user_id}" if user_id is not None else target


async def list_agents(
    session: AsyncSession,
    customer_id: str,
    app_id: str,
    *,
    search: str | None,
    cursor: int,
    limit: int,
) -> tuple[Sequence[User], int | None]:
    """A page of the app's agents in creation order, optionally only those whose user id,
    name, email or phone number contains ``search``; the next page's cursor."""
    app = await get_app(session, customer_id, app_id)
    rows = await repository.agent_page(
        session, app.id, search=search.strip() if search else None, after=cursor, limit=limit + 1
    )
    page = rows[:limit]
    return page, page[-1].id if len(rows) > limit else None


async def get_agent(session: AsyncSession, customer_id: str, app_id: str, user_id: str) -> User:
    principal = await as_app(session, customer_id, app_id)
    return await integrations.get_user(session, principal, user_id)


async def create_agent(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    fields: UserFields,
) -> User:
    principal = await as_app(session, customer_id, app_id)
    created = await integrations.create_users(session, vault, settings, principal, [fields])
    audit(session, operator, "agent.create", _target(principal, fields.user_id))
    return created[0].user


async def update_agent(
    session: AsyncSession,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    user_id: str,
    changes: dict[str, Any],
) -> User:
    principal = await as_app(session, customer_id, app_id)
    user = await integrations.update_user(
        session, principal, user_id, changes, rename_display_name=True
    )
    audit(
        session, operator, "agent.update", _target(principal, user_id), {"fields": sorted(changes)}
    )
    return user


async def delete_agent(
    session: AsyncSession,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    user_id: str,
) -> None:
    principal = await as_app(session, customer_id, app_id)
    await integrations.delete_user(session, principal, user_id)
    audit(session, operator, "agent.delete", _target(principal, user_id))


async def set_agent_devices(
    session: AsyncSession,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    user_id: str,
    *,
    phone: bool | None,
    sip: bool | None,
) -> User:
    """Seed 03's switches: the last enabled device cannot be turned off (400
    ``device_rule_violation``)."""
    principal = await as_app(session, customer_id, app_id)
    user = await integrations.set_devices(session, principal, user_id, phone=phone, sip=sip)
    changed = {name: value for name, value in (("phone", phone), ("sip", sip)) if value is not None}
    audit(session, operator, "agent.set_devices", _target(principal, user_id), changed)
    return user


def last_device(user: User) -> str | None:
    """The one device still enabled (``phone`` or ``sip``), which cannot be turned off; None
    while both are on."""
    if user.phone_enabled and not user.sip_enabled:
        return "phone"
    if user.sip_enabled and not user.phone_enabled:
        return "sip"
    return None


# --- importing agents from CSV ------------------------------------------------------------

MAX_IMPORT_ROWS = 1000
IMPORT_COLUMNS = (
    "AppUserId",
    "AppUsername",
    "Email",
    "ExotelAccountSid",
    "ExotelUserName",
    "AgentNumber",
    "VirtualNumber",
    "Role",
)
REQUIRED_COLUMNS = ("AppUserId", "AppUsername", "Email", "VirtualNumber")


@dataclass(frozen=True, slots=True)
class RowResult:
    """One data row of the file (``row`` counts the header as row 1, as a spreadsheet does)."""

    row: int
    user_id: str
    ok: bool
    field: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows: list[RowResult] = field(default_factory=list)
    imported: int = 0

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if not row.ok)


def _read_csv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    columns = [name.strip() for name in reader.fieldnames or []]
    if not columns:
        raise BadRequest("The file is empty: its first line names the columns", field="file")
    unknown = [name for name in columns if name not in IMPORT_COLUMNS]
    if unknown:
        raise BadRequest(
            f"Unknown column {unknown[0]!r}; the columns are {', '.join(IMPORT_COLUMNS)}",
            field="file",
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise BadRequest(f"The column {missing[0]!r} is required", field="file")
    reader.fieldnames = columns
    rows: list[dict[str, str]] = []
    try:
        for values in reader:
            if None in values:
                raise BadRequest(
                    f"Row {reader.line_num} has more cells than there are columns", field="file"
                )
            rows.append({name: (value or "").strip() for name, value in values.items()})
            if len(rows) > MAX_IMPORT_ROWS:
                raise BadRequest(f"At most {MAX_IMPORT_ROWS} agents a file; split it", field="file")
    except csv.Error as exc:
        raise BadRequest(f"Not a CSV file: {exc}", field="file") from None
    if not rows:
        raise BadRequest("The file has a header but no agents", field="file")
    return rows


def _validate_row(values: dict[str, str], account_sid: str) -> UserFields:
    present = {name: value for name, value in values.items() if value}
    present.setdefault("ExotelAccountSid", account_sid)
    present.setdefault("ExotelUserName", present.get("AppUsername", ""))
    item = UserMappingIn.model_validate(present)
    if item.ExotelAccountSid != account_sid:
        raise BadRequest(
            f"ExotelAccountSid {item.ExotelAccountSid!r} is not this app's Exotel account",
            field="ExotelAccountSid",
        )
    return item.fields()


async def import_agents(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    text: str,
) -> ImportReport:
    """Every row of the CSV becomes an agent, or none does.

    Each row is checked (its fields as ``POST /usermapping`` checks them, then its user id and
    email against the other rows and the app's agents) before anything is written; when any
    row is refused the report says why for each row and nothing is imported.
    """
    principal = await as_app(session, customer_id, app_id)
    rows = _read_csv(text)
    results: list[RowResult] = []
    valid: list[tuple[int, UserFields]] = []
    seen_ids: dict[str, int] = {}
    seen_emails: dict[str, int] = {}
    for number, values in enumerate(rows, start=2):
        user_id = values.get("AppUserId", "")
        try:
            fields = _validate_row(values, principal.app.exotel_account_sid)
        except ValidationError as exc:
            errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
            message, field_name = describe_validation_errors(errors)
            results.append(RowResult(number, user_id, False, field_name, message))
            continue
        except BadRequest as exc:
            results.append(RowResult(number, user_id, False, exc.field, exc.message))
            continue
        if fields.user_id in seen_ids:
            message = f"AppUserId {fields.user_id!r} is also on row {seen_ids[fields.user_id]}"
            results.append(RowResult(number, user_id, False, "AppUserId", message))
        elif fields.email in seen_emails:
            message = f"Email {fields.email!r} is also on row {seen_emails[fields.email]}"
            results.append(RowResult(number, user_id, False, "Email", message))
        else:
            results.append(RowResult(number, user_id, True))
            valid.append((number, fields))
        seen_ids.setdefault(fields.user_id, number)
        seen_emails.setdefault(fields.email, number)

    existing = await integrations_repository.find_existing_users(
        session,
        principal.app_id,
        [fields.user_id for _, fields in valid],
        [fields.email for _, fields in valid],
    )
    taken_ids = {user.user_id: user for user in existing}
    taken_emails = {user.email: user for user in existing}
    by_row = {result.row: index for index, result in enumerate(results)}
    for number, fields in valid:
        refusal: tuple[str, str] | None = None
        if fields.user_id in taken_ids:
            refusal = ("AppUserId", f"AppUserId {fields.user_id!r} is already an agent of this app")
        elif fields.email in taken_emails:
            other = taken_emails[fields.email].user_id
            refusal = ("Email", f"Email {fields.email!r} is already used by agent {other!r}")
        if refusal is not None:
            results[by_row[number]] = RowResult(number, fields.user_id, False, *refusal)

    report = ImportReport(results)
    if report.failed:
        return report
    await integrations.create_users(
        session, vault, settings, principal, [fields for _, fields in valid]
    )
    audit(session, operator, "agent.import", _target(principal), {"imported": len(valid)})
    return ImportReport(results, imported=len(valid))
