"""What a portal link shows: one app's calls, webhook deliveries (with Replay), flow URLs and
settings, through the same services as the operators' pages, each scoped here to the link's
app. Another app's call or delivery is not found, exactly like a missing one.

Never commits: the request's unit of work does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.admin import apps
from exoplane.admin.portal_links import PortalScope
from exoplane.capabilities import Capabilities
from exoplane.config import Settings
from exoplane.console import tenants, traffic
from exoplane.console.errors import CsrfRefused
from exoplane.errors import NotFound
from exoplane.integrations.calls import service as calls
from exoplane.integrations.calls.service import LiveEntry
from exoplane.models import WebhookDelivery
from exoplane.security import Vault
from exoplane.voicebot.service import audit
from exoplane.webhooks import operators
from exoplane.webhooks.service import DeliveryDetail, send_again


def check_csrf(capabilities: Capabilities, scope: PortalScope, presented: object) -> None:
    if not isinstance(presented, str) or not capabilities.verify(
        presented, "portal-csrf", scope.token_hash
    ):
        raise CsrfRefused(
            "This form's security token is missing or out of date: reload the page and "
            "submit it again"
        )


def actor(scope: PortalScope) -> str:
    """Who the audit log says acted: the link, not any operator."""
    return f"portal-link:{scope.link_id}"


# --- the app ------------------------------------------------------------------------------


async def flow_urls(
    session: AsyncSession, settings: Settings, capabilities: Capabilities, scope: PortalScope
) -> list[dict[str, str]]:
    urls = await apps.flow_urls(session, settings, capabilities, scope.customer_id, scope.app_id)
    return tenants.flow_url_rows(urls)


async def app_settings(session: AsyncSession, vault: Vault, scope: PortalScope) -> dict[str, Any]:
    """The settings, read-only: a portal changes nothing but a delivery's next attempt."""
    row = await apps.app_settings(session, vault, scope.customer_id, scope.app_id)
    return tenants.settings_form(row)


# --- deliveries ---------------------------------------------------------------------------


async def deliveries(
    session: AsyncSession, scope: PortalScope, *, cursor: int | None, limit: int
) -> tuple[Sequence[WebhookDelivery], int | None]:
    chosen = operators.delivery_filter(app_id=scope.app_id)
    return await operators.list_all_deliveries(session, chosen, cursor=cursor, limit=limit)


async def delivery(session: AsyncSession, scope: PortalScope, delivery_id: int) -> DeliveryDetail:
    """One of the app's deliveries; another app's is not found, as a missing one is."""
    detail = await operators.any_delivery(session, delivery_id)
    if detail.delivery.app_id != scope.app_id:
        raise NotFound(f"No webhook delivery {delivery_id}", code="delivery_not_found")
    return detail


async def replay_delivery(
    session: AsyncSession, scope: PortalScope, delivery_id: int
) -> DeliveryDetail:
    """Send one of the app's deliveries again now, with its event id; audited as the link."""
    detail = await send_again(session, await delivery(session, scope, delivery_id))
    audit(session, None, "webhook.replay", f"webhook_deliveries/{delivery_id}", by=actor(scope))
    return detail


# --- calls --------------------------------------------------------------------------------


async def call_log(
    session: AsyncSession,
    scope: PortalScope,
    *,
    status: str | None = None,
    direction: str | None = None,
    number: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None,
    limit: int,
) -> traffic.CallLog:
    return await traffic.call_log(
        session,
        app_id=scope.app_id,
        status=status,
        direction=direction,
        number=number,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )


async def call(session: AsyncSession, scope: PortalScope, call_sid: str) -> traffic.CallPage:
    return await traffic.call_detail(session, scope.app_id, call_sid)


async def follow(
    sessions: async_sessionmaker[AsyncSession],
    scope: PortalScope,
    call_sid: str,
    last_event_id: str | None,
) -> AsyncIterator[LiveEntry]:
    return await calls.follow_call(sessions, scope.app_id, call_sid, last_event_id=last_event_id)
