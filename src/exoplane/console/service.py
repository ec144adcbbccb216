"""The console's rules: signing in and out, sessions and their expiry, CSRF tokens, the
overview's checklist and whether a test call has ended. Never commits: the request's unit of
work does.

Everything a page changes goes through the same services as ``/api/v1``; this module only
holds what exists because there is a browser: the session and the forms' tokens.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.capabilities import Capabilities
from exoplane.config import Settings
from exoplane.console import repository
from exoplane.console.errors import CsrfRefused, SignInFailed, SignInLimited, SignInRequired
from exoplane.db import Reader
from exoplane.integrations.calls import service as calls
from exoplane.integrations.calls.service import TimelineEntry
from exoplane.media.metrics import STATS
from exoplane.models import ConsoleSession
from exoplane.models.base import utcnow
from exoplane.ratelimit import RateLimiter
from exoplane.security import hash_password, hash_secret, new_token, password_matches
from exoplane.voicebot import service as voicebot
from exoplane.voicebot.auth import OperatorPrincipal

SESSION_COOKIE = "exoplane_console"
# Binds the sign-in form's CSRF token to this browser before there is a session.
SIGN_IN_COOKIE = "exoplane_console_sign_in"
# A session's last use is written at most this often (and at most a quarter of the idle
# timeout), not on every page.
TOUCH_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class SignedIn:
    operator: OperatorPrincipal
    token_hash: str
    csrf_token: str


# --- CSRF ---------------------------------------------------------------------------------


def csrf_token(capabilities: Capabilities, binding: str) -> str:
    """The token a form carries: an HMAC of what it is bound to (the session, or before
    sign-in the browser's sign-in cookie), so it is worthless to another browser."""
    return capabilities.sign("console-csrf", binding)


def check_csrf(capabilities: Capabilities, binding: str | None, presented: object) -> None:
    if (
        not binding
        or not isinstance(presented, str)
        or not capabilities.verify(presented, "console-csrf", binding)
    ):
        raise CsrfRefused(
            "This form's security token is missing or out of date: reload the page and "
            "submit it again"
        )


# --- signing in and out -------------------------------------------------------------------


@cache
def _absent_operator_hash() -> str:
    """Checked against when no operator has the email, so that an unknown email takes as
    long to refuse as a wrong password."""
    return hash_password(new_token())


async def sign_in(
    session: AsyncSession, limiter: RateLimiter, email: str, password: str, address: str
) -> str:
    """A new session for the operator with these credentials: the cookie's token.

    Failed attempts spend the account's and the address's budgets; while either is spent,
    sign-in is refused before the password is even checked.
    """
    email = email.strip().lower()
    budgets = (f"account:{email}", f"address:{address}")
    for budget in budgets:
        if await limiter.spent(budget):
            raise SignInLimited(
                "Too many failed sign-ins for this account or from this address; wait a "
                "minute and try again"
            )
    operator = await repository.operator_with_email(session, email)
    stored = operator.password_hash if operator is not None else _absent_operator_hash()
    matches = await asyncio.to_thread(password_matches, password, stored)
    if operator is None or not matches:
        for budget in budgets:
            await limiter.hit(budget)
        raise SignInFailed("Wrong email or password")
    if operator.disabled_at is not None:
        raise SignInFailed(f"{operator.email} has been disabled; ask a super_admin")
    token = new_token()
    now = utcnow()
    repository.add(
        session,
        ConsoleSession(
            token_hash=hash_secret(token), operator_id=operator.id, created_at=now, last_seen_at=now
        ),
    )
    principal = OperatorPrincipal(operator.id, operator.email, operator.role)
    voicebot.audit(session, principal, "console.sign_in", f"operators/{operator.id}")
    await session.flush()
    return token


async def signed_in(
    session: AsyncSession,
    reader: Reader,
    settings: Settings,
    capabilities: Capabilities,
    token: str | None,
) -> SignedIn:
    """The operator whose session ``token`` names, unless it has ended, expired (idle or
    too old) or its operator was disabled since."""
    if not token:
        raise SignInRequired("Sign in to use the console")
    token_hash = hash_secret(token)
    found = await repository.session_of(reader, token_hash)
    if found is None:
        raise SignInRequired("Your session has ended: sign in again")
    created_at, last_seen_at, operator_id, email, role = found
    now = utcnow()
    idle = timedelta(seconds=settings.console_idle_timeout_seconds)
    lifetime = timedelta(seconds=settings.console_session_lifetime_seconds)
    if now - last_seen_at >= idle or now - created_at >= lifetime:
        # Refused from now on by this check; the row itself goes with retention's pruning.
        raise SignInRequired("Your session has expired: sign in again")
    touch_after = min(TOUCH_SECONDS, settings.console_idle_timeout_seconds / 4)
    if (now - last_seen_at).total_seconds() >= touch_after:
        await repository.touch(session, token_hash, now)
    operator = OperatorPrincipal(operator_id, email, role)
    return SignedIn(operator, token_hash, csrf_token(capabilities, token_hash))


async def sign_out(session: AsyncSession, signed: SignedIn) -> None:
    """End the session on the server: its cookie signs nobody in any more."""
    await repository.delete_session(session, signed.token_hash)
    operator = signed.operator
    voicebot.audit(session, operator, "console.sign_out", f"operators/{operator.id}")


async def end_other_sessions(session: AsyncSession, signed: SignedIn) -> None:
    """After a password change, every other browser signed in as this operator is out."""
    await repository.delete_other_sessions(session, signed.operator.id, signed.token_hash)


# --- the overview -------------------------------------------------------------------------


async def overview(
    session: AsyncSession, settings: Settings, bots: dict[str, Any]
) -> dict[str, Any]:
    """The set-up checklist, from the same services as the API."""
    integration = await voicebot.integration_status(session, settings)
    dids, with_bot = await repository.dids_with_a_bot(session)
    fleet = await voicebot.core_fleet(session, settings)
    last_calls, _ = await calls.list_platform_calls(
        session, since=None, until=None, cursor=None, limit=1
    )
    return {
        "credentials_configured": integration["credentials_configured"],
        "dids": dids,
        "dids_with_bot": with_bot,
        "core_fleet": fleet,
        "last_call": last_calls[0] if last_calls else None,
        "active_streams": STATS.active_streams,
        "bots": sorted(bots.items()),
    }


# --- a test call ---------------------------------------------------------------------------


def call_ended(call: calls.PlatformCall, timeline: list[TimelineEntry]) -> bool:
    return call.outcome != "ongoing" or any(entry.kind == "stream_closed" for entry in timeline)
