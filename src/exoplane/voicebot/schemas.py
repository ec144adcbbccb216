"""Request bodies and response shapes of ``/api/v1`` (seed 04)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from exoplane.exotel.numbers import normalise_phone_number
from exoplane.inputs import normalise_id
from exoplane.integrations.schemas import NOT_BLANK, PHONE_SHAPE
from exoplane.models import AuditEntry, Did
from exoplane.responses import resource_time
from exoplane.voicebot.repository import DidOption

Secret = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NOT_BLANK)
]
Url = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048, pattern=NOT_BLANK)
]
BotId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
DidId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
    AfterValidator(normalise_id),
]
PhoneNumber = Annotated[
    str,
    StringConstraints(max_length=40, pattern=PHONE_SHAPE),
    AfterValidator(normalise_phone_number),
    Field(description="E.164, such as +919876543210", examples=["+919876543210"]),
]


class Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class IntegrationUpdate(Body):
    """Every field optional; an omitted secret keeps its stored value."""

    account_sid: Text | None = None
    api_key: Secret | None = None
    api_token: Secret | None = None
    api_base_url: Url | None = None


class DidCreate(Body):
    id: DidId | None = None
    number: PhoneNumber
    label: Text | None = None
    bot_id: BotId | None = None
    flow_url: Url | None = None


class DidUpdate(Body):
    label: Text | None = None
    bot_id: BotId | None = None
    flow_url: Url | None = None


TestCallMode = Literal["flow", "stream"]


class PlaceTestCall(Body):
    to_number: PhoneNumber
    # flow: ring and run the DID's flow_url; stream: ring and connect straight to the DID's
    # websocket_url with Exotel's Connect Voice AI (no flow needed).
    mode: TestCallMode = "flow"


class FleetSettings(Body):
    core_fleet: list[Url] = Field(max_length=50)


def did_view(did: Did, websocket_url: str) -> dict[str, Any]:
    return {
        "id": did.id,
        "number": did.number,
        "label": did.label,
        "bot_id": did.bot_id,
        "flow_url": did.flow_url,
        "websocket_url": websocket_url,
    }


def test_call_modes(did: Did | DidOption) -> list[str]:
    """The test-call modes a DID can use: ``flow`` with a flow_url, ``stream`` with a bot."""
    return [mode for mode, usable in (("flow", did.flow_url), ("stream", did.bot_id)) if usable]


def call_option(did: Did | DidOption) -> dict[str, Any]:
    return {
        "id": did.id,
        "number": did.number,
        "label": did.label,
        "bot_id": did.bot_id,
        "modes": test_call_modes(did),
    }


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "at": resource_time(entry.at),
        "operator": entry.operator_email,
        "action": entry.action,
        "target": entry.target,
        "details": json.loads(entry.details),
    }


# --- response shapes (for the OpenAPI document; the functions above build the bodies) ------


class DidView(BaseModel):
    id: str
    number: str
    label: str | None
    bot_id: str | None
    flow_url: str | None
    websocket_url: str = Field(description="Derived from core_fleet; empty without a bot")


class DidPage(BaseModel):
    dids: list[DidView]
    next_after: str | None = Field(description="Pass as ``after`` for the next page")


class IntegrationStatus(BaseModel):
    account_sid: str | None
    api_base_url: str
    credentials_configured: bool
    status: Literal["configured", "not_configured"]


class IntegrationView(IntegrationStatus):
    dids: list[DidView]


class DidDeleted(BaseModel):
    id: str
    deleted: bool


class CallOption(BaseModel):
    id: str
    number: str
    label: str | None
    bot_id: str | None
    modes: list[TestCallMode] = Field(description="The test-call modes the DID can use")


class TestCallPlaced(BaseModel):
    call_sid: str
    provider_status: str


class Fleet(BaseModel):
    core_fleet: list[str]


class AuditEntryView(BaseModel):
    id: str
    at: str
    operator: str
    action: str
    target: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntryView]
    next_cursor: str | None


class Bot(BaseModel):
    id: str
    description: str


class BotList(BaseModel):
    bots: list[Bot]
