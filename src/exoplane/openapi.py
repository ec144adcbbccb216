"""The OpenAPI document and the pages that show it.

FastAPI writes most of the document from the routes. This module adds what the routes cannot
say by themselves: who may call each operation (security schemes, read from the auth
dependency each route names), the error statuses it can answer in the envelope its path uses,
and no 422 (validation errors are 400). ``/docs`` and ``/redoc`` load their scripts from the
``fastapi-offline`` package, served by this app, so they work without internet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse

from exoplane.errors import is_legacy_path
from exoplane.integrations import auth as token_auth
from exoplane.voicebot import auth as operator_auth

DataT = TypeVar("DataT")

DOCS_ASSETS = "/docs-assets"
_ASSETS_DIRECTORY = Path(fastapi_offline.__file__).parent / "static"


# --- envelopes ----------------------------------------------------------------------------


class Legacy(BaseModel, Generic[DataT]):
    """Exotel's success envelope (``/v2/integrations`` token, app, user and call endpoints)."""

    RequestId: str
    Status: Literal["Success"]
    Code: int = Field(description="The HTTP status, repeated")
    Error: Literal[""]
    Data: DataT


class Resource(BaseModel, Generic[DataT]):
    """The resource-style success envelope (seeds 02 and 03)."""

    success: Literal[True]
    data: DataT


class LegacyFailure(BaseModel):
    """Exotel's envelope of an error."""

    RequestId: str
    Status: Literal["Failed"]
    Code: int = Field(description="The HTTP status, repeated")
    Error: str | dict[str, Any] = Field(description="What went wrong")
    Data: None


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable snake_case code, e.g. validation_error")
    message: str
    request_id: str
    field: str | None = Field(default=None, description="The input at fault, when one is")


class ResourceFailure(BaseModel):
    """The envelope of an error everywhere but Exotel's own endpoints."""

    success: Literal[False]
    error: ErrorDetail


# --- who may call -------------------------------------------------------------------------

CUSTOMER = "customerToken"
APP = "appToken"
AGENT = "agentToken"
OPERATOR = "operatorApiKey"

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    CUSTOMER: {
        "type": "http",
        "scheme": "bearer",
        "description": "A customer token from POST /v2/integrations/token with Entity "
        "'customer', sent as `Authorization: Bearer <token>` (the bare token works too).",
    },
    APP: {
        "type": "http",
        "scheme": "bearer",
        "description": "An app token from POST /v2/integrations/token with Entity 'app', "
        "sent as `Authorization: Bearer <token>` (the bare token works too).",
    },
    AGENT: {
        "type": "http",
        "scheme": "bearer",
        "description": "An agent token from POST /v2/integrations/agent_token, for one "
        "user's browser, sent as `Authorization: Bearer <token>`.",
    },
    OPERATOR: {
        "type": "http",
        "scheme": "bearer",
        "description": "An operator's API key from `exoplane operators create`, sent as "
        "`Authorization: Bearer <api key>`.",
    },
}

# Each auth dependency, and the credentials it lets through.
_ACCEPTS: dict[Callable[..., Any], tuple[str, ...]] = {
    token_auth.authenticate: (CUSTOMER, APP, AGENT),
    token_auth.require_not_agent: (CUSTOMER, APP),
    token_auth.require_app: (APP,),
    token_auth.require_app_or_agent: (APP, AGENT),
    token_auth.require_customer: (CUSTOMER,),
    operator_auth.authenticate_operator: (OPERATOR,),
}


def accepted_credentials(dependant: Dependant) -> tuple[str, ...]:
    """The security schemes the route's auth dependency accepts (none: it is open)."""
    for dependency in dependant.dependencies:
        if dependency.call in _ACCEPTS:
            return _ACCEPTS[dependency.call]
        found = accepted_credentials(dependency)
        if found:
            return found
    return ()


# --- error statuses -----------------------------------------------------------------------

ERROR_DESCRIPTIONS = {
    400: "Invalid input: the message names the field",
    401: "Missing, malformed, unknown, revoked or expired credentials",
    403: "The credentials are valid but not allowed here (wrong entity or role)",
    404: "No such resource here (or in another tenant)",
    409: "A conflict: it exists already, changed meanwhile, or an idempotency key was reused",
    413: "The request body is over the size limit",
    429: "The rate limit is spent; see the RateLimit headers and Retry-After",
    502: "Exotel refused, failed or could not be reached",
    503: "Not ready: a dependency does not answer",
}

# Statuses beyond the ones every operation of its kind can answer (see ``error_statuses``).
_MORE_STATUSES: dict[tuple[str, str], set[int]] = {
    ("post", "/v2/integrations/token"): {401, 429},
    ("put", "/v2/integrations/usermapping/{user_id}"): {409},
    ("put", "/v2/integrations/{customer_id}/apps/{app_id}/users/{user_id}"): {409},
    ("put", "/v2/integrations/{customer_id}/apps/{app_id}/settings"): {409},
    ("post", "/v2/integrations/app_setting"): {409},
    (
        "post",
        "/v2/integrations/{customer_id}/apps/{app_id}/webhooks/deliveries/{delivery_id}/retry",
    ): {409},
    ("post", "/api/v1/integrations/exotel/dids"): {409},
    ("put", "/api/v1/integrations/exotel/dids/{did_id}"): {409},
    ("post", "/v2/integrations/call/outbound_call"): {502},
    ("post", "/api/v1/integrations/exotel/dids/{did_id}/test-call"): {409, 502},
}
# Exotel's hooks carry a capability (?sig=) instead of a token: a bad one is a 401.
_HOOKS = "/v2/integrations/call/"


def error_statuses(method: str, path: str, operation: dict[str, Any], secured: bool) -> set[int]:
    """Every error status the operation can answer.

    Any request can be refused with a 400 (a NUL anywhere, a repeated Authorization header,
    an invalid parameter). Authenticated operations add 401, 403 (wrong entity, an agent
    outside its scope, a role too low), 404 (resources are looked up within the caller's
    tenant) and 429 (the per-principal limit). A body brings 413, and an Idempotency-Key 409.
    """
    statuses = {400}
    parameters = operation.get("parameters", [])
    if secured:
        statuses |= {401, 403, 404, 429}
    if any(parameter["in"] == "path" for parameter in parameters):
        statuses.add(404)
    if path.startswith(_HOOKS):
        statuses |= {401, 404}
    if "requestBody" in operation or method in ("post", "put"):
        statuses.add(413)
    if any(parameter["name"] == "Idempotency-Key" for parameter in parameters):
        statuses.add(409)
    statuses |= _MORE_STATUSES.get((method, path), set())
    return statuses


# --- the document -------------------------------------------------------------------------


def _failure_ref(path: str) -> dict[str, str]:
    model = LegacyFailure if is_legacy_path(path) else ResourceFailure
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (LegacyFailure, ResourceFailure):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(model_schema.pop("$defs", {}))
        schemas[model.__name__] = model_schema
    components["securitySchemes"] = SECURITY_SCHEMES

    security = {
        (route.path, method.lower()): accepted_credentials(route.dependant)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            schemes = security.get((path, method), ())
            if schemes:
                operation["security"] = [{scheme: []} for scheme in schemes]
            for status in sorted(error_statuses(method, path, operation, bool(schemes))):
                if str(status) in responses:  # documented by the route itself
                    continue
                responses[str(status)] = {
                    "description": ERROR_DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": _failure_ref(path)}},
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json``, and ``/docs`` and ``/redoc`` with
    their assets from this app."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSETS_DIRECTORY), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
