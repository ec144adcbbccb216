"""``/v2/integrations``: Exotel-compatible endpoints (seed 01, exotel-facts §1) and the
resource-style user endpoints (SPEC §4.4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Query, Request
from pydantic import Field
from starlette.responses import Response

from exoplane.db import Session
from exoplane.errors import Forbidden, NotFound
from exoplane.idempotency import fingerprint, run_once
from exoplane.inputs import Int64, PathId
from exoplane.integrations import service
from exoplane.integrations.auth import (
    AgentPrincipal,
    AnyAuth,
    AppAuth,
    AppOrAgentAuth,
    AppPrincipal,
    AppScoped,
    CustomerAuth,
    TokenAuth,
    agent_scope_error,
    client_key,
    enforce_rate_limit,
)
from exoplane.integrations.repository import UserRecord
from exoplane.integrations.schemas import (
    AgentTokenRequest,
    AppCreate,
    AppData,
    AppResource,
    AppSettingData,
    AppSettingIn,
    AppSettingItem,
    CreatedAppData,
    DeletedCount,
    DeviceIn,
    DevicesResource,
    DevicesUpdate,
    RotatedAppSecret,
    SecretRotation,
    SettingsResource,
    SettingsUpdate,
    SipRegistration,
    TokenInfo,
    TokenRequest,
    UserCreate,
    UserDeleted,
    UserId,
    UserMappingData,
    UserMappingIn,
    UserMappingPage,
    UserPage,
    UserResource,
    UserUpdate,
    app_data,
    app_resource,
    devices_resource,
    mapping_update_from,
    settings_resource,
    user_mapping,
    user_resource,
)
from exoplane.integrations.sdk_secret import encode_for_sdk
from exoplane.models import AppSettings, User
from exoplane.models.base import utcnow
from exoplane.openapi import Legacy, Resource
from exoplane.responses import JSONBytesResponse, legacy_ok, resource_ok
from exoplane.state import AppState, State, app_state

legacy = APIRouter(prefix="/v2/integrations", tags=["integrations (Exotel-compatible)"])
resources = APIRouter(prefix="/v2/integrations", tags=["users"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def _with_replay_flag(response: JSONBytesResponse, replayed: bool) -> JSONBytesResponse:
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


# --- tokens -------------------------------------------------------------------------------


@legacy.post("/token", response_model=Legacy[str])
async def create_token(
    request: Request, state: State, session: Session, body: TokenRequest
) -> Response:
    """Exchange an Id and Secret (customer or app) for a token valid up to 90 days."""
    await enforce_rate_limit(request, state, client_key(request))
    issued = await service.issue_token(session, state.reader, state.vault, body)
    response = legacy_ok(request.scope, issued.token)
    response.headers["X-Token-Expires-At"] = issued.expires_at.isoformat()
    return response


@legacy.post("/agent_token", response_model=Legacy[str])
async def create_agent_token(
    request: Request, session: Session, principal: AppAuth, body: AgentTokenRequest
) -> Response:
    """With the app token, mint a token for one agent's browser: it acts as that user only,
    for 12 hours by default, at most 24 hours and never past the app token."""
    issued = await service.issue_agent_token(session, principal, body)
    response = legacy_ok(request.scope, issued.token)
    response.headers["X-Token-Expires-At"] = issued.expires_at.isoformat()
    return response


@legacy.get("/token", response_model=Legacy[TokenInfo])
async def introspect_token(request: Request, principal: TokenAuth) -> Response:
    """Describe the presented token: its entity, owner and expiry."""
    return legacy_ok(request.scope, service.describe_token(principal))


@legacy.delete("/token", response_model=Legacy[str])
async def revoke_token(request: Request, session: Session, principal: TokenAuth) -> Response:
    """Revoke the presented token at once."""
    await service.revoke_token(session, principal)
    return legacy_ok(request.scope, "Token revoked")


# --- apps ---------------------------------------------------------------------------------


@legacy.post("/app", response_model=Legacy[CreatedAppData])
async def register_app(
    request: Request,
    state: State,
    session: Session,
    principal: CustomerAuth,
    body: AppCreate,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Register a WebRTC calling app; the only response that shows AppSecret."""

    async def register() -> tuple[int, Any]:
        return 200, await service.register_app(session, state.vault, principal, body)

    outcome = await run_once(
        session,
        state.vault,
        principal=principal.key,
        key=idempotency_key,
        request_hash=fingerprint("POST", "/app", body.model_dump(mode="json")),
        action=register,
    )
    return _with_replay_flag(legacy_ok(request.scope, outcome.data), outcome.replayed)


@legacy.get("/app", response_model=Legacy[AppData | list[AppData]])
async def get_apps(
    request: Request,
    principal: TokenAuth,
    entity: Annotated[Literal["app", "customer"], Query()] = "app",
) -> Response:
    """``?entity=app`` (default, app token): this app. ``?entity=customer``: list all apps."""
    if entity == "customer":
        if isinstance(principal, AgentPrincipal):
            raise agent_scope_error()
        if isinstance(principal, AppPrincipal):
            raise Forbidden(
                "GET /app?entity=customer lists a customer's apps and needs a customer token",
                code="wrong_entity",
            )
        apps = await service.list_apps(app_state(request).reader, principal)
        return legacy_ok(request.scope, [app_data(app) for app in apps])
    if not isinstance(principal, AppPrincipal | AgentPrincipal):
        raise Forbidden(
            "GET /app returns one app and needs an app token; "
            "use GET /app?entity=customer to list apps with a customer token",
            code="wrong_entity",
        )
    return legacy_ok(request.scope, app_data(service.get_app(principal)))


@legacy.delete("/app", response_model=Legacy[str])
async def delete_app(request: Request, session: Session, principal: AppAuth) -> Response:
    """Delete this app with its users and tokens. Irreversible."""
    await service.delete_app(session, principal)
    return legacy_ok(request.scope, "Deleted Successfully")


@legacy.post("/app/secret", response_model=Legacy[RotatedAppSecret])
async def rotate_app_secret(
    request: Request,
    state: State,
    session: Session,
    principal: AppAuth,
    body: Annotated[SecretRotation | None, Body()] = None,
) -> Response:
    """Issue a new AppSecret; the old one stays valid for GraceSeconds (default 24 h)."""
    grace = (body or SecretRotation()).GraceSeconds
    return legacy_ok(
        request.scope, await service.rotate_app_secret(session, state.vault, principal, grace)
    )


# --- users, Exotel-compatible -------------------------------------------------------------


def _mappings(
    state: AppState, principal: AppScoped, users: Sequence[User | UserRecord]
) -> list[dict[str, Any]]:
    app = service.get_app(principal)
    return [
        user_mapping(user, app, encode_for_sdk(service.sip_secret_of(state.vault, user)))
        for user in users
    ]


@legacy.post("/usermapping", response_model=Legacy[list[UserMappingData]])
async def create_user_mappings(
    request: Request,
    state: State,
    session: Session,
    principal: AppAuth,
    body: Annotated[list[UserMappingIn], Field(min_length=1, max_length=500)],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Map one or more users (a JSON array) to this app, with generated SIP credentials."""

    async def create() -> tuple[int, Any]:
        created = await service.create_users(
            session,
            state.vault,
            state.settings,
            principal,
            [item.fields() for item in body],
            account_sids={item.ExotelAccountSid for item in body},
        )
        return 200, _mappings(state, principal, [c.user for c in created])

    outcome = await run_once(
        session,
        state.vault,
        principal=principal.key,
        key=idempotency_key,
        request_hash=fingerprint("POST", "/usermapping", [i.model_dump(mode="json") for i in body]),
        action=create,
    )
    return _with_replay_flag(legacy_ok(request.scope, outcome.data), outcome.replayed)


@legacy.get("/usermapping", response_model=Legacy[UserMappingData | UserMappingPage])
async def get_user_mappings(
    request: Request,
    state: State,
    principal: AppOrAgentAuth,
    user_id: Annotated[str | None, Query(min_length=1)] = None,
    last_value: Annotated[Int64, Query()] = 0,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """``?user_id=``: one mapping with its SIP credentials; otherwise a page of mappings.
    An agent token reads its own mapping only."""
    if user_id is not None:
        user = await service.read_user(state.reader, principal, user_id)
        return legacy_ok(request.scope, (_mappings(state, principal, [user]))[0])
    if isinstance(principal, AgentPrincipal):
        raise agent_scope_error()
    users, next_cursor = await service.list_users(
        state.reader, principal, after=last_value, limit=page_size
    )
    data = {
        "Users": _mappings(state, principal, list(users)),
        "PageSize": page_size,
        "LastEvaluatedValue": str(next_cursor) if next_cursor is not None else "",
    }
    return legacy_ok(request.scope, data)


@legacy.put("/usermapping/{user_id}", response_model=Legacy[UserMappingData])
async def update_user_mapping(
    request: Request,
    state: State,
    session: Session,
    principal: AppAuth,
    user_id: str,
    body: Annotated[Any, Body()],
) -> Response:
    """Change a mapping's names, numbers or role; its SIP credentials stay as they are."""
    changes = mapping_update_from(body).changes()
    user = await service.update_user(session, principal, user_id, changes)
    return legacy_ok(request.scope, _mappings(state, principal, [user])[0])


@legacy.delete("/usermapping", response_model=Legacy[str])
async def delete_user_mappings(
    request: Request,
    session: Session,
    principal: AppAuth,
    user_id: Annotated[str | None, Query(min_length=1)] = None,
) -> Response:
    """Without ``?user_id=``: delete every user of this app (Exotel's behaviour)."""
    if user_id is not None:
        await service.delete_user(session, principal, user_id)
    else:
        await service.delete_all_users(session, principal)
    return legacy_ok(request.scope, "Deleted Successfully")


@legacy.delete("/users/{user_id}", response_model=Legacy[str])
async def delete_user_by_id(
    request: Request, session: Session, principal: AppAuth, user_id: str
) -> Response:
    """Delete one user."""
    await service.delete_user(session, principal, user_id)
    return legacy_ok(request.scope, "Deleted Successfully")


@legacy.delete("/users", response_model=Legacy[DeletedCount])
async def delete_users_by_list(
    request: Request,
    session: Session,
    principal: AppAuth,
    body: Annotated[list[UserId], Body(min_length=1, max_length=500)],
) -> Response:
    """Delete the users whose ids the JSON array lists."""
    deleted = await service.delete_users(session, principal, body)
    return legacy_ok(request.scope, {"Deleted": deleted})


# --- resource style -----------------------------------------------------------------------


@resources.get("/{customer_id}/apps/{app_id}", tags=["apps"], response_model=Resource[AppResource])
async def get_app_resource(
    session: Session, principal: AnyAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """One app, for its customer (customer token) or itself (app token); never a secret."""
    app = await service.get_app_in_path(session, principal, customer_id, app_id)
    return resource_ok(app_resource(app))


USERS = "/{customer_id}/apps/{app_id}/users"


@resources.post(USERS, status_code=201, response_model=Resource[UserResource])
async def create_user(
    state: State,
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    body: UserCreate,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create a user (agent) with generated SIP credentials; the SIP secret is shown once."""
    service.check_app_path(principal, customer_id, app_id)

    async def create() -> tuple[int, Any]:
        created = await service.create_users(
            session, state.vault, state.settings, principal, [body.fields()]
        )
        return 201, user_resource(created[0].user, sip_secret=created[0].sip_secret)

    outcome = await run_once(
        session,
        state.vault,
        principal=principal.key,
        key=idempotency_key,
        request_hash=fingerprint("POST", USERS, body.model_dump(mode="json")),
        action=create,
    )
    return _with_replay_flag(resource_ok(outcome.data, status=outcome.status), outcome.replayed)


@resources.get(USERS, response_model=Resource[UserPage])
async def list_users(
    state: State,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[Int64, Query()] = 0,
) -> Response:
    """A page of users in creation order; pass ``next_cursor`` back as ``cursor``."""
    service.check_app_path(principal, customer_id, app_id)
    users, next_cursor = await service.list_users(
        state.reader, principal, after=cursor, limit=limit
    )
    return resource_ok(
        {
            "users": [user_resource(user) for user in users],
            "has_more": next_cursor is not None,
            "next_cursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


@resources.get(USERS + "/{user_id}", response_model=Resource[UserResource])
async def get_user(
    state: State, principal: AppAuth, customer_id: PathId, app_id: PathId, user_id: str
) -> Response:
    """One user with its devices."""
    service.check_app_path(principal, customer_id, app_id)
    return resource_ok(user_resource(await service.read_user(state.reader, principal, user_id)))


@resources.put(USERS + "/{user_id}", response_model=Resource[UserResource])
async def update_user(
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
    body: UserUpdate,
) -> Response:
    """Change a user's fields; fields not sent keep their value."""
    service.check_app_path(principal, customer_id, app_id)
    changes = body.model_dump(exclude_unset=True)
    user = await service.update_user(session, principal, user_id, changes, rename_display_name=True)
    return resource_ok(user_resource(user))


@resources.delete(USERS + "/{user_id}", response_model=Resource[UserDeleted])
async def delete_user(
    session: Session, principal: AppAuth, customer_id: PathId, app_id: PathId, user_id: str
) -> Response:
    """Delete a user and its devices."""
    service.check_app_path(principal, customer_id, app_id)
    await service.delete_user(session, principal, user_id)
    return resource_ok({"user_id": user_id, "deleted": True})


routers = (legacy, resources)


# --- app settings (seed 02) ---------------------------------------------------------------

SETTINGS = "/{customer_id}/apps/{app_id}/settings"


def _settings_response(row: AppSettings, *, with_created: bool) -> Response:
    response = resource_ok(settings_resource(row, with_created=with_created))
    response.headers["ETag"] = service.etag(row)
    return response


@resources.put(SETTINGS, tags=["settings"], response_model=Resource[SettingsResource])
async def update_settings(
    state: State,
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    body: SettingsUpdate,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    """Change webhook URLs, recording and streaming; fields not sent keep their value."""
    service.check_app_path(principal, customer_id, app_id)
    changes = body.model_dump(exclude_unset=True)
    row = await service.update_settings(
        session, state.vault, state.settings, principal, changes, if_match
    )
    return _settings_response(row, with_created=False)


@resources.get(SETTINGS, tags=["settings"], response_model=Resource[SettingsResource])
async def get_settings(
    state: State, session: Session, principal: AppAuth, customer_id: PathId, app_id: PathId
) -> Response:
    """The app's settings, with an ETag to send back as If-Match."""
    service.check_app_path(principal, customer_id, app_id)
    row = await service.app_settings(session, state.vault, principal.app_id)
    return _settings_response(row, with_created=True)


@legacy.post("/app_setting", tags=["settings"], response_model=Legacy[AppSettingData])
async def add_app_setting(
    request: Request, state: State, session: Session, principal: AppAuth, body: AppSettingIn
) -> Response:
    """Add or replace one setting by Exotel key (popup, missedCall, callback, record, ...)."""
    await service.set_app_setting(
        session, state.vault, state.settings, principal, body.Key, body.Value
    )
    data = {
        "CustomerID": principal.customer_id,
        "AppID": principal.app_id,
        "Key": body.Key,
        "Value": body.Value,
    }
    return legacy_ok(request.scope, data)


@legacy.get(
    "/app_setting",
    tags=["settings"],
    response_model=Legacy[AppSettingItem | list[AppSettingItem]],
)
async def list_app_settings(
    request: Request,
    state: State,
    session: Session,
    principal: AppOrAgentAuth,
    key: Annotated[str | None, Query(min_length=1)] = None,
) -> Response:
    """Every setting as Key/Value pairs, or the one named by ``?key=``."""
    row = await service.app_settings(session, state.vault, principal.app_id)
    items = service.app_setting_items(row, principal)
    if key is None:
        return legacy_ok(request.scope, items)
    for item in items:
        if item["Key"] == key:
            return legacy_ok(request.scope, item)
    raise NotFound(f"No setting {key!r} in this app", code="setting_not_found")


# --- devices (seed 03) --------------------------------------------------------------------

DEVICES = USERS + "/{user_id}/devices"


@resources.put(DEVICES, tags=["devices"], response_model=Resource[DevicesResource])
async def update_devices(
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
    body: DevicesUpdate,
) -> Response:
    """Turn the user's phone and/or SIP device on or off; at least one must stay on."""
    service.check_app_path(principal, customer_id, app_id)
    user = await service.set_devices(session, principal, user_id, phone=body.phone, sip=body.sip)
    return resource_ok(devices_resource(user, now=utcnow(), detailed=False))


@resources.get(DEVICES, tags=["devices"], response_model=Resource[DevicesResource])
async def get_devices(
    state: State, principal: AppAuth, customer_id: PathId, app_id: PathId, user_id: str
) -> Response:
    """The user's devices, with the SIP device's registration."""
    service.check_app_path(principal, customer_id, app_id)
    user = await service.read_user(state.reader, principal, user_id)
    return resource_ok(devices_resource(user, now=utcnow(), detailed=True))


@resources.post(
    DEVICES + "/sip/registration", tags=["devices"], response_model=Resource[DevicesResource]
)
async def report_sip_registration(
    state: State,
    session: Session,
    principal: AppAuth,
    customer_id: PathId,
    app_id: PathId,
    user_id: str,
    body: SipRegistration,
) -> Response:
    """A registrar reports the SIP device (un)registered; registration lapses after its TTL."""
    service.check_app_path(principal, customer_id, app_id)
    user = await service.report_sip_registration(
        session,
        state.settings,
        principal,
        user_id,
        registered=body.registered,
        expires_in=body.expires_in,
    )
    return resource_ok(devices_resource(user, now=utcnow(), detailed=True))


@legacy.put("/device", tags=["devices"], response_model=Legacy[UserMappingData])
async def update_device(
    request: Request, state: State, session: Session, principal: AppAuth, body: DeviceIn
) -> Response:
    """Exotel's form: select the device (``phone`` or ``sip``) a user's calls ring on."""
    user = await service.select_device(
        session, principal, body.UserId, body.DeviceName, body.DeviceStatus
    )
    return legacy_ok(request.scope, _mappings(state, principal, [user])[0])
