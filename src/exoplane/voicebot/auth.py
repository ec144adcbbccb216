"""Operators authenticate with ``Authorization: Bearer <api key>``; roles nest.

``/api/v1`` spends the same budgets as ``/v2``, through the same functions: each operator has
its own, and a failed authentication counts against the client's address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from exoplane.errors import Forbidden, Unauthorized
from exoplane.integrations.auth import client_key, enforce_rate_limit
from exoplane.security import hash_secret
from exoplane.state import AppState, app_state
from exoplane.voicebot import repository

ROLE_RANK = {"admin": 1, "super_admin": 2}


@dataclass(frozen=True, slots=True)
class OperatorPrincipal:
    id: str
    email: str
    role: str

    @property
    def key(self) -> str:
        return f"operator:{self.id}"


async def authenticate_operator(request: Request) -> OperatorPrincipal:
    state = app_state(request)
    try:
        operator = await _operator_of(request, state)
    except Unauthorized:
        await enforce_rate_limit(request, state, client_key(request))
        raise
    await enforce_rate_limit(request, state, operator.key)
    return operator


async def _operator_of(request: Request, state: AppState) -> OperatorPrincipal:
    header = request.headers.get("authorization", "").strip()
    if not header:
        raise Unauthorized(
            "Missing Authorization header: send 'Bearer <api key>' (from "
            "`exoplane operators create`)",
            code="missing_api_key",
        )
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "Malformed Authorization header: expected 'Bearer <api key>'",
            code="malformed_api_key",
        )
    operator = await repository.operator_by_key_hash(state.reader, hash_secret(key.strip()))
    if operator is None:
        raise Unauthorized("Invalid API key", code="invalid_api_key")
    return OperatorPrincipal(*operator)


def requires(role: str) -> Callable[..., Awaitable[OperatorPrincipal]]:
    async def check(
        operator: Annotated[OperatorPrincipal, Depends(authenticate_operator)],
    ) -> OperatorPrincipal:
        if ROLE_RANK.get(operator.role, 0) < ROLE_RANK[role]:
            raise Forbidden(
                f"This needs the {role} role; {operator.email} is {operator.role}",
                code="insufficient_role",
            )
        return operator

    return check


AdminAuth = Annotated[OperatorPrincipal, Depends(requires("admin"))]
SuperAdminAuth = Annotated[OperatorPrincipal, Depends(requires("super_admin"))]
