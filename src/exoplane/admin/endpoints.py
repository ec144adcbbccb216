"""``/api/v1``: customers, their apps, and operators, administered by super_admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from exoplane.admin import service
from exoplane.admin.schemas import (
    AppList,
    CreatedCustomer,
    CreatedOperator,
    CustomerCreate,
    CustomerPage,
    CustomerUpdate,
    CustomerView,
    Deleted,
    OperatorCreate,
    OperatorPage,
    OperatorUpdate,
    OperatorView,
    PasswordChange,
    RotatedApiKey,
    RotatedSecret,
    SecretRotation,
    app_view,
    customer_view,
    operator_view,
)
from exoplane.db import Session
from exoplane.inputs import PathId
from exoplane.responses import JSONBytesResponse, resource_time
from exoplane.state import State
from exoplane.voicebot.auth import AdminAuth, SuperAdminAuth

router = APIRouter(prefix="/api/v1", tags=["administration"])

Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[
    str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="A next_cursor")
]


@router.get("/customers", response_model=CustomerPage)
async def list_customers(
    session: Session,
    _operator: SuperAdminAuth,
    search: Annotated[str | None, Query(max_length=200, description="Part of the name")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """Customers, oldest first, optionally only those whose name contains ``search``."""
    page, next_cursor = await service.list_customers(
        session, search=search, cursor=cursor, limit=limit
    )
    return JSONBytesResponse(
        {"customers": [customer_view(row) for row in page], "next_cursor": next_cursor}
    )


@router.post("/customers", status_code=201, response_model=CreatedCustomer)
async def create_customer(
    state: State, session: Session, operator: SuperAdminAuth, body: CustomerCreate
) -> Response:
    """Create a customer; its CustomerSecret is in this response and never again."""
    customer, secret = await service.create_customer(session, state.vault, operator, body.name)
    return JSONBytesResponse(customer_view(customer) | {"secret": secret}, status_code=201)


@router.get("/customers/{customer_id}", response_model=CustomerView)
async def get_customer(
    session: Session, _operator: SuperAdminAuth, customer_id: PathId
) -> Response:
    """One customer."""
    return JSONBytesResponse(customer_view(await service.get_customer(session, customer_id)))


@router.patch("/customers/{customer_id}", response_model=CustomerView)
async def update_customer(
    session: Session, operator: SuperAdminAuth, customer_id: PathId, body: CustomerUpdate
) -> Response:
    """Rename, disable (its tokens and its apps' tokens are refused) or enable a customer."""
    customer = await service.update_customer(session, operator, customer_id, body)
    return JSONBytesResponse(customer_view(customer))


@router.delete("/customers/{customer_id}", response_model=Deleted)
async def delete_customer(
    session: Session, operator: SuperAdminAuth, customer_id: PathId
) -> Response:
    """Delete a customer with its apps, users, calls and tokens."""
    await service.delete_customer(session, operator, customer_id)
    return JSONBytesResponse({"id": customer_id, "deleted": True})


@router.post("/customers/{customer_id}/secret", response_model=RotatedSecret)
async def rotate_customer_secret(
    state: State,
    session: Session,
    operator: SuperAdminAuth,
    customer_id: PathId,
    body: SecretRotation | None = None,
) -> Response:
    """A new CustomerSecret, shown only here; the old one works for ``grace_seconds`` more."""
    grace = (body or SecretRotation()).grace_seconds
    rotated = await service.rotate_customer_secret(
        session, state.vault, operator, customer_id, grace
    )
    return JSONBytesResponse(
        {
            "id": rotated.customer_id,
            "secret": rotated.secret,
            "previous_secret_expires_at": resource_time(rotated.previous_secret_expires_at),
        }
    )


@router.get("/customers/{customer_id}/apps", response_model=AppList)
async def list_customer_apps(
    state: State, session: Session, _operator: SuperAdminAuth, customer_id: PathId
) -> Response:
    """A customer's apps, without their secrets or Exotel credentials."""
    apps = await service.customer_apps(session, state.reader, customer_id)
    return JSONBytesResponse({"apps": [app_view(app) for app in apps]})


@router.get("/operators", response_model=OperatorPage)
async def list_operators(
    session: Session, _operator: SuperAdminAuth, limit: Limit = 50, cursor: Cursor = None
) -> Response:
    """Operators, oldest first, with their roles; never a password or key."""
    page, next_cursor = await service.list_operators(session, cursor=cursor, limit=limit)
    return JSONBytesResponse(
        {"operators": [operator_view(row) for row in page], "next_cursor": next_cursor}
    )


@router.post("/operators", status_code=201, response_model=CreatedOperator)
async def create_operator(
    session: Session, operator: SuperAdminAuth, body: OperatorCreate
) -> Response:
    """Create an operator; the password and API key are in this response and never again."""
    created = await service.create_operator(session, operator, body.email, body.role)
    return JSONBytesResponse(
        operator_view(created.operator)
        | {"password": created.password, "api_key": created.api_key},
        status_code=201,
    )


@router.post("/operators/me/password", response_model=OperatorView)
async def change_own_password(
    session: Session, operator: AdminAuth, body: PasswordChange
) -> Response:
    """Change your own password (the console's), giving the current one."""
    changed = await service.change_password(
        session, operator, body.current_password, body.new_password
    )
    return JSONBytesResponse(operator_view(changed))


@router.patch("/operators/{operator_id}", response_model=OperatorView)
async def update_operator(
    session: Session, operator: SuperAdminAuth, operator_id: PathId, body: OperatorUpdate
) -> Response:
    """Change an operator's role, disable (key refused) or enable; one super_admin remains."""
    changed = await service.update_operator(session, operator, operator_id, body)
    return JSONBytesResponse(operator_view(changed))


@router.post("/operators/{operator_id}/api-key", response_model=RotatedApiKey)
async def rotate_operator_api_key(
    session: Session, operator: SuperAdminAuth, operator_id: PathId
) -> Response:
    """A new API key, shown only here; the old one stops working at once."""
    api_key = await service.rotate_api_key(session, operator, operator_id)
    return JSONBytesResponse({"id": operator_id, "api_key": api_key})
