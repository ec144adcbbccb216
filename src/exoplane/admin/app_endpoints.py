"""``/api/v1/customers/{customer_id}/apps/{app_id}``: a customer's app, its settings, webhook
signing secret and agents, administered by super_admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request
from starlette.responses import Response

from exoplane.admin import apps as service
from exoplane.admin import portal_links
from exoplane.admin.schemas import (
    AgentPage,
    AppView,
    CreatedPortalLink,
    ImportResult,
    PortalLinkCreate,
    PortalLinkList,
    PortalLinkView,
    RotatedWebhookSecret,
    SecretRotation,
    WebhookSecret,
    agent_view,
    app_view,
    import_view,
    portal_link_view,
)
from exoplane.db import Session
from exoplane.errors import BadRequest, error_body
from exoplane.inputs import Int64, PathId
from exoplane.integrations.calls.schemas import FlowUrls
from exoplane.integrations.schemas import (
    DevicesUpdate,
    SettingsResource,
    SettingsUpdate,
    UserCreate,
    UserDeleted,
    UserResource,
    UserUpdate,
    settings_resource,
)
from exoplane.integrations.service import etag
from exoplane.models.base import utcnow
from exoplane.responses import JSONBytesResponse, request_id_of
from exoplane.state import State
from exoplane.voicebot.auth import SuperAdminAuth

APP = "/api/v1/customers/{customer_id}/apps/{app_id}"
router = APIRouter(prefix=APP, tags=["administration"])


@router.get("", response_model=AppView)
async def get_app(
    session: Session, _operator: SuperAdminAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """One app of the customer, without its secret or Exotel credentials."""
    principal = await service.as_app(session, customer_id, app_id)
    return JSONBytesResponse(app_view(principal.app))


@router.get("/flow-urls", response_model=FlowUrls)
async def flow_urls(
    state: State, session: Session, _operator: SuperAdminAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """The URLs to paste into the app's Exotel flow (as the app's own ``.../flow-urls``)."""
    urls = await service.flow_urls(session, state.settings, state.capabilities, customer_id, app_id)
    return JSONBytesResponse(urls)


def _settings_response(row_view: dict[str, object], version_etag: str) -> Response:
    response = JSONBytesResponse(row_view)
    response.headers["ETag"] = version_etag
    return response


@router.get("/settings", response_model=SettingsResource)
async def get_settings(
    state: State, session: Session, _operator: SuperAdminAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """The app's settings (seed 02), with an ETag to send back as If-Match."""
    row = await service.app_settings(session, state.vault, customer_id, app_id)
    return _settings_response(settings_resource(row, with_created=True), etag(row))


@router.put("/settings", response_model=SettingsResource)
async def update_settings(
    state: State,
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    body: SettingsUpdate,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    """Seed 02's partial update; a stale If-Match is 409 ``settings_conflict``."""
    row = await service.update_settings(
        session,
        state.vault,
        state.settings,
        operator,
        customer_id,
        app_id,
        body.model_dump(exclude_unset=True),
        if_match,
    )
    return _settings_response(settings_resource(row, with_created=False), etag(row))


@router.post("/webhook-secret", response_model=WebhookSecret)
async def reveal_webhook_secret(
    state: State, session: Session, operator: SuperAdminAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """The webhook signing secret; each reveal is in the audit log."""
    secret = await service.signing_secret(session, state.vault, operator, customer_id, app_id)
    return JSONBytesResponse({"secret": secret})


@router.post("/webhook-secret/rotate", response_model=RotatedWebhookSecret)
async def rotate_webhook_secret(
    state: State,
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    body: Annotated[SecretRotation | None, Body()] = None,
) -> Response:
    """A new signing secret; the old one keeps signing too for ``grace_seconds``."""
    grace = (body or SecretRotation()).grace_seconds
    secret = await service.rotate_signing_secret(
        session, state.vault, operator, customer_id, app_id, grace
    )
    return JSONBytesResponse({"secret": secret, "previous_secret_valid_for_seconds": grace})


@router.post("/portal-links", status_code=201, response_model=CreatedPortalLink)
async def mint_portal_link(
    state: State,
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    body: Annotated[PortalLinkCreate | None, Body()] = None,
) -> Response:
    """A signed, expiring, revocable link that shows this app's calls, deliveries (with
    replay), flow URLs and settings to whoever opens it; its ``url`` is shown only here."""
    minted = await portal_links.mint_link(
        session,
        state.settings,
        operator,
        customer_id,
        app_id,
        (body or PortalLinkCreate()).expires_in_seconds,
    )
    view = portal_link_view(minted.link, utcnow())
    return JSONBytesResponse({**view, "url": minted.url}, status_code=201)


@router.get("/portal-links", response_model=PortalLinkList)
async def list_portal_links(
    session: Session, _operator: SuperAdminAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """Every link to this app, newest first, with its status; never a link's URL."""
    links = await portal_links.list_links(session, customer_id, app_id)
    now = utcnow()
    return JSONBytesResponse({"portal_links": [portal_link_view(link, now) for link in links]})


@router.post("/portal-links/{link_id}/revoke", response_model=PortalLinkView)
async def revoke_portal_link(
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    link_id: PathId,
) -> Response:
    """The link opens nothing from its next request on; revoking twice is 409."""
    link = await portal_links.revoke_link(session, operator, customer_id, app_id, link_id)
    return JSONBytesResponse(portal_link_view(link, utcnow()))


@router.get("/agents", response_model=AgentPage)
async def list_agents(
    session: Session,
    _operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    search: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[Int64, Query(ge=0)] = 0,
) -> Response:
    """The app's agents in creation order, with their devices and SIP registration;
    ``search`` matches part of the user id, name, email or phone number."""
    page, next_cursor = await service.list_agents(
        session, customer_id, app_id, search=search, cursor=cursor, limit=limit
    )
    now = utcnow()
    return JSONBytesResponse(
        {
            "agents": [agent_view(user, now) for user in page],
            "next_cursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


@router.post("/agents", status_code=201, response_model=UserResource)
async def create_agent(
    state: State,
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    body: UserCreate,
) -> Response:
    """Add an agent (the resource-style user fields); its SIP secret is never shown here."""
    user = await service.create_agent(
        session, state.vault, state.settings, operator, customer_id, app_id, body.fields()
    )
    return JSONBytesResponse(agent_view(user, utcnow()), status_code=201)


CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string", "description": "UTF-8 CSV"}}},
    }
}


@router.post("/agents/import", response_model=ImportResult, openapi_extra=CSV_BODY)
async def import_agents(
    request: Request,
    state: State,
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
) -> Response:
    """Agents from a CSV file (``Content-Type: text/csv``), all or none: 200 with every row
    imported, or 400 ``import_refused`` with each row's result and nothing imported."""
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The file must be UTF-8 text", field="file") from None
    report = await service.import_agents(
        session, state.vault, state.settings, operator, customer_id, app_id, text
    )
    if report.failed:
        message = f"{report.failed} of {len(report.rows)} rows were refused; nothing was imported"
        body = error_body(
            request_id_of(request.scope), request.url.path, 400, "import_refused", message, "file"
        )
        return JSONBytesResponse(body | import_view(report), status_code=400)
    return JSONBytesResponse(import_view(report))


AGENT = "/agents/{user_id}"


@router.get(AGENT, response_model=UserResource)
async def get_agent(
    session: Session,
    _operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
) -> Response:
    """One agent with its devices and SIP registration."""
    user = await service.get_agent(session, customer_id, app_id, user_id)
    return JSONBytesResponse(agent_view(user, utcnow()))


@router.put(AGENT, response_model=UserResource)
async def update_agent(
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
    body: UserUpdate,
) -> Response:
    """Change an agent's fields; fields not sent keep their value."""
    user = await service.update_agent(
        session, operator, customer_id, app_id, user_id, body.model_dump(exclude_unset=True)
    )
    return JSONBytesResponse(agent_view(user, utcnow()))


@router.delete(AGENT, response_model=UserDeleted)
async def delete_agent(
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
) -> Response:
    """Delete an agent and its devices."""
    await service.delete_agent(session, operator, customer_id, app_id, user_id)
    return JSONBytesResponse({"user_id": user_id, "deleted": True})


@router.put(AGENT + "/devices", response_model=UserResource)
async def set_agent_devices(
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
    body: DevicesUpdate,
) -> Response:
    """Turn the phone and/or SIP device on or off; the last one enabled stays on (400
    ``device_rule_violation``)."""
    user = await service.set_agent_devices(
        session, operator, customer_id, app_id, user_id, phone=body.phone, sip=body.sip
    )
    return JSONBytesResponse(agent_view(user, utcnow()))
