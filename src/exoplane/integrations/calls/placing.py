"""Placing a click-to-call: the call is recorded before Exotel is asked to place it.

Exotel may report on a call (StatusCallback) before its answer to Calls/connect arrives,
and certainly before a transaction holding that answer could commit. So placing a call
is three short units of work rather than one: the call as it is about to be placed,
committed first; then Exotel's answer, recorded after it arrives. No transaction is open
while Exotel answers, so no database lock waits on it, and a crash meanwhile leaves the
call on record for its StatusCallbacks to complete.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.capabilities import Capabilities
from exoplane.config import Settings
from exoplane.db import Reader, unit_of_work
from exoplane.errors import UpstreamError
from exoplane.exotel.client import ExotelClient
from exoplane.integrations.auth import Principal
from exoplane.integrations.calls import service
from exoplane.integrations.calls.schemas import OutboundCall
from exoplane.security import Vault


async def place_outbound_call(
    reader: Reader,
    sessions: async_sessionmaker[AsyncSession],
    vault: Vault,
    settings: Settings,
    capabilities: Capabilities,
    exotel: ExotelClient,
    principal: Principal,
    request: OutboundCall,
) -> dict[str, str]:
    """Ring the agent's enabled device (the SIP client when on, else the phone), then
    ``to``, through the app's own Exotel account; StatusCallbacks come back to exoplane."""
    plan = await service.plan_outbound_call(reader, vault, settings, principal, request)
    async with unit_of_work(sessions) as session:
        service.record_call_intent(session, plan)
    try:
        placed = await service.dial(exotel, settings, capabilities, plan)
    except UpstreamError as exc:
        async with unit_of_work(sessions) as session:
            await service.record_not_placed(session, plan.call, exc.message)
        raise
    async with unit_of_work(sessions) as session:
        await service.record_placed(session, plan.call, placed)
    return {
        "CallSid": placed.call_sid,
        "AppUserID": request.user_id,
        "FromNumber": plan.call.from_number,
    }
