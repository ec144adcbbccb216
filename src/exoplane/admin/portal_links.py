"""Per-app portal links: a super_admin mints a signed, expiring, revocable link that shows one
app's calls, webhook deliveries, flow URLs and settings to whoever holds it (the integrator's
own team), and nothing else.

Only a hash of a link's random token is stored; the token is shown once, when the link is
minted. A link is refused from the moment it expires or is revoked, on its very next request.
Never commits: the request's unit of work does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.admin import repository
from exoplane.admin.apps import get_app
from exoplane.capabilities import Capabilities
from exoplane.config import Settings
from exoplane.db import Reader
from exoplane.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from exoplane.models import PortalLink
from exoplane.models.base import utcnow
from exoplane.security import hash_secret, new_id, new_token
from exoplane.voicebot.auth import OperatorPrincipal
from exoplane.voicebot.service import audit

# Where a link is opened: ``PORTAL_OPEN/<token>`` trades the token for the portal's cookie
# (exoplane.console.portal_routes).
PORTAL_OPEN = "/console/portal/open"


class PortalLinkNotFound(NotFound):
    code = "portal_link_not_found"


class PortalLinkRefused(Forbidden):
    code = "portal_link_refused"


class PortalLinkExpired(PortalLinkRefused):
    code = "portal_link_expired"


class PortalLinkRevoked(PortalLinkRefused):
    code = "portal_link_revoked"


class PortalLinkRequired(Unauthorized):
    code = "portal_link_required"


@dataclass(frozen=True, slots=True)
class MintedLink:
    link: PortalLink
    token: str
    url: str


@dataclass(frozen=True, slots=True)
class PortalScope:
    """What a portal request may see: one app, through one link."""

    link_id: str
    app_id: str
    customer_id: str
    app_name: str
    expires_at: datetime
    token_hash: str
    csrf_token: str


def link_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}{PORTAL_OPEN}/{token}"


def status_of(link: PortalLink, now: datetime) -> str:
    """active, expired or revoked."""
    if link.revoked_at is not None:
        return "revoked"
    return "expired" if link.expires_at <= now else "active"


def _target(customer_id: str, app_id: str, link_id: str) -> str:
    return f"customers/{customer_id}/apps/{app_id}/portal-links/{link_id}"


# --- super_admins: minting, listing, revoking -------------------------------------------------


async def mint_link(
    session: AsyncSession,
    settings: Settings,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    expires_in_seconds: int | None,
) -> MintedLink:
    """A new link to the app, lasting ``expires_in_seconds`` (the configured default when
    None, at most the configured maximum)."""
    app = await get_app(session, customer_id, app_id)
    if expires_in_seconds is not None and expires_in_seconds > settings.portal_link_max_seconds:
        raise BadRequest(
            f"A portal link lasts at most {settings.portal_link_max_seconds} seconds",
            field="expires_in_seconds",
        )
    lasts = expires_in_seconds or settings.portal_link_default_seconds
    token = new_token()
    now = utcnow()
    link = PortalLink(
        id=new_id(),
        app_id=app.id,
        token_hash=hash_secret(token),
        created_by=operator.email,
        created_at=now,
        expires_at=now + timedelta(seconds=lasts),
        revoked_at=None,
    )
    session.add(link)
    audit(
        session,
        operator,
        "app.portal_link_minted",
        _target(customer_id, app.id, link.id),
        {"expires_in_seconds": lasts},
    )
    await session.flush()
    return MintedLink(link, token, link_url(settings, token))


async def list_links(session: AsyncSession, customer_id: str, app_id: str) -> Sequence[PortalLink]:
    """Every link to the app, newest first, revoked and expired ones too."""
    app = await get_app(session, customer_id, app_id)
    return await repository.app_portal_links(session, app.id)


async def revoke_link(
    session: AsyncSession,
    operator: OperatorPrincipal,
    customer_id: str,
    app_id: str,
    link_id: str,
) -> PortalLink:
    """The link opens nothing from now on, whoever holds it."""
    app = await get_app(session, customer_id, app_id)
    link = await repository.get_portal_link(session, link_id)
    if link is None or link.app_id != app.id:
        raise PortalLinkNotFound(f"No portal link {link_id} for app {app_id}")
    if link.revoked_at is not None:
        raise Conflict("This portal link is already revoked", code="portal_link_revoked")
    link.revoked_at = utcnow()
    audit(session, operator, "app.portal_link_revoked", _target(customer_id, app.id, link.id))
    await session.flush()
    return link


# --- whoever holds a link ---------------------------------------------------------------------


def portal_csrf_token(capabilities: Capabilities, token_hash: str) -> str:
    """The portal's forms' token, bound to the link (so worthless to anyone without it)."""
    return capabilities.sign("portal-csrf", token_hash)


async def scope_of(reader: Reader, capabilities: Capabilities, token: str | None) -> PortalScope:
    """The app the link with ``token`` shows, unless it has expired or been revoked."""
    if not token:
        raise PortalLinkRequired("Open the portal link you were given: this page needs it")
    token_hash = hash_secret(token)
    found = await repository.portal_link_of(reader, token_hash)
    if found is None:
        raise PortalLinkNotFound(
            "This portal link is not valid: ask whoever gave it to you for a new one"
        )
    link_id, app_id, customer_id, app_name, expires_at, revoked_at = found
    if revoked_at is not None:
        raise PortalLinkRevoked(
            "This portal link has been revoked: ask whoever gave it to you for a new one"
        )
    if expires_at <= utcnow():
        raise PortalLinkExpired(
            "This portal link has expired: ask whoever gave it to you for a new one"
        )
    return PortalScope(
        link_id,
        app_id,
        customer_id,
        app_name,
        expires_at,
        token_hash,
        portal_csrf_token(capabilities, token_hash),
    )
