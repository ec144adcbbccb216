"""``/console/customers``: customers, their apps and the apps' agents, for super_admins.

Each page parses its form, calls the service its ``/api/v1`` twin calls (named in each
docstring), and renders.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from exoplane.admin import apps, portal_links
from exoplane.admin import service as admin
from exoplane.admin.apps import ImportReport
from exoplane.admin.schemas import (
    CustomerCreate,
    CustomerUpdate,
    PortalLinkCreate,
    SecretRotation,
    portal_link_view,
)
from exoplane.console import tenants
from exoplane.console.auth import SuperAdminConsole
from exoplane.console.routes import FLASH, error_fields, field_errors, form_of, page
from exoplane.console.service import SignedIn
from exoplane.console.templates import CONSOLE, redirect
from exoplane.db import Session
from exoplane.errors import BadRequest, ExoplaneError
from exoplane.inputs import Int64, PathId
from exoplane.integrations.schemas import (
    WEBHOOK_URL_FIELDS,
    DevicesUpdate,
    SettingsUpdate,
    UserCreate,
    UserUpdate,
)
from exoplane.integrations.service import etag
from exoplane.models.base import utcnow
from exoplane.state import AppState, State

router = APIRouter(prefix=CONSOLE, include_in_schema=False)

FLASH.update(
    {
        "customer_saved": "Customer saved.",
        "customer_deleted": "Customer deleted.",
        "settings_saved_app": "Settings saved.",
        "agent_added": "Agent added.",
        "agent_saved": "Agent saved.",
        "agent_deleted": "Agent deleted.",
        "devices_saved": "Devices saved.",
        "portal_link_revoked": "Portal link revoked: it opens nothing any more.",
    }
)
CUSTOMERS = f"{CONSOLE}/customers"
CUSTOMERS_PER_PAGE = 50
AGENTS_PER_PAGE = 50
GRACE_CHOICES = (
    ("0", "None: the old secret stops at once"),
    ("3600", "1 hour"),
    ("86400", "24 hours"),
    ("604800", "7 days"),
)
SETTINGS_TEXT_FIELDS = (*WEBHOOK_URL_FIELDS, "streaming_url")
AGENT_FIELDS = ("user_id", "name", "email", "phone_number", "virtual_number", "role")
Cursor = Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Search = Annotated[str | None, Query(max_length=200)]


def _app_path(customer_id: str, app_id: str) -> str:
    return f"{CUSTOMERS}/{customer_id}/apps/{app_id}"


# --- customers ----------------------------------------------------------------------------


async def _customers_page(
    request: Request,
    session: Session,
    signed: SignedIn,
    *,
    created: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    search = request.query_params.get("search") or None
    cursor = request.query_params.get("cursor") or None
    customers, next_cursor = await admin.list_customers(
        session, search=search, cursor=cursor, limit=CUSTOMERS_PER_PAGE
    )
    return page(
        request,
        signed,
        "customers.html",
        title="Customers",
        customers=customers,
        next_cursor=next_cursor,
        search=search or "",
        created=created,
        errors=errors or {},
        form=form or {},
        status_code=status_code,
    )


@router.get("/customers")
async def customers(
    request: Request,
    session: Session,
    signed: SuperAdminConsole,
    search: Search = None,
    cursor: Cursor = None,
) -> Response:
    """Customers, searchable by name; twin: ``GET /api/v1/customers?search=``."""
    return await _customers_page(request, session, signed)


@router.post("/customers")
async def create_customer(
    request: Request, state: State, session: Session, signed: SuperAdminConsole
) -> Response:
    """Create a customer; its CustomerSecret is on this page only. Twin: ``POST
    /api/v1/customers``."""
    form = await form_of(request)
    try:
        body = CustomerCreate.model_validate({"name": form.get("name", "")})
        customer, secret = await admin.create_customer(
            session, state.vault, signed.operator, body.name
        )
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        errors = error_fields(exc)
    else:
        created = {"customer": customer, "secret": secret}
        return await _customers_page(request, session, signed, created=created, status_code=201)
    return await _customers_page(
        request,
        session,
        signed,
        errors=errors,
        form={"name": form.get("name", "")},
        status_code=400,
    )


async def _customer_page(
    request: Request,
    state: AppState,
    session: Session,
    signed: SignedIn,
    customer_id: str,
    *,
    rotated: admin.RotatedSecret | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    customer = await admin.get_customer(session, customer_id)
    customer_apps = await admin.customer_apps(session, state.reader, customer_id)
    return page(
        request,
        signed,
        "customer.html",
        title=customer.name,
        customer=customer,
        apps=customer_apps,
        rotated=rotated,
        grace_choices=GRACE_CHOICES,
        errors=errors or {},
        form=form or {},
        status_code=status_code,
    )


@router.get("/customers/{customer_id}")
async def customer(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
) -> Response:
    """A customer and its apps; twins: ``GET /api/v1/customers/{id}`` and ``.../apps``."""
    return await _customer_page(request, state, session, signed, customer_id)


@router.post("/customers/{customer_id}")
async def update_customer(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
) -> Response:
    """Rename, disable or enable; twin: ``PATCH /api/v1/customers/{id}``."""
    form = await form_of(request)
    values: dict[str, Any] = {}
    if "name" in form:
        values["name"] = form["name"]
    if form.get("disabled") in ("true", "false"):
        values["disabled"] = form["disabled"] == "true"
    try:
        body = CustomerUpdate.model_validate(values)
        await admin.update_customer(session, signed.operator, customer_id, body)
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        if exc.status == 404:
            raise
        errors = error_fields(exc)
    else:
        return redirect(f"{CUSTOMERS}/{customer_id}?done=customer_saved")
    return await _customer_page(
        request,
        state,
        session,
        signed,
        customer_id,
        errors=errors,
        form={"name": form.get("name", "")},
        status_code=400,
    )


@router.post("/customers/{customer_id}/secret")
async def rotate_customer_secret(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
) -> Response:
    """A new CustomerSecret, on this page only; the old one works for the grace period.
    Twin: ``POST /api/v1/customers/{id}/secret``."""
    form = await form_of(request)
    try:
        body = SecretRotation.model_validate({"grace_seconds": int(form.get("grace_seconds", ""))})
    except (ValueError, ValidationError):
        errors = {"grace_seconds": "Choose how long the old secret keeps working"}
        return await _customer_page(
            request, state, session, signed, customer_id, errors=errors, status_code=400
        )
    rotated = await admin.rotate_customer_secret(
        session, state.vault, signed.operator, customer_id, body.grace_seconds
    )
    return await _customer_page(request, state, session, signed, customer_id, rotated=rotated)


@router.post("/customers/{customer_id}/delete")
async def delete_customer(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
) -> Response:
    """Delete the customer with everything it has, once its name is typed; twin: ``DELETE
    /api/v1/customers/{id}``."""
    form = await form_of(request)
    found = await admin.get_customer(session, customer_id)
    try:
        tenants.check_typed_name(form.get("confirm_name", ""), found.name)
    except BadRequest as exc:
        return await _customer_page(
            request,
            state,
            session,
            signed,
            customer_id,
            errors=error_fields(exc),
            status_code=400,
        )
    await admin.delete_customer(session, signed.operator, customer_id)
    return redirect(f"{CUSTOMERS}?done=customer_deleted")


# --- an app -------------------------------------------------------------------------------


async def _app_page(
    request: Request,
    state: AppState,
    session: Session,
    signed: SignedIn,
    customer_id: str,
    app_id: str,
    *,
    webhook_secret: str | None = None,
    rotated_grace: int | None = None,
    minted_url: str | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    found = await admin.get_customer(session, customer_id)
    principal = await apps.as_app(session, customer_id, app_id)
    urls = await apps.flow_urls(session, state.settings, state.capabilities, customer_id, app_id)
    row = await apps.app_settings(session, state.vault, customer_id, app_id)
    current = tenants.settings_form(row)
    links = await portal_links.list_links(session, customer_id, app_id)
    now = utcnow()
    return page(
        request,
        signed,
        "app.html",
        title=principal.app.name,
        customer=found,
        app=principal.app,
        flow_urls=tenants.flow_url_rows(urls),
        settings=form if form is not None else current,
        version=etag(row) if form is None else form.get("version", etag(row)),
        current_version=etag(row),
        webhook_secret=webhook_secret,
        rotated_grace=rotated_grace,
        grace_choices=GRACE_CHOICES,
        portal_links=[portal_link_view(link, now) for link in links],
        minted_url=minted_url,
        expiry_choices=tenants.portal_expiry_choices(state.settings),
        default_expiry=str(state.settings.portal_link_default_seconds),
        errors=errors or {},
        status_code=status_code,
    )


@router.get("/customers/{customer_id}/apps/{app_id}")
async def app_page(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
) -> Response:
    """An app: details (no secret), flow URLs, settings and portal links. Twins: ``GET
    /api/v1/customers/{id}/apps/{app_id}``, ``.../flow-urls``, ``.../settings``,
    ``.../portal-links``."""
    return await _app_page(request, state, session, signed, customer_id, app_id)


@router.post("/customers/{customer_id}/apps/{app_id}/settings")
async def save_app_settings(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
) -> Response:
    """Save seed 02's settings, refused (409) when they changed since the page was loaded;
    twin: ``PUT /api/v1/customers/{id}/apps/{app_id}/settings`` with ``If-Match``."""
    form = await form_of(request)
    values = tenants.settings_values(form)
    status_code = 400
    try:
        body = SettingsUpdate.model_validate(values)
        await apps.update_settings(
            session,
            state.vault,
            state.settings,
            signed.operator,
            customer_id,
            app_id,
            body.model_dump(exclude_unset=True),
            form.get("version") or None,
        )
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        if exc.status == 404:
            raise
        errors = error_fields(exc)
        status_code = exc.status
    else:
        return redirect(f"{_app_path(customer_id, app_id)}?done=settings_saved_app")
    kept = {**values, "version": form.get("version", "")}
    return await _app_page(
        request,
        state,
        session,
        signed,
        customer_id,
        app_id,
        errors=errors,
        form=kept,
        status_code=status_code,
    )


@router.post("/customers/{customer_id}/apps/{app_id}/webhook-secret")
async def reveal_webhook_secret(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
) -> Response:
    """Show the webhook signing secret on this page; twin: ``POST
    /api/v1/customers/{id}/apps/{app_id}/webhook-secret``."""
    secret = await apps.signing_secret(session, state.vault, signed.operator, customer_id, app_id)
    return await _app_page(
        request, state, session, signed, customer_id, app_id, webhook_secret=secret
    )


@router.post("/customers/{customer_id}/apps/{app_id}/webhook-secret/rotate")
async def rotate_webhook_secret(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
) -> Response:
    """A new signing secret, shown on this page; twin: ``POST
    /api/v1/customers/{id}/apps/{app_id}/webhook-secret/rotate``."""
    form = await form_of(request)
    try:
        body = SecretRotation.model_validate({"grace_seconds": int(form.get("grace_seconds", ""))})
    except (ValueError, ValidationError):
        errors = {"grace_seconds": "Choose how long the old secret keeps signing"}
        return await _app_page(
            request, state, session, signed, customer_id, app_id, errors=errors, status_code=400
        )
    secret = await apps.rotate_signing_secret(
        session, state.vault, signed.operator, customer_id, app_id, body.grace_seconds
    )
    return await _app_page(
        request,
        state,
        session,
        signed,
        customer_id,
        app_id,
        webhook_secret=secret,
        rotated_grace=body.grace_seconds,
    )


@router.post("/customers/{customer_id}/apps/{app_id}/portal-links")
async def mint_portal_link(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
) -> Response:
    """A new portal link to the app, shown once on this page; twin: ``POST
    /api/v1/customers/{id}/apps/{app_id}/portal-links``."""
    form = await form_of(request)
    try:
        body = PortalLinkCreate.model_validate(
            {"expires_in_seconds": int(form.get("expires_in_seconds", ""))}
        )
        minted = await portal_links.mint_link(
            session,
            state.settings,
            signed.operator,
            customer_id,
            app_id,
            body.expires_in_seconds,
        )
    except (ValueError, ValidationError, BadRequest) as exc:
        errors = (
            error_fields(exc)
            if isinstance(exc, BadRequest)
            else {"expires_in_seconds": "Choose how long the link lasts"}
        )
        return await _app_page(
            request, state, session, signed, customer_id, app_id, errors=errors, status_code=400
        )
    return await _app_page(
        request, state, session, signed, customer_id, app_id, minted_url=minted.url
    )


@router.post("/customers/{customer_id}/apps/{app_id}/portal-links/{link_id}/revoke")
async def revoke_portal_link(
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
    link_id: PathId,
) -> Response:
    """The link opens nothing from now on; twin: ``POST
    /api/v1/customers/{id}/apps/{app_id}/portal-links/{link_id}/revoke``."""
    await portal_links.revoke_link(session, signed.operator, customer_id, app_id, link_id)
    return redirect(f"{_app_path(customer_id, app_id)}?done=portal_link_revoked#portal-links")


# --- agents -------------------------------------------------------------------------------


async def _agents_page(
    request: Request,
    session: Session,
    signed: SignedIn,
    customer_id: str,
    app_id: str,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    report: ImportReport | None = None,
    status_code: int = 200,
) -> Response:
    found = await admin.get_customer(session, customer_id)
    principal = await apps.as_app(session, customer_id, app_id)
    search = request.query_params.get("search") or None
    try:
        cursor = int(request.query_params.get("cursor") or 0)
    except ValueError:
        raise BadRequest("cursor must be a whole number: use the Next page link") from None
    agents, next_cursor = await apps.list_agents(
        session, customer_id, app_id, search=search, cursor=cursor, limit=AGENTS_PER_PAGE
    )
    return page(
        request,
        signed,
        "agents.html",
        title=f"Agents of {principal.app.name}",
        customer=found,
        app=principal.app,
        agents=tenants.agent_rows(agents),
        next_cursor=next_cursor,
        first_page=cursor == 0,
        search=search or "",
        errors=errors or {},
        form=form or {},
        report=report,
        columns=apps.IMPORT_COLUMNS,
        status_code=status_code,
    )


@router.get("/customers/{customer_id}/apps/{app_id}/agents")
async def agents(
    request: Request,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
    search: Search = None,
    cursor: Annotated[Int64, Query(ge=0)] = 0,
) -> Response:
    """The app's agents, searchable, 50 a page, with their device switches; twin: ``GET
    /api/v1/customers/{id}/apps/{app_id}/agents?search=&cursor=``."""
    return await _agents_page(request, session, signed, customer_id, app_id)


@router.post("/customers/{customer_id}/apps/{app_id}/agents")
async def add_agent(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
) -> Response:
    """Add an agent; twin: ``POST /api/v1/customers/{id}/apps/{app_id}/agents``."""
    form = await form_of(request)
    values = tenants.agent_values(form, AGENT_FIELDS)
    try:
        body = UserCreate.model_validate(values)
        await apps.create_agent(
            session,
            state.vault,
            state.settings,
            signed.operator,
            customer_id,
            app_id,
            body.fields(),
        )
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        if exc.status == 404:
            raise
        errors = error_fields(exc) if exc.field else {"user_id": exc.message}
    else:
        return redirect(f"{_app_path(customer_id, app_id)}/agents?done=agent_added")
    kept = {name: form.get(name, "") for name in AGENT_FIELDS}
    return await _agents_page(
        request,
        session,
        signed,
        customer_id,
        app_id,
        errors=errors,
        form=kept,
        status_code=400,
    )


@router.post("/customers/{customer_id}/apps/{app_id}/agents/import")
async def import_agents(
    request: Request,
    state: State,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
) -> Response:
    """Import agents from a CSV file, all or none, with each row's result; twin: ``POST
    /api/v1/customers/{id}/apps/{app_id}/agents/import``."""
    upload = (await request.form()).get("file")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise BadRequest("Choose a CSV file to import", field="file")
        try:
            text = (await upload.read()).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("The file must be UTF-8 text", field="file") from None
        finally:
            await upload.close()
        report = await apps.import_agents(
            session, state.vault, state.settings, signed.operator, customer_id, app_id, text
        )
    except ExoplaneError as exc:
        if exc.status == 404:
            raise
        return await _agents_page(
            request,
            session,
            signed,
            customer_id,
            app_id,
            errors=error_fields(exc),
            status_code=exc.status,
        )
    return await _agents_page(
        request,
        session,
        signed,
        customer_id,
        app_id,
        report=report,
        status_code=400 if report.failed else 200,
    )


@router.get("/customers/{customer_id}/apps/{app_id}/agents/{user_id}")
async def agent(
    request: Request,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
) -> Response:
    """An agent's edit form; twin: ``GET /api/v1/customers/{id}/apps/{app_id}/agents/{user}``."""
    found = await apps.get_agent(session, customer_id, app_id, user_id)
    return await _agent_page(
        request,
        session,
        signed,
        customer_id,
        app_id,
        found.user_id,
        form=tenants.agent_form(found),
    )


async def _agent_page(
    request: Request,
    session: Session,
    signed: SignedIn,
    customer_id: str,
    app_id: str,
    user_id: str,
    *,
    form: dict[str, str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    principal = await apps.as_app(session, customer_id, app_id)
    return page(
        request,
        signed,
        "agent_edit.html",
        title=f"Agent {user_id}",
        app=principal.app,
        customer_id=customer_id,
        user_id=user_id,
        form=form,
        errors=errors or {},
        status_code=status_code,
    )


@router.post("/customers/{customer_id}/apps/{app_id}/agents/{user_id}")
async def update_agent(
    request: Request,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
) -> Response:
    """Change an agent (a blank number clears it); twin: ``PUT
    /api/v1/customers/{id}/apps/{app_id}/agents/{user_id}``."""
    form = await form_of(request)
    editable = AGENT_FIELDS[1:]
    values = tenants.agent_values(form, editable, blank_is_null=True)
    try:
        body = UserUpdate.model_validate(values)
        await apps.update_agent(
            session,
            signed.operator,
            customer_id,
            app_id,
            user_id,
            body.model_dump(exclude_unset=True),
        )
    except ValidationError as exc:
        errors = field_errors(exc)
    except ExoplaneError as exc:
        if exc.status == 404:
            raise
        errors = error_fields(exc) if exc.field else {"email": exc.message}
    else:
        return redirect(f"{_app_path(customer_id, app_id)}/agents?done=agent_saved")
    kept = {name: form.get(name, "") for name in editable}
    return await _agent_page(
        request,
        session,
        signed,
        customer_id,
        app_id,
        user_id,
        form=kept,
        errors=errors,
        status_code=400,
    )


@router.post("/customers/{customer_id}/apps/{app_id}/agents/{user_id}/delete")
async def delete_agent(
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
) -> Response:
    """Delete an agent; twin: ``DELETE /api/v1/customers/{id}/apps/{app_id}/agents/{user}``."""
    await apps.delete_agent(session, signed.operator, customer_id, app_id, user_id)
    return redirect(f"{_app_path(customer_id, app_id)}/agents?done=agent_deleted")


@router.post("/customers/{customer_id}/apps/{app_id}/agents/{user_id}/devices")
async def set_agent_devices(
    request: Request,
    session: Session,
    signed: SuperAdminConsole,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
) -> Response:
    """Turn one device on or off; the last enabled one is refused with the reason. Twin:
    ``PUT /api/v1/customers/{id}/apps/{app_id}/agents/{user_id}/devices``."""
    form = await form_of(request)
    device, enabled = form.get("device", ""), form.get("enabled", "")
    try:
        if device not in ("phone", "sip") or enabled not in ("true", "false"):
            raise BadRequest("Choose the phone or SIP device, on or off", field="device")
        body = DevicesUpdate.model_validate({device: enabled == "true"})
        await apps.set_agent_devices(
            session,
            signed.operator,
            customer_id,
            app_id,
            user_id,
            phone=body.phone,
            sip=body.sip,
        )
    except ExoplaneError as exc:
        if exc.status == 404:
            raise
        return await _agents_page(
            request,
            session,
            signed,
            customer_id,
            app_id,
            errors={f"devices:{user_id}": exc.message},
            status_code=exc.status,
        )
    return redirect(f"{_app_path(customer_id, app_id)}/agents?done=devices_saved")
