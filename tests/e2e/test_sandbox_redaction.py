"""The sandbox's request log keeps capability values out, as its control API promises."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from tests.e2e.conftest import ACCOUNT_SID, CALLER, CallCentre
from tests.e2e.servers import Sandbox


async def test_the_request_log_never_shows_the_status_callbacks_capability(
    call_centre: CallCentre, sandbox: Sandbox
) -> None:
    await call_centre.add_agent(
        "ivan",
        phone="+919876500015",
        exophone="+918047491806",
        devices={"phone": True, "sip": False},
    )
    response = await call_centre.exoplane.http.post(
        "/v2/integrations/call/outbound_call",
        headers=call_centre.auth,
        json={"app_id": call_centre.app.id, "user_id": "ivan", "to": CALLER},
    )
    assert response.status_code == 200, response.text
    await sandbox.finished_call(response.json()["Data"]["CallSid"], reports=1)
    status_callback = next(
        entry["url"] for entry in await sandbox.requests() if entry.get("kind") == "status_callback"
    )
    assert parse_qs(urlsplit(status_callback).query)["sig"] == ["***"]

    [received] = await sandbox.calls_api_requests()

    assert received["path"] == f"/v1/Accounts/{ACCOUNT_SID}/Calls/connect"
    assert parse_qs(urlsplit(received["fields"]["StatusCallback"]).query)["sig"] == ["***"]
    assert "sig=" not in json.dumps(await sandbox.requests()).replace("sig=%2A%2A%2A", "")
