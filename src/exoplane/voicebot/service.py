"""The rules of the voice-bot admin. Never commits: the request's unit of work does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from exoplane.capabilities import PARAMETER, Capabilities
from exoplane.config import Settings
from exoplane.db import Reader
from exoplane.errors import BadRequest, Conflict, NotFound, UpstreamError
from exoplane.exotel.client import (
    ExotelClient,
    ExotelCredentials,
    ExotelError,
    normalise_base_url,
)
from exoplane.integrations.calls.service import TimelineEntry, record_platform_steps
from exoplane.models import AuditEntry, Did, ExotelIntegration, Operator, PlatformSettings
from exoplane.models.base import utcnow
from exoplane.security import (
    Vault,
    hash_password,
    hash_secret,
    new_api_key,
    new_id,
    new_password,
)
from exoplane.urls import CORE_FLEET, EXOTEL_API, EXOTEL_FLOW, check_target
from exoplane.voicebot import repository
from exoplane.voicebot.auth import ROLE_RANK, OperatorPrincipal
from exoplane.voicebot.repository import DidOption
from exoplane.voicebot.schemas import DidCreate, DidUpdate, IntegrationUpdate, did_view

TEST_CALL_TAG = "cxb-test:"

# --- operators ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewOperator:
    operator: Operator
    password: str
    api_key: str


async def create_operator(session: AsyncSession, email: str, role: str) -> NewOperator:
    """An operator with a generated password and API key, both shown only now."""
    email = email.strip().lower()
    if role not in ROLE_RANK:
        raise BadRequest(f"role must be one of {', '.join(ROLE_RANK)}", field="role")
    if await repository.operator_by_email(session, email) is not None:
        raise Conflict(f"An operator with email {email} exists already", code="operator_exists")
    password, api_key = new_password(), new_api_key()
    operator = Operator(
        id=new_id(),
        email=email,
        role=role,
        password_hash=hash_password(password),
        api_key_hash=hash_secret(api_key),
        created_at=utcnow(),
    )
    repository.add(session, operator)
    await session.flush()
    return NewOperator(operator, password, api_key)


# --- audit --------------------------------------------------------------------------------


COMMAND_LINE = "command line"


def audit(
    session: AsyncSession,
    operator: OperatorPrincipal | None,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    *,
    by: str | None = None,
) -> None:
    """Record a change, by ``operator`` or (None) from the command line, or by ``by`` when
    no operator acted (a portal link). ``details`` name what changed, never a secret value."""
    repository.add(
        session,
        AuditEntry(
            at=utcnow(),
            operator_id=operator.id if operator else None,
            operator_email=by or (operator.email if operator else COMMAND_LINE),
            action=action,
            target=target,
            details=json.dumps(details or {}, sort_keys=True),
        ),
    )


# --- fleet and websocket URLs -------------------------------------------------------------


async def core_fleet(session: AsyncSession, settings: Settings) -> list[str]:
    row = await repository.platform_settings(session)
    if row is not None and row.core_fleet_json is not None:
        fleet: list[str] = json.loads(row.core_fleet_json)
        return fleet
    return list(settings.core_fleet)


def fleet_wss_base(fleet: Sequence[str]) -> str:
    """The first fleet entry with https→wss and http→ws; ``wss://localhost`` when unset."""
    if not fleet:
        return "wss://localhost"
    first = fleet[0].rstrip("/")
    if first.startswith("https://"):
        return "wss://" + first.removeprefix("https://")
    if first.startswith("http://"):
        return "ws://" + first.removeprefix("http://")
    return first


def websocket_url(fleet: Sequence[str], bot_id: str | None, sig: str | None = None) -> str:
    """Derived, never stored: it follows ``core_fleet`` as that changes. ``sig`` is the
    media capability, added when the core requires one."""
    if not bot_id:
        return ""
    url = f"{fleet_wss_base(fleet)}/exotel/{bot_id}"
    return f"{url}?{PARAMETER}={sig}" if sig else url


def _stream_url(
    fleet: Sequence[str], bot_id: str | None, settings: Settings, capabilities: Capabilities
) -> str:
    sig = (
        capabilities.sign("media", bot_id) if bot_id and settings.media_require_signature else None
    )
    return websocket_url(fleet, bot_id, sig)


async def set_core_fleet(
    session: AsyncSession, settings: Settings, operator: OperatorPrincipal, fleet: Sequence[str]
) -> list[str]:
    cleaned = []
    for index, url in enumerate(fleet):
        field = f"core_fleet.{index}"
        await check_target(url, field, CORE_FLEET, allow_private=settings.allow_private_networks)
        cleaned.append(url.rstrip("/"))
    row = await repository.platform_settings(session)
    if row is None:
        row = PlatformSettings(id=repository.SINGLETON)
        repository.add(session, row)
    row.core_fleet_json = json.dumps(cleaned)
    row.updated_at = utcnow()
    audit(session, operator, "settings.core_fleet.update", "settings", {"core_fleet": cleaned})
    await session.flush()
    return cleaned


# --- the Exotel integration ---------------------------------------------------------------


async def integration_status(session: AsyncSession, settings: Settings) -> dict[str, Any]:
    """The integration without its DIDs: account, base URL, whether credentials are set."""
    row = await repository.integration(session)
    configured = bool(row is not None and row.account_sid and row.api_key_enc and row.api_token_enc)
    base_url = row.api_base_url if row and row.api_base_url else settings.exotel_api_base_url
    return {
        "account_sid": row.account_sid if row else None,
        "api_base_url": normalise_base_url(base_url),
        "credentials_configured": configured,
        "status": "configured" if configured else "not_configured",
    }


async def integration_view(
    session: AsyncSession, settings: Settings, capabilities: Capabilities
) -> dict[str, Any]:
    status = await integration_status(session, settings)
    fleet = await core_fleet(session, settings)
    dids = await repository.list_dids(session)
    return {
        **status,
        "dids": [
            did_view(did, _stream_url(fleet, did.bot_id, settings, capabilities)) for did in dids
        ],
    }


async def did_page(
    session: AsyncSession,
    settings: Settings,
    capabilities: Capabilities,
    *,
    after: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """DIDs in order of number, after the number ``after``, with their websocket URLs; the
    number to continue after (None at the end)."""
    rows = await repository.did_page(session, after_number=after, limit=limit + 1)
    fleet = await core_fleet(session, settings)
    page = [
        did_view(did, _stream_url(fleet, did.bot_id, settings, capabilities))
        for did in rows[:limit]
    ]
    return page, (page[-1]["number"] if len(rows) > limit else None)


async def update_integration(
    session: AsyncSession,
    vault: Vault,
    settings: Settings,
    operator: OperatorPrincipal,
    body: IntegrationUpdate,
) -> None:
    row = await repository.integration(session)
    if row is None:
        row = ExotelIntegration(id=repository.SINGLETON)
        repository.add(session, row)
    changed = sorted(body.model_fields_set)
    if body.account_sid is not None:
        row.account_sid = body.account_sid
    if body.api_key is not None:
        row.api_key_enc = vault.encrypt(body.api_key)
    if body.api_token is not None:
        row.api_token_enc = vault.encrypt(body.api_token)
    if body.api_base_url is not None:
        row.api_base_url = await _checked_base_url(body.api_base_url, settings)
    row.updated_at = utcnow()
    audit(
        session, operator, "exotel.credentials.update", "integrations/exotel", {"changed": changed}
    )
    await session.flush()


async def _checked_base_url(raw: str, settings: Settings) -> str:
    url = raw if "://" in raw else "https://" + raw
    allow_private = settings.allow_private_networks
    await check_target(url, "api_base_url", EXOTEL_API, allow_private=allow_private)
    return normalise_base_url(url)


# --- DIDs ---------------------------------------------------------------------------------


async def add_did(
    session: AsyncSession,
    settings: Settings,
    capabilities: Capabilities,
    operator: OperatorPrincipal,
    body: DidCreate,
) -> dict[str, Any]:
    if await repository.did_with_number(session, body.number) is not None:
        raise Conflict(f"The DID {body.number} exists already", code="did_exists", field="number")
    if body.id is not None and await repository.get_did(session, body.id) is not None:
        raise Conflict(f"A DID with id {body.id!r} exists already", code="did_exists")
    now = utcnow()
    did = Did(
        id=body.id or new_id(),
        number=body.number,
        label=body.label,
        bot_id=body.bot_id,
        flow_url=await _checked_flow_url(body.flow_url, settings),
        created_at=now,
        updated_at=now,
    )
    repository.add(session, did)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"The DID {body.number} exists already", code="did_exists") from exc
    audit(session, operator, "did.create", f"dids/{did.id}", {"number": did.number})
    fleet = await core_fleet(session, settings)
    return did_view(did, _stream_url(fleet, did.bot_id, settings, capabilities))


async def _checked_flow_url(url: str | None, settings: Settings) -> str | None:
    if url is None:
        return None
    allow_private = settings.allow_private_networks
    return await check_target(url, "flow_url", EXOTEL_FLOW, allow_private=allow_private)


async def update_did(
    session: AsyncSession,
    settings: Settings,
    capabilities: Capabilities,
    operator: OperatorPrincipal,
    did_id: str,
    body: DidUpdate,
) -> dict[str, Any]:
    did = await _did(session, did_id)
    changes = body.model_dump(exclude_unset=True)
    if "flow_url" in changes:
        changes["flow_url"] = await _checked_flow_url(changes["flow_url"], settings)
    for field, value in changes.items():
        setattr(did, field, value)
    did.updated_at = utcnow()
    audit(session, operator, "did.update", f"dids/{did.id}", {"changed": sorted(changes)})
    await session.flush()
    fleet = await core_fleet(session, settings)
    return did_view(did, _stream_url(fleet, did.bot_id, settings, capabilities))


async def delete_did(session: AsyncSession, operator: OperatorPrincipal, did_id: str) -> None:
    did = await _did(session, did_id)
    await repository.delete_did(session, did.id)
    audit(session, operator, "did.delete", f"dids/{did.id}", {"number": did.number})


async def did_detail(
    session: AsyncSession, settings: Settings, capabilities: Capabilities, did_id: str
) -> dict[str, Any]:
    did = await _did(session, did_id)
    fleet = await core_fleet(session, settings)
    return did_view(did, _stream_url(fleet, did.bot_id, settings, capabilities))


async def _did(session: AsyncSession, did_id: str) -> Did:
    did = await repository.get_did(session, did_id)
    if did is None:
        raise NotFound(f"No DID with id {did_id!r}", code="did_not_found")
    return did


async def call_options(session: AsyncSession) -> Sequence[DidOption]:
    """DIDs usable for a test call in some mode: with a flow_url, or with a bot."""
    return await repository.call_options(session)


# --- test calls ---------------------------------------------------------------------------


async def place_test_call(
    reader: Reader,
    sessions: async_sessionmaker[AsyncSession],
    vault: Vault,
    settings: Settings,
    capabilities: Capabilities,
    exotel: ExotelClient,
    did_id: str,
    to_number: str,
    mode: str = "flow",
) -> dict[str, str]:
    """Ring ``to_number`` from the DID and bridge them into its flow (seed 04), or, in
    ``stream`` mode, straight to its bot with Connect Voice AI.

    Reads happen outside any transaction, so no database lock is held while Exotel answers.
    """
    did = await repository.did_for_call(reader, did_id)
    if did is None:
        raise NotFound(f"No DID with id {did_id!r}", code="did_not_found")
    _, number, flow_url, bot_id = did
    stream_url = ""
    if mode == "stream":
        if not bot_id:
            raise BadRequest(
                f"The DID {number} has no bot_id: attach a bot before placing stream-mode "
                "test calls",
                code="missing_bot_id",
                field="bot_id",
            )
        stored = await repository.core_fleet_json(reader)
        fleet = json.loads(stored) if stored is not None else list(settings.core_fleet)
        stream_url = _stream_url(fleet, bot_id, settings, capabilities)
    elif not flow_url:
        raise BadRequest(
            f"The DID {number} has no flow_url: set one before placing test calls",
            code="missing_flow_url",
            field="flow_url",
        )
    credentials = await _credentials(reader, vault, settings)
    custom_field = f"{TEST_CALL_TAG}{did_id}"
    about = {
        "did_id": did_id,
        "from": number,
        "to": to_number,
        "mode": mode,
        "bot_id": bot_id if mode == "stream" else None,
    }
    try:
        if stream_url:
            placed = await exotel.connect_to_stream(
                credentials,
                customer_number=to_number,
                caller_id=number,
                stream_url=stream_url,
                custom_field=custom_field,
            )
        else:
            placed = await exotel.connect_to_flow(
                credentials,
                customer_number=to_number,
                caller_id=number,
                flow_url=flow_url or "",
                custom_field=custom_field,
            )
    except ExotelError as exc:
        # No CallSid: the refusal is kept under an id of exoplane's own (a UUID, which no
        # Exotel CallSid looks like), under which the call log lists it.
        refused = {**about, "message": exc.message}
        step = TimelineEntry(utcnow(), "test_call_refused", refused)
        await record_platform_steps(sessions, new_id(), [step])
        raise UpstreamError(exc.message) from exc
    step = TimelineEntry(utcnow(), "test_call_placed", {**about, "status": placed.provider_status})
    await record_platform_steps(sessions, placed.call_sid, [step])
    return {"call_sid": placed.call_sid, "provider_status": placed.provider_status}


async def _credentials(reader: Reader, vault: Vault, settings: Settings) -> ExotelCredentials:
    stored = await repository.stored_credentials(reader)
    account_sid, key_enc, token_enc, base_url = stored or (None, None, None, None)
    if not (account_sid and key_enc and token_enc):
        raise BadRequest(
            "Exotel credentials are not configured: PUT /api/v1/integrations/exotel with "
            "account_sid, api_key and api_token first",
            code="credentials_not_configured",
        )
    base = base_url or settings.exotel_api_base_url
    if not settings.allow_private_networks:
        await check_target(
            normalise_base_url(base), "api_base_url", EXOTEL_API, allow_private=False
        )
    return ExotelCredentials(account_sid, vault.decrypt(key_enc), vault.decrypt(token_enc), base)


async def audit_log(
    session: AsyncSession,
    *,
    cursor: int | None,
    limit: int,
    operator: str | None = None,
    action: str | None = None,
) -> tuple[Sequence[AuditEntry], int | None]:
    """A page of the audit log, newest first, optionally by one operator (email) or of one
    kind of action (``did.`` matches every DID change); the next page's cursor."""
    rows = await repository.audit_page(
        session,
        before_id=cursor,
        limit=limit + 1,
        operator=operator.strip().lower() if operator else None,
        action=action.strip() if action else None,
    )
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)
