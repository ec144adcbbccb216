"""Request bodies (validated) and response shapes of the integrations API.

Field names follow the wire: PascalCase on the Exotel-compatible endpoints, snake_case on the
resource-style ones.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from exoplane.exotel.numbers import normalise_phone_number
from exoplane.integrations.repository import AppRecord, UserRecord
from exoplane.models import App, AppSettings, User
from exoplane.responses import legacy_time, resource_time

MAX_TOKEN_TTL_SECONDS = 90 * 24 * 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"{value!r} is not an email address")
    return value.lower()


def _user_id(value: str) -> str:
    if value in (".", ".."):
        raise ValueError(f"'{value}' cannot be a user id: clients that normalise paths drop it")
    return value


def _phone(value: str) -> str:
    return normalise_phone_number(value)


def _whole(value: object) -> object:
    """A JSON number with no fraction (``3.0``, ``1e2``) is the integer it equals."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# The patterns say in the schema what the validators check: text that is not all spaces
# (it is stripped first), an address with an @ and a dot after it, and a number's shape.
NOT_BLANK = r"\S"
EMAIL_SHAPE = r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$"
PHONE_SHAPE = r"^[\s\-().]*\+?[\s\-().]*[0-9][\s\-().0-9]*$"

WholeNumber = Annotated[int, BeforeValidator(_whole)]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)
]
SecretText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
UserId = Annotated[
    str,
    StringConstraints(pattern=r"^[^\s/?#%]{1,200}$"),
    AfterValidator(_user_id),
    Field(json_schema_extra={"not": {"enum": [".", ".."]}}),
]
EmailAddress = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=320, pattern=EMAIL_SHAPE),
    AfterValidator(_email),
]
PhoneNumber = Annotated[
    str,
    StringConstraints(max_length=40, pattern=PHONE_SHAPE),
    AfterValidator(_phone),
    Field(
        description="E.164 (+919876543210) or an Indian national form (09876543210)",
        examples=["+919876543210"],
    ),
]
# A field that may be left out but not sent as null.
NotNullBool = Annotated[bool | None, WithJsonSchema({"type": "boolean"})]
RoleName = Literal["admin", "supervisor", "user"]


class Strict(BaseModel):
    """Types are checked, not coerced: ``"true"`` is not a boolean."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class StrictClosed(Strict):
    """Resource-style bodies also refuse unknown fields, so typos do not pass silently."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --- tokens -------------------------------------------------------------------------------


class TokenRequest(Strict):
    Id: SecretText
    Secret: SecretText
    Entity: Literal["customer", "app"]
    TTLSeconds: WholeNumber | None = Field(default=None, ge=60, le=MAX_TOKEN_TTL_SECONDS)


DEFAULT_AGENT_TOKEN_TTL_SECONDS = 12 * 3600
MAX_AGENT_TOKEN_TTL_SECONDS = 24 * 3600


class AgentTokenRequest(Strict):
    """``POST /agent_token``: a token for one user of the app, for that agent's browser."""

    user_id: UserId
    TTLSeconds: WholeNumber | None = Field(default=None, ge=60, le=MAX_AGENT_TOKEN_TTL_SECONDS)


class SecretRotation(Strict):
    GraceSeconds: WholeNumber = Field(default=24 * 3600, ge=0, le=MAX_GRACE_SECONDS)


# --- apps ---------------------------------------------------------------------------------


class AppCreate(Strict):
    AppName: Text
    ExotelAccountSid: Text
    ExotelApiKey: SecretText
    ExotelApiToken: SecretText
    ExotelDomain: Literal["mumbai", "singapore"]
    IsActive: bool


def app_data(app: App | AppRecord) -> dict[str, Any]:
    """An app as GET and list show it: never a secret."""
    return {
        "AppID": app.id,
        "CustomerID": app.customer_id,
        "AppName": app.name,
        "ExotelAccountSid": app.exotel_account_sid,
        "ExotelDomain": app.exotel_domain,
        "IsActive": app.is_active,
        "CreatedAt": legacy_time(app.created_at),
        "UpdatedAt": legacy_time(app.updated_at),
    }


def app_resource(app: App) -> dict[str, Any]:
    return {
        "app_id": app.id,
        "customer_id": app.customer_id,
        "name": app.name,
        "exotel_account_sid": app.exotel_account_sid,
        "exotel_domain": app.exotel_domain,
        "is_active": app.is_active,
        "created_at": resource_time(app.created_at),
        "updated_at": resource_time(app.updated_at),
    }


def created_app_data(app: App, app_secret: str, api_key: str, api_token: str) -> dict[str, Any]:
    """An app as its creation shows it, once: with the secret and the Exotel credentials."""
    data = app_data(app)
    return {
        "AppID": data["AppID"],
        "AppSecret": app_secret,
        "CustomerID": data["CustomerID"],
        "AppName": data["AppName"],
        "ExotelAccountSid": data["ExotelAccountSid"],
        "ExotelApiKey": api_key,
        "ExotelApiToken": api_token,
        "ExotelDomain": data["ExotelDomain"],
        "IsActive": data["IsActive"],
        "CreatedAt": data["CreatedAt"],
        "UpdatedAt": data["UpdatedAt"],
    }


# --- users --------------------------------------------------------------------------------


class UserFields(BaseModel):
    """The one internal shape both user interfaces are translated into."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    name: str
    email: str
    phone_number: str | None = None
    virtual_number: str | None = None
    role: str = "user"
    exotel_user_name: str | None = None


class UserCreate(StrictClosed):
    user_id: UserId
    name: Text
    email: EmailAddress
    phone_number: PhoneNumber | None = None
    virtual_number: PhoneNumber | None = None
    role: RoleName = "user"

    def fields(self) -> UserFields:
        return UserFields(**self.model_dump())


class UserUpdate(StrictClosed):
    name: Text | None = None
    email: EmailAddress | None = None
    phone_number: PhoneNumber | None = None
    virtual_number: PhoneNumber | None = None
    role: RoleName | None = None


class UserMappingIn(Strict):
    """One element of ``POST /usermapping`` (exotel-facts §1.7.1)."""

    AppUserId: UserId
    AppUsername: Text
    Email: EmailAddress
    ExotelAccountSid: Text
    ExotelUserName: Text
    AgentNumber: PhoneNumber | None = None
    VirtualNumber: PhoneNumber
    Role: RoleName = "user"

    def fields(self) -> UserFields:
        return UserFields(
            user_id=self.AppUserId,
            name=self.AppUsername,
            email=self.Email,
            phone_number=self.AgentNumber,
            virtual_number=self.VirtualNumber,
            role=self.Role,
            exotel_user_name=self.ExotelUserName,
        )


class UserMappingUpdate(Strict):
    """``PUT /usermapping/{user_id}``: the POST shape with every field optional."""

    AppUsername: Text | None = None
    Email: EmailAddress | None = None
    ExotelUserName: Text | None = None
    AgentNumber: PhoneNumber | None = None
    VirtualNumber: PhoneNumber | None = None
    Role: RoleName | None = None

    def changes(self) -> dict[str, Any]:
        names = {
            "AppUsername": "name",
            "Email": "email",
            "ExotelUserName": "exotel_user_name",
            "AgentNumber": "phone_number",
            "VirtualNumber": "virtual_number",
            "Role": "role",
        }
        return {names[key]: value for key, value in self.model_dump(exclude_unset=True).items()}


def mapping_update_from(body: Any) -> UserMappingUpdate:
    """Read ``PUT /usermapping/{id}``'s body: one mapping, alone or as an array of one."""
    item: Any = body
    where: tuple[str, ...] = ("body",)
    if isinstance(body, list):  # an array of one, the shape of the POST body
        if len(body) != 1:
            error = {"type": "value_error", "loc": where, "msg": "send exactly one mapping"}
            raise RequestValidationError([{**error, "input": body}])
        item, where = body[0], ("body", "0")
    try:
        return UserMappingUpdate.model_validate(item)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": (*where, *error["loc"])} for error in exc.errors()]
        ) from None


def sip_domain_of(user: User | UserRecord) -> str:
    return user.sip_username.split("@", 1)[1]


def user_resource(user: User | UserRecord, *, sip_secret: str | None = None) -> dict[str, Any]:
    sip: dict[str, Any] = {"username": user.sip_username, "domain": sip_domain_of(user)}
    if sip_secret is not None:
        sip["secret"] = sip_secret
    return {
        "user_id": user.user_id,
        "name": user.name,
        "email": user.email,
        "phone_number": user.phone_number,
        "virtual_number": user.virtual_number,
        "role": user.role,
        "sip": sip,
        "devices": {
            "phone": {"enabled": user.phone_enabled, "number": user.phone_number},
            "sip": {"enabled": user.sip_enabled, "username": user.sip_username},
        },
        "created_at": resource_time(user.created_at),
        "updated_at": resource_time(user.updated_at),
    }


def user_mapping(
    user: User | UserRecord, app: App | AppRecord, sdk_sip_secret: str
) -> dict[str, Any]:
    """A user as Exotel's ``/usermapping`` returns it (exotel-facts §1.7.2)."""
    phone_device, sip_device = f"phone-{user.id}", f"sip-{user.id}"
    return {
        "CustomerId": app.customer_id,
        "customer_id": app.customer_id,
        "AppID": app.id,
        "AppUserId": user.user_id,
        "ExotelAccountSid": app.exotel_account_sid,
        "ExotelUserId": str(user.id),
        "AppUsername": user.name,
        "ExotelUserName": user.exotel_user_name,
        "AgentNumber": user.phone_number or "",
        "ActiveDeviceId": sip_device if user.sip_enabled else phone_device,
        "PhoneDeviceID": phone_device,
        "SipDeviceID": sip_device,
        "VirtualNumber": user.virtual_number or "",
        "Email": user.email,
        "OutboundActive": True,
        "Role": user.role,
        "SipId": "sip:" + user.sip_username.split("@", 1)[0],
        "SipSecret": sdk_sip_secret,
        "IsActive": True,
        "UserDetail": None,
        "CreatedAt": legacy_time(user.created_at),
        "UpdatedAt": legacy_time(user.updated_at),
    }


# --- app settings (seed 02) ---------------------------------------------------------------

Url = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048, pattern=NOT_BLANK)
]
WEBHOOK_URL_FIELDS = ("popup_url", "missed_call_url", "callback_url", "recording_url")


class SettingsUpdate(StrictClosed):
    """Seed 02's body: every field optional; a field sent as null clears it."""

    popup_url: Url | None = None
    missed_call_url: Url | None = None
    callback_url: Url | None = None
    recording_enabled: NotNullBool = None
    recording_url: Url | None = None
    streaming_enabled: NotNullBool = None
    streaming_url: Url | None = None

    @field_validator("recording_enabled", "streaming_enabled", mode="before")
    @classmethod
    def _booleans_are_not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must be true or false, not null")
        return value


class AppSettingIn(Strict):
    """``POST /app_setting``: one Exotel-style key and its (string) value."""

    Key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]
    Value: Annotated[str, StringConstraints(max_length=2048)]


def settings_resource(row: AppSettings, *, with_created: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "popup_url": row.popup_url,
        "missed_call_url": row.missed_call_url,
        "callback_url": row.callback_url,
        "recording_enabled": row.recording_enabled,
        "recording_url": row.recording_url,
        "streaming_enabled": row.streaming_enabled,
        "streaming_url": row.streaming_url,
    }
    if with_created:
        settings["created_at"] = resource_time(row.created_at)
    settings["updated_at"] = resource_time(row.updated_at)
    return {"app_id": row.app_id, "settings": settings}


# --- devices (seed 03) --------------------------------------------------------------------


class DevicesUpdate(StrictClosed):
    phone: bool | None = None
    sip: bool | None = None


class SipRegistration(StrictClosed):
    registered: bool
    expires_in: WholeNumber | None = Field(default=None, ge=10, le=86_400)


class DeviceIn(Strict):
    """``PUT /device`` (exotel-facts §1.8)."""

    UserId: UserId
    DeviceName: Literal["phone", "sip"]
    DeviceStatus: bool


def devices_resource(user: User | UserRecord, *, now: datetime, detailed: bool) -> dict[str, Any]:
    """Seed 03's shape: the PUT answer has ``updated_at``; the GET adds SIP registration."""
    sip: dict[str, Any] = {"enabled": user.sip_enabled, "username": user.sip_username}
    data: dict[str, Any] = {
        "user_id": user.user_id,
        "devices": {
            "phone": {"enabled": user.phone_enabled, "number": user.phone_number},
            "sip": sip,
        },
    }
    if detailed:
        registered = user.sip_registered_until is not None and user.sip_registered_until > now
        sip["registered"] = registered
        sip["last_seen"] = resource_time(user.sip_last_seen) if user.sip_last_seen else None
    else:
        data["updated_at"] = resource_time(user.devices_updated_at or user.updated_at)
    return data


# --- response shapes (for the OpenAPI document; the functions above build the bodies) ------


class Shape(BaseModel):
    """A response body's documented shape."""


class TokenInfo(Shape):
    Entity: Literal["customer", "app", "agent"]
    Id: str
    CustomerID: str
    AppID: str | None
    UserID: str | None = Field(default=None, description="Agent tokens only")
    ExpiresAt: str


class AppData(Shape):
    AppID: str
    CustomerID: str
    AppName: str
    ExotelAccountSid: str
    ExotelDomain: str
    IsActive: bool
    CreatedAt: str
    UpdatedAt: str


class CreatedAppData(AppData):
    AppSecret: str = Field(description="Shown in this answer only")
    ExotelApiKey: str
    ExotelApiToken: str


class RotatedAppSecret(Shape):
    AppID: str
    AppSecret: str
    PreviousSecretExpiresAt: str


class UserMappingData(Shape):
    CustomerId: str
    customer_id: str
    AppID: str
    AppUserId: str
    ExotelAccountSid: str
    ExotelUserId: str
    AppUsername: str
    ExotelUserName: str | None
    AgentNumber: str
    ActiveDeviceId: str
    PhoneDeviceID: str
    SipDeviceID: str
    VirtualNumber: str
    Email: str
    OutboundActive: bool
    Role: str
    SipId: str
    SipSecret: str
    IsActive: bool
    UserDetail: None
    CreatedAt: str
    UpdatedAt: str


class UserMappingPage(Shape):
    Users: list[UserMappingData]
    PageSize: int
    LastEvaluatedValue: str = Field(description="Pass back as last_value; empty at the end")


class DeletedCount(Shape):
    Deleted: int


class AppResource(Shape):
    app_id: str
    customer_id: str
    name: str
    exotel_account_sid: str
    exotel_domain: str
    is_active: bool
    created_at: str
    updated_at: str


class SipAccount(Shape):
    username: str
    domain: str
    secret: str | None = Field(default=None, description="Only when the user is created")


class PhoneDevice(Shape):
    enabled: bool
    number: str | None


class SipDevice(Shape):
    enabled: bool
    username: str
    registered: bool | None = Field(default=None, description="GET and registration only")
    last_seen: str | None = None


class Devices(Shape):
    phone: PhoneDevice
    sip: SipDevice


class UserResource(Shape):
    user_id: str
    name: str
    email: str
    phone_number: str | None
    virtual_number: str | None
    role: str
    sip: SipAccount
    devices: Devices
    created_at: str
    updated_at: str


class UserPage(Shape):
    users: list[UserResource]
    has_more: bool
    next_cursor: str | None


class UserDeleted(Shape):
    user_id: str
    deleted: bool


class SettingsValues(Shape):
    popup_url: str | None
    missed_call_url: str | None
    callback_url: str | None
    recording_enabled: bool
    recording_url: str | None
    streaming_enabled: bool
    streaming_url: str | None
    created_at: str | None = Field(default=None, description="GET only")
    updated_at: str


class SettingsResource(Shape):
    app_id: str
    settings: SettingsValues


class AppSettingData(Shape):
    CustomerID: str
    AppID: str
    Key: str
    Value: str


class AppSettingItem(AppSettingData):
    SettingKey: str
    SettingVal: str


class DevicesResource(Shape):
    user_id: str
    devices: Devices
    updated_at: str | None = Field(default=None, description="PUT only")
