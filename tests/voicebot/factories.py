"""Plain typed helpers for the voice-bot admin: operators, credentials, DIDs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory, unit_of_work
from exoplane.voicebot.service import create_operator as create_operator_row

INTEGRATION = "/api/v1/integrations/exotel"
DIDS = INTEGRATION + "/dids"
TEST_CALL_OPTIONS = INTEGRATION + "/test-call-options"
SETTINGS = "/api/v1/settings"
AUDIT = "/api/v1/audit"

ACCOUNT_SID = "acme-sid"
API_KEY = "exotel-key-9c1f2e7a5b"
API_TOKEN = "exotel-token-4d8e1a6c3f"
CREDENTIALS = {"account_sid": ACCOUNT_SID, "api_key": API_KEY, "api_token": API_TOKEN}

DID_NUMBER = "+918047491899"
FLOW_URL = "http://my.exotel.com/acme-sid/exoml/start_voice/926"
DID_BODY: dict[str, Any] = {
    "number": "08047491899",
    "label": "Support line",
    "bot_id": "support",
    "flow_url": FLOW_URL,
}


@dataclass(frozen=True)
class Operator:
    email: str
    role: str
    api_key: str
    password: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def create_operator(settings: Settings, email: str, role: str) -> Operator:
    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            created = await create_operator_row(session, email, role)
            return Operator(created.operator.email, role, created.api_key, created.password)
    finally:
        await engine.dispose()


async def configure_exotel(
    client: httpx.AsyncClient, operator: Operator, **fields: Any
) -> dict[str, Any]:
    """Store credentials (the defaults, overridden by ``fields``) and return the view."""
    response = await client.put(INTEGRATION, headers=operator.headers, json=CREDENTIALS | fields)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def add_did(client: httpx.AsyncClient, operator: Operator, **fields: Any) -> dict[str, Any]:
    response = await client.post(DIDS, headers=operator.headers, json=DID_BODY | fields)
    assert response.status_code == 201, response.text
    did: dict[str, Any] = response.json()
    return did


def call_path(did_id: str) -> str:
    return f"{DIDS}/{did_id}/test-call"


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error of a ``{"success": false, "error": {...}}`` answer, checked for shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "request_id"} <= set(error)
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error
