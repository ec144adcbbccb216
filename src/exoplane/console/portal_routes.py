"""``/console/portal``: what a per-app portal link shows to whoever holds it.

Opening ``/console/portal/open/<token>`` trades the link's token for a cookie scoped to
``/console/portal`` and sends the browser on to the portal, so the token is in the address
bar, history and any Referer for that one redirect only (and the access log redacts it).
Every portal request checks the link again: once it expires or is revoked, it opens nothing.

The pages call the services the operators' pages call, scoped to the link's app by
``exoplane.console.portal``; their twins are the operators' routes named in each docstring.
Nothing else of the console answers to a portal cookie.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from exoplane.admin import portal_links
from exoplane.admin.portal_links import PortalScope
from exoplane.console import portal, traffic
from exoplane.console.auth import SAFE_METHODS
from exoplane.console.routes import FLASH
from exoplane.console.templates import PORTAL, live_page_response, redirect, render
from exoplane.db import Session
from exoplane.inputs import Int64
from exoplane.integrations.calls.endpoints import LastEventId
from exoplane.models.base import utcnow
from exoplane.state import AppState, State
from exoplane.webhooks.schemas import attempt_view, operator_delivery_view

router = APIRouter(prefix=PORTAL, include_in_schema=False)

PORTAL_COOKIE = "exoplane_portal"
PAGE_SIZE = 50
CallSid = Annotated[str, Path(max_length=100)]
Token = Annotated[str, Path(min_length=1, max_length=100)]


async def portal_scope(request: Request, state: State) -> PortalScope:
    scope = await portal_links.scope_of(
        state.reader, state.capabilities, request.cookies.get(PORTAL_COOKIE)
    )
    if request.method not in SAFE_METHODS:
        form = await request.form()
        portal.check_csrf(state.capabilities, scope, form.get("csrf_token"))
    return scope


Portal = Annotated[PortalScope, Depends(portal_scope)]


def portal_page(request: Request, scope: PortalScope, template: str, **context: Any) -> Response:
    return render(
        template,
        request=request,
        operator=None,
        portal=scope,
        base=PORTAL,
        csrf_token=scope.csrf_token,
        flash=FLASH.get(request.query_params.get("done", "")),
        **context,
    )


@router.get("/open/{token}")
async def open_link(state: State, token: Token) -> Response:
    """Check the link, then hand its token to the browser as the portal's cookie."""
    scope = await portal_links.scope_of(state.reader, state.capabilities, token)
    response = redirect(PORTAL)
    response.set_cookie(
        PORTAL_COOKIE,
        token,
        max_age=max(1, int((scope.expires_at - utcnow()).total_seconds())),
        path=PORTAL,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(state),
    )
    return response


def _cookie_secure(state: AppState) -> bool:
    return state.settings.public_url.startswith("https://")


@router.get("")
async def overview(request: Request, state: State, session: Session, scope: Portal) -> Response:
    """The app's flow URLs and settings (read-only); twins: ``GET
    /api/v1/customers/{customer_id}/apps/{app_id}/flow-urls`` and ``.../settings``."""
    return portal_page(
        request,
        scope,
        "portal.html",
        title=scope.app_name,
        flow_urls=await portal.flow_urls(session, state.settings, state.capabilities, scope),
        settings=await portal.app_settings(session, state.vault, scope),
    )


@router.get("/webhooks")
async def webhooks(
    request: Request,
    session: Session,
    scope: Portal,
    cursor: Annotated[Int64 | None, Query(ge=1)] = None,
) -> Response:
    """The app's deliveries, newest first; twin: ``GET /api/v1/webhooks/deliveries?app=``."""
    rows, next_cursor = await portal.deliveries(session, scope, cursor=cursor, limit=PAGE_SIZE)
    return portal_page(
        request,
        scope,
        "portal_webhooks.html",
        title="Webhooks",
        deliveries=[operator_delivery_view(row) for row in rows],
        next_cursor=next_cursor,
        first_page=cursor is None,
        filters={},
    )


@router.get("/webhooks/deliveries/{delivery_id}")
async def delivery(
    request: Request, session: Session, scope: Portal, delivery_id: Int64
) -> Response:
    """One of the app's deliveries with every attempt; twin: ``GET
    /api/v1/webhooks/deliveries/{delivery_id}``."""
    detail = await portal.delivery(session, scope, delivery_id)
    return portal_page(
        request,
        scope,
        "delivery.html",
        title=f"Delivery {delivery_id}",
        delivery=detail.delivery,
        payload=traffic.pretty_payload(detail.event.payload),
        attempts=[attempt_view(attempt) for attempt in detail.attempts],
    )


@router.post("/webhooks/deliveries/{delivery_id}/replay")
async def replay_delivery(session: Session, scope: Portal, delivery_id: Int64) -> Response:
    """Send one of the app's deliveries again; twin: ``POST
    /api/v1/webhooks/deliveries/{delivery_id}/replay``."""
    await portal.replay_delivery(session, scope, delivery_id)
    return redirect(f"{PORTAL}/webhooks/deliveries/{delivery_id}?done=delivery_replayed")


@router.get("/calls")
async def call_log(
    request: Request,
    session: Session,
    scope: Portal,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """The app's calls, newest first; twin: ``GET /api/v1/apps/{app_id}/calls``."""
    found = await portal.call_log(session, scope, cursor=cursor or None, limit=PAGE_SIZE)
    return portal_page(
        request,
        scope,
        "portal_calls.html",
        title="Calls",
        calls=found.calls,
        next_cursor=found.next_cursor,
        first_page=cursor is None,
        filters={},
    )


@router.get("/calls/{call_sid}")
async def call(request: Request, session: Session, scope: Portal, call_sid: CallSid) -> Response:
    """One of the app's calls with its timeline, live while it lasts; twin: ``GET
    /api/v1/apps/{app_id}/calls/{call_sid}``."""
    found = await portal.call(session, scope, call_sid)
    return portal_page(
        request,
        scope,
        "call_timeline.html",
        title=f"Call {call_sid}",
        call=found,
        steps=traffic.steps(found.timeline),
        summary=traffic.summary(found.timeline),
    )


@router.get("/calls/{call_sid}/events")
async def call_events(
    state: State, scope: Portal, call_sid: CallSid, last_event_id: LastEventId = None
) -> Response:
    """The call's timeline entries as Server-Sent Events, then ``end``; twin: ``GET
    /api/v1/apps/{app_id}/calls/{call_sid}/events``."""
    entries = await portal.follow(state.sessions, scope, call_sid, last_event_id)
    return live_page_response(entries)
