"""All SQL of the administration API: customers, operators and portal links, listed and
changed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.db import Reader
from exoplane.models import App, Customer, Operator, PortalLink, User


async def customer_page(
    session: AsyncSession, *, search: str | None, after: Customer | None, limit: int
) -> Sequence[Customer]:
    """Oldest first; ``search`` matches anywhere in the name, ignoring case."""
    query = select(Customer).order_by(Customer.created_at, Customer.id).limit(limit)
    if search:
        query = query.where(func.lower(Customer.name).contains(search.lower(), autoescape=True))
    if after is not None:
        query = query.where(
            or_(
                Customer.created_at > after.created_at,
                and_(Customer.created_at == after.created_at, Customer.id > after.id),
            )
        )
    return (await session.scalars(query)).all()


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


async def delete_customer(session: AsyncSession, customer_id: str) -> None:
    # Its apps, their users, settings, calls and webhooks, and every token go with it
    # (ON DELETE CASCADE, enforced on both backends).
    await session.execute(delete(Customer).where(Customer.id == customer_id))


async def operator_page(
    session: AsyncSession, *, after: Operator | None, limit: int
) -> Sequence[Operator]:
    query = select(Operator).order_by(Operator.created_at, Operator.id).limit(limit)
    if after is not None:
        query = query.where(
            or_(
                Operator.created_at > after.created_at,
                and_(Operator.created_at == after.created_at, Operator.id > after.id),
            )
        )
    return (await session.scalars(query)).all()


async def get_operator(session: AsyncSession, operator_id: str) -> Operator | None:
    return await session.get(Operator, operator_id)


async def lock_active_super_admins(session: AsyncSession) -> Sequence[str]:
    """The ids of the active super_admins, locked (PostgreSQL) until the transaction ends,
    so two concurrent demotions cannot both see the other as the one that remains."""
    query = (
        select(Operator.id)
        .where(Operator.role == "super_admin", Operator.disabled_at.is_(None))
        .with_for_update()
    )
    return (await session.scalars(query)).all()


async def agent_page(
    session: AsyncSession, app_id: str, *, search: str | None, after: int, limit: int
) -> Sequence[User]:
    """An app's users in creation order; ``search`` matches anywhere in the user id, name,
    email or phone number, ignoring case."""
    query = (
        select(User).where(User.app_id == app_id, User.id > after).order_by(User.id).limit(limit)
    )
    if search:
        wanted = search.lower()
        query = query.where(
            or_(
                *(
                    func.lower(column).contains(wanted, autoescape=True)
                    for column in (User.user_id, User.name, User.email, User.phone_number)
                )
            )
        )
    return (await session.scalars(query)).all()


# --- portal links -------------------------------------------------------------------------


async def app_portal_links(session: AsyncSession, app_id: str) -> Sequence[PortalLink]:
    """Newest first."""
    query = (
        select(PortalLink)
        .where(PortalLink.app_id == app_id)
        .order_by(PortalLink.created_at.desc(), PortalLink.id)
    )
    return (await session.scalars(query)).all()


async def get_portal_link(session: AsyncSession, link_id: str) -> PortalLink | None:
    return await session.get(PortalLink, link_id)


_PORTAL_LINK = (
    select(
        PortalLink.id,
        PortalLink.app_id,
        App.customer_id,
        App.name,
        PortalLink.expires_at,
        PortalLink.revoked_at,
    )
    .join(App, App.id == PortalLink.app_id)
    .where(PortalLink.token_hash == bindparam("token_hash"))
)


async def portal_link_of(
    reader: Reader, token_hash: str
) -> tuple[str, str, str, str, datetime, datetime | None] | None:
    """(link id, app id, customer id, app name, expires_at, revoked_at) of the link with
    this token, read outside any transaction: it runs on every portal request."""
    row = await reader.first(_PORTAL_LINK, {"token_hash": token_hash})
    return (row[0], row[1], row[2], row[3], row[4], row[5]) if row else None
