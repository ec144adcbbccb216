"""The rules of administration. Never commits: the request's unit of work does.

Every change is audited with what changed, never a secret value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.admin import repository
from exoplane.admin.errors import CustomerNotFound, LastSuperAdmin, OperatorNotFound
from exoplane.admin.schemas import CustomerUpdate, OperatorUpdate
from exoplane.db import Reader
from exoplane.errors import BadRequest
from exoplane.integrations import repository as integrations
from exoplane.integrations.repository import AppRecord
from exoplane.integrations.service import create_customer as new_customer
from exoplane.models import Customer, Operator
from exoplane.models.base import utcnow
from exoplane.security import (
    Vault,
    hash_password,
    hash_secret,
    new_api_key,
    new_secret,
    password_matches,
)
from exoplane.voicebot.auth import OperatorPrincipal
from exoplane.voicebot.service import NewOperator, audit
from exoplane.voicebot.service import create_operator as new_operator

# --- customers ----------------------------------------------------------------------------


async def list_customers(
    session: AsyncSession, *, search: str | None, cursor: str | None, limit: int
) -> tuple[Sequence[Customer], str | None]:
    """A page of customers, oldest first, and the cursor of the next page (None at the end)."""
    after = None
    if cursor is not None:
        after = await repository.get_customer(session, cursor)
        if after is None:
            raise BadRequest("cursor does not name a customer; use a next_cursor", field="cursor")
    page = await repository.customer_page(session, search=search, after=after, limit=limit + 1)
    more = len(page) > limit
    return page[:limit], page[limit - 1].id if more else None


async def get_customer(session: AsyncSession, customer_id: str) -> Customer:
    customer = await repository.get_customer(session, customer_id)
    if customer is None:
        raise CustomerNotFound(f"No customer {customer_id!r}")
    return customer


async def create_customer(
    session: AsyncSession, vault: Vault, operator: OperatorPrincipal, name: str
) -> tuple[Customer, str]:
    customer, secret = await new_customer(session, vault, name)
    audit(session, operator, "customer.create", f"customers/{customer.id}", {"name": name})
    return customer, secret


async def update_customer(
    session: AsyncSession, operator: OperatorPrincipal, customer_id: str, body: CustomerUpdate
) -> Customer:
    customer = await get_customer(session, customer_id)
    changed = body.model_dump(exclude_none=True)
    if body.name is not None:
        customer.name = body.name
    if body.disabled is not None:
        customer.disabled_at = (customer.disabled_at or utcnow()) if body.disabled else None
    if changed:
        customer.updated_at = utcnow()
        audit(session, operator, "customer.update", f"customers/{customer.id}", changed)
    await session.flush()
    return customer


async def delete_customer(
    session: AsyncSession, operator: OperatorPrincipal, customer_id: str
) -> None:
    customer = await get_customer(session, customer_id)
    await repository.delete_customer(session, customer.id)
    audit(session, operator, "customer.delete", f"customers/{customer.id}", {"name": customer.name})


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    customer_id: str
    secret: str
    previous_secret_expires_at: datetime


async def rotate_customer_secret(
    session: AsyncSession,
    vault: Vault,
    operator: OperatorPrincipal | None,
    customer_id: str,
    grace_seconds: int,
) -> RotatedSecret:
    """A new CustomerSecret; the current one keeps working for ``grace_seconds``. ``operator``
    is None from the command line."""
    customer = await get_customer(session, customer_id)
    secret = new_secret()
    now = utcnow()
    customer.previous_secret_hash = customer.secret_hash if grace_seconds > 0 else None
    customer.previous_secret_expires_at = now + timedelta(seconds=grace_seconds)
    customer.secret_hash = vault.hash_secret(secret)
    customer.updated_at = now
    audit(
        session,
        operator,
        "customer.rotate_secret",
        f"customers/{customer.id}",
        {"grace_seconds": grace_seconds},
    )
    await session.flush()
    return RotatedSecret(customer.id, secret, customer.previous_secret_expires_at)


async def customer_apps(session: AsyncSession, reader: Reader, customer_id: str) -> list[AppRecord]:
    customer = await get_customer(session, customer_id)
    return await integrations.list_apps(reader, customer.id)


# --- operators ----------------------------------------------------------------------------


async def list_operators(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> tuple[Sequence[Operator], str | None]:
    """A page of operators, oldest first, and the cursor of the next page (None at the end)."""
    after = None
    if cursor is not None:
        after = await repository.get_operator(session, cursor)
        if after is None:
            raise BadRequest("cursor does not name an operator; use a next_cursor", field="cursor")
    page = await repository.operator_page(session, after=after, limit=limit + 1)
    more = len(page) > limit
    return page[:limit], page[limit - 1].id if more else None


async def get_operator(session: AsyncSession, operator_id: str) -> Operator:
    operator = await repository.get_operator(session, operator_id)
    if operator is None:
        raise OperatorNotFound(f"No operator {operator_id!r}")
    return operator


async def create_operator(
    session: AsyncSession, by: OperatorPrincipal, email: str, role: str
) -> NewOperator:
    created = await new_operator(session, email, role)
    target = f"operators/{created.operator.id}"
    audit(session, by, "operator.create", target, {"email": created.operator.email, "role": role})
    return created


async def update_operator(
    session: AsyncSession, by: OperatorPrincipal, operator_id: str, body: OperatorUpdate
) -> Operator:
    """Change a role or disable; refused when it would leave no active super_admin."""
    operator = await get_operator(session, operator_id)
    loses_super_admin = (
        operator.role == "super_admin"
        and operator.disabled_at is None
        and (body.disabled is True or (body.role is not None and body.role != "super_admin"))
    )
    if loses_super_admin:
        remaining = set(await repository.lock_active_super_admins(session)) - {operator.id}
        if not remaining:
            raise LastSuperAdmin(
                f"{operator.email} is the last active super_admin; promote another first",
                field="disabled" if body.disabled else "role",
            )
    changed = body.model_dump(exclude_none=True)
    if body.role is not None:
        operator.role = body.role
    if body.disabled is not None:
        operator.disabled_at = (operator.disabled_at or utcnow()) if body.disabled else None
    if changed:
        audit(session, by, "operator.update", f"operators/{operator.id}", changed)
    await session.flush()
    return operator


async def rotate_api_key(session: AsyncSession, by: OperatorPrincipal, operator_id: str) -> str:
    """A new API key for the operator; the old one stops working at once."""
    operator = await get_operator(session, operator_id)
    api_key = new_api_key()
    operator.api_key_hash = hash_secret(api_key)
    audit(session, by, "operator.rotate_api_key", f"operators/{operator.id}")
    await session.flush()
    return api_key


MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 200


async def change_password(
    session: AsyncSession, by: OperatorPrincipal, current: str, new: str
) -> Operator:
    """Replace ``by``'s own password, given the current one."""
    operator = await get_operator(session, by.id)
    if not await asyncio.to_thread(password_matches, current, operator.password_hash):
        raise BadRequest("The current password is wrong", field="current_password")
    if not MIN_PASSWORD_LENGTH <= len(new) <= MAX_PASSWORD_LENGTH:
        raise BadRequest(
            f"The new password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} "
            "characters long",
            field="new_password",
        )
    if new == current:
        raise BadRequest("The new password is the current one", field="new_password")
    operator.password_hash = await asyncio.to_thread(hash_password, new)
    audit(session, by, "operator.change_password", f"operators/{operator.id}")
    await session.flush()
    return operator
