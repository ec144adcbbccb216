"""Who is signed in to the console, and whether their role allows the page.

Every request that changes something also carries the form's CSRF token, checked here before
the route runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from exoplane.console import service
from exoplane.console.service import SESSION_COOKIE, SignedIn
from exoplane.db import Session
from exoplane.errors import Forbidden
from exoplane.state import State
from exoplane.voicebot.auth import ROLE_RANK

SAFE_METHODS = ("GET", "HEAD")


async def signed_in(request: Request, state: State, session: Session) -> SignedIn:
    signed = await service.signed_in(
        session,
        state.reader,
        state.settings,
        state.capabilities,
        request.cookies.get(SESSION_COOKIE),
    )
    request.state.console_operator = signed.operator
    if request.method not in SAFE_METHODS:
        form = await request.form()
        service.check_csrf(state.capabilities, signed.token_hash, form.get("csrf_token"))
    return signed


def requires(role: str) -> Callable[..., Awaitable[SignedIn]]:
    async def check(signed: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
        operator = signed.operator
        if ROLE_RANK.get(operator.role, 0) < ROLE_RANK[role]:
            raise Forbidden(
                f"This needs the {role} role; you are signed in as {operator.email}, "
                f"an {operator.role}.",
                code="insufficient_role",
            )
        return signed

    return check


AdminConsole = Annotated[SignedIn, Depends(requires("admin"))]
SuperAdminConsole = Annotated[SignedIn, Depends(requires("super_admin"))]
