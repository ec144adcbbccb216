"""Request bodies and response shapes of the administration API."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from exoplane.admin.portal_links import status_of
from exoplane.integrations.repository import AppRecord
from exoplane.integrations.schemas import (
    MAX_GRACE_SECONDS,
    EmailAddress,
    UserResource,
    WholeNumber,
    user_resource,
)
from exoplane.models import Customer, Operator, PortalLink, User
from exoplane.responses import resource_time
from exoplane.voicebot.schemas import Body, Text

if TYPE_CHECKING:
    from exoplane.admin.apps import ImportReport

DEFAULT_GRACE_SECONDS = 24 * 3600

Role = Literal["super_admin", "admin"]


class CustomerCreate(Body):
    name: Text


class CustomerUpdate(Body):
    """Rename, disable or enable; an omitted field keeps its value."""

    name: Text | None = None
    disabled: bool | None = None


class SecretRotation(Body):
    grace_seconds: WholeNumber = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the replaced secret keeps working (default 24 h, at most 7 days)",
    )


class OperatorCreate(Body):
    email: EmailAddress
    role: Role


class OperatorUpdate(Body):
    """Change the role, disable or enable; an omitted field keeps its value."""

    role: Role | None = None
    disabled: bool | None = None


class PasswordChange(Body):
    current_password: str = Field(max_length=500)
    new_password: str = Field(max_length=500)


def customer_view(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "disabled": customer.disabled_at is not None,
        "created_at": resource_time(customer.created_at),
        "updated_at": resource_time(customer.updated_at),
    }


def app_view(app: AppRecord) -> dict[str, Any]:
    return {
        "id": app.id,
        "name": app.name,
        "exotel_account_sid": app.exotel_account_sid,
        "exotel_domain": app.exotel_domain,
        "is_active": app.is_active,
        "created_at": resource_time(app.created_at),
        "updated_at": resource_time(app.updated_at),
    }


def operator_view(operator: Operator) -> dict[str, Any]:
    return {
        "id": operator.id,
        "email": operator.email,
        "role": operator.role,
        "disabled": operator.disabled_at is not None,
        "created_at": resource_time(operator.created_at),
    }


# --- response shapes (for the OpenAPI document; the functions above build the bodies) ------


class CustomerView(BaseModel):
    id: str
    name: str
    disabled: bool
    created_at: str
    updated_at: str


class CustomerPage(BaseModel):
    customers: list[CustomerView]
    next_cursor: str | None


class CreatedCustomer(CustomerView):
    secret: str = Field(description="The CustomerSecret, shown only in this response")


class RotatedSecret(BaseModel):
    id: str
    secret: str = Field(description="The new CustomerSecret, shown only in this response")
    previous_secret_expires_at: str = Field(
        description="Until when the replaced secret keeps working"
    )


class Deleted(BaseModel):
    id: str
    deleted: bool


class AppView(BaseModel):
    id: str
    name: str
    exotel_account_sid: str
    exotel_domain: str
    is_active: bool
    created_at: str
    updated_at: str


class AppList(BaseModel):
    apps: list[AppView]


class OperatorView(BaseModel):
    id: str
    email: str
    role: Role
    disabled: bool
    created_at: str


class OperatorPage(BaseModel):
    operators: list[OperatorView]
    next_cursor: str | None


class CreatedOperator(OperatorView):
    password: str = Field(description="Shown only in this response")
    api_key: str = Field(description="Shown only in this response")


class RotatedApiKey(BaseModel):
    id: str
    api_key: str = Field(description="The new API key, shown only in this response")


# --- a customer's apps and their agents ---------------------------------------------------


def agent_view(user: User, now: datetime) -> dict[str, Any]:
    """An agent as the operators' API lists it: the resource-style user (never its SIP
    secret) with its SIP device's registration."""
    view = user_resource(user)
    sip = view["devices"]["sip"]
    sip["registered"] = user.sip_registered_until is not None and user.sip_registered_until > now
    sip["last_seen"] = resource_time(user.sip_last_seen) if user.sip_last_seen else None
    return view


def import_view(report: ImportReport) -> dict[str, Any]:
    return {
        "imported": report.imported,
        "failed": report.failed,
        "rows": [
            {
                "row": row.row,
                "user_id": row.user_id,
                "ok": row.ok,
                "field": row.field,
                "message": row.message,
            }
            for row in report.rows
        ],
    }


class AgentPage(BaseModel):
    agents: list[UserResource]
    next_cursor: str | None


class ImportRow(BaseModel):
    row: int = Field(description="The file's line, the header being line 1")
    user_id: str
    ok: bool
    field: str | None
    message: str | None


class ImportResult(BaseModel):
    imported: int = Field(description="Every row, or 0 when any row was refused")
    failed: int
    rows: list[ImportRow]


class WebhookSecret(BaseModel):
    secret: str


class RotatedWebhookSecret(BaseModel):
    secret: str
    previous_secret_valid_for_seconds: int


# --- portal links -------------------------------------------------------------------------


class PortalLinkCreate(Body):
    expires_in_seconds: WholeNumber | None = Field(
        default=None,
        ge=60,
        description=(
            "How long the link lasts: at least 60 seconds, at most EXOPLANE_PORTAL_LINK_MAX_"
            "SECONDS (30 days unless configured); omitted, EXOPLANE_PORTAL_LINK_DEFAULT_SECONDS"
            " (7 days unless configured)"
        ),
    )


def portal_link_view(link: PortalLink, now: datetime) -> dict[str, Any]:
    return {
        "id": link.id,
        "app_id": link.app_id,
        "status": status_of(link, now),
        "created_by": link.created_by,
        "created_at": resource_time(link.created_at),
        "expires_at": resource_time(link.expires_at),
        "revoked_at": resource_time(link.revoked_at) if link.revoked_at else None,
    }


class PortalLinkView(BaseModel):
    id: str
    app_id: str
    status: Literal["active", "expired", "revoked"]
    created_by: str
    created_at: str
    expires_at: str
    revoked_at: str | None


class PortalLinkList(BaseModel):
    portal_links: list[PortalLinkView]


class CreatedPortalLink(PortalLinkView):
    url: str = Field(description="The link to hand over; shown only in this response")
