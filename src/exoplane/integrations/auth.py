"""Who is calling: token authentication, entity checks and the per-principal rate limit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from exoplane.errors import Forbidden, RateLimited, Unauthorized
from exoplane.integrations import repository
from exoplane.integrations.repository import AppRecord
from exoplane.logs import get_logger
from exoplane.middleware import RATE_LIMIT_HEADERS
from exoplane.models.base import utcnow
from exoplane.security import hash_secret
from exoplane.state import State, app_state

_TOKEN = re.compile(r"^[A-Za-z0-9_\-.~+/=]{16,512}$")

log = get_logger("exoplane.auth")


@dataclass(frozen=True, slots=True)
class CustomerPrincipal:
    customer_id: str
    token_id: str
    expires_at: datetime

    entity = "customer"

    @property
    def key(self) -> str:
        return f"customer:{self.customer_id}"


@dataclass(frozen=True, slots=True)
class AppPrincipal:
    customer_id: str
    app_id: str
    token_id: str
    expires_at: datetime
    app: AppRecord

    entity = "app"

    @property
    def key(self) -> str:
        return f"app:{self.app_id}"


@dataclass(frozen=True, slots=True)
class AgentPrincipal:
    """An agent token: minted by an app for one of its users, to be held by that agent's
    browser. It may only read its app, its settings and its own mapping, and place calls as
    itself; every other endpoint refuses it (see ``AnyAuth``)."""

    customer_id: str
    app_id: str
    user_id: str
    token_id: str
    expires_at: datetime
    app: AppRecord

    entity = "agent"

    @property
    def key(self) -> str:
        # Counted with its app: the app's budget is the contract, however many agents it has.
        return f"app:{self.app_id}"


Principal = CustomerPrincipal | AppPrincipal | AgentPrincipal
AppScoped = AppPrincipal | AgentPrincipal

AGENT_SCOPE = (
    "GET /app, GET /app_setting, GET /usermapping?user_id=<its own user>, "
    "POST /call/outbound_call as its own user, and GET or DELETE /token"
)


async def enforce_rate_limit(request: Request, state: State, key: str) -> None:
    """Count this request against ``key``'s budget; 429 once it is spent."""
    try:
        decision = await state.rate_limiter.hit(key)
    except Exception as exc:  # the limiter's store is down: serve rather than fail every call
        log.warning("rate limiter unavailable", error=type(exc).__name__)
        return
    setattr(request.state, RATE_LIMIT_HEADERS, decision.raw_headers())
    if not decision.allowed:
        raise RateLimited(  # its headers come from the request state, as on every response
            f"Rate limit of {state.settings.rate_limit} exceeded; "
            f"retry after {decision.reset_after} seconds"
        )


def client_key(request: Request) -> str:
    return f"ip:{request.client.host if request.client else 'unknown'}"


def presented_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None or not header.strip():
        raise Unauthorized(
            "Missing Authorization header: send the token from POST /v2/integrations/token",
            code="missing_token",
        )
    token = header.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not _TOKEN.match(token):
        raise Unauthorized(
            "Malformed Authorization header: expected the token, optionally after 'Bearer '",
            code="malformed_token",
        )
    return token


async def authenticate(request: Request) -> Principal:
    state = app_state(request)
    try:
        token = presented_token(request)
        row = await repository.find_credential(state.reader, hash_secret(token))
        if row is None:
            raise Unauthorized(
                "Invalid token: it was never issued here, or its app was deleted",
                code="invalid_token",
            )
        if row.revoked_at is not None:
            raise Unauthorized("Token has been revoked; request a new one", code="token_revoked")
        if row.customer_disabled:
            raise customer_disabled(row.customer_id)
        if row.expires_at <= utcnow():
            raise Unauthorized(
                f"Token expired at {row.expires_at.isoformat()}; request a new one",
                code="token_expired",
            )
    except Unauthorized:
        await enforce_rate_limit(request, state, client_key(request))
        raise
    principal: Principal
    if row.entity == "agent":
        if row.app is None or row.user_id is None:
            raise Unauthorized("Invalid token: its user or app was deleted", code="invalid_token")
        principal = AgentPrincipal(
            row.customer_id, row.app.id, row.user_id, row.token_id, row.expires_at, row.app
        )
    elif row.app is not None:
        principal = AppPrincipal(row.customer_id, row.app.id, row.token_id, row.expires_at, row.app)
    else:
        principal = CustomerPrincipal(row.customer_id, row.token_id, row.expires_at)
    await enforce_rate_limit(request, state, principal.key)
    return principal


def customer_disabled(customer_id: str) -> Unauthorized:
    return Unauthorized(
        f"Customer {customer_id} is disabled; its tokens and its apps' tokens are refused",
        code="customer_disabled",
    )


def agent_scope_error() -> Forbidden:
    return Forbidden(
        f"An agent token may only call {AGENT_SCOPE}; this endpoint needs the app token",
        code="agent_scope",
    )


async def require_not_agent(
    principal: Annotated[Principal, Depends(authenticate)],
) -> CustomerPrincipal | AppPrincipal:
    if isinstance(principal, AgentPrincipal):
        raise agent_scope_error()
    return principal


async def require_app(principal: Annotated[Principal, Depends(authenticate)]) -> AppPrincipal:
    if isinstance(principal, AgentPrincipal):
        raise agent_scope_error()
    if not isinstance(principal, AppPrincipal):
        raise Forbidden(
            "This endpoint needs an app token (Entity 'app'); a customer token was sent",
            code="wrong_entity",
        )
    return principal


async def require_app_or_agent(
    principal: Annotated[Principal, Depends(authenticate)],
) -> AppScoped:
    if not isinstance(principal, AppPrincipal | AgentPrincipal):
        raise Forbidden(
            "This endpoint needs an app token (Entity 'app'); a customer token was sent",
            code="wrong_entity",
        )
    return principal


async def require_customer(
    principal: Annotated[Principal, Depends(authenticate)],
) -> CustomerPrincipal:
    if isinstance(principal, AgentPrincipal):
        raise agent_scope_error()
    if not isinstance(principal, CustomerPrincipal):
        raise Forbidden(
            "This endpoint needs a customer token (Entity 'customer'); an app token was sent",
            code="wrong_entity",
        )
    return principal


# Every dependency but ``TokenAuth`` and ``AppOrAgentAuth`` refuses agent tokens, so an
# endpoint lets agents in only by naming one of those two.
TokenAuth = Annotated[Principal, Depends(authenticate)]
AnyAuth = Annotated[CustomerPrincipal | AppPrincipal, Depends(require_not_agent)]
AppAuth = Annotated[AppPrincipal, Depends(require_app)]
AppOrAgentAuth = Annotated[AppScoped, Depends(require_app_or_agent)]
CustomerAuth = Annotated[CustomerPrincipal, Depends(require_customer)]
