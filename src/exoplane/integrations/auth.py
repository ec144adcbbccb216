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


Principal = CustomerPrincipal | AppPrincipal


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
        if row.expires_at <= utcnow():
            raise Unauthorized(
                f"Token expired at {row.expires_at.isoformat()}; request a new one",
                code="token_expired",
            )
    except Unauthorized:
        await enforce_rate_limit(request, state, client_key(request))
        raise
    principal: Principal
    if row.app is not None:
        principal = AppPrincipal(row.customer_id, row.app.id, row.token_id, row.expires_at, row.app)
    else:
        principal = CustomerPrincipal(row.customer_id, row.token_id, row.expires_at)
    await enforce_rate_limit(request, state, principal.key)
    return principal


async def require_app(principal: Annotated[Principal, Depends(authenticate)]) -> AppPrincipal:
    if not isinstance(principal, AppPrincipal):
        raise Forbidden(
            "This endpoint needs an app token (Entity 'app'); a customer token was sent",
            code="wrong_entity",
        )
    return principal


async def require_customer(
    principal: Annotated[Principal, Depends(authenticate)],
) -> CustomerPrincipal:
    if not isinstance(principal, CustomerPrincipal):
        raise Forbidden(
            "This endpoint needs a customer token (Entity 'customer'); an app token was sent",
            code="wrong_entity",
        )
    return principal


AnyAuth = Annotated[Principal, Depends(authenticate)]
AppAuth = Annotated[AppPrincipal, Depends(require_app)]
CustomerAuth = Annotated[CustomerPrincipal, Depends(require_customer)]
