"""An Exotel slower than exoplane's ``exotel_timeout_seconds``: exoplane gives up on time and
says so, rather than holding its caller for as long as Exotel takes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    ACCOUNT_SID,
    CALLER,
    CallCentre,
    Exoplane,
    Platform,
    running_exoplane,
)
from tests.e2e.servers import Sandbox

EXOTEL_TIMEOUT_SECONDS = 0.4
EXOTEL_LATENCY_SECONDS = 1.5
EXOPHONE = "+918047491805"


@pytest.fixture
async def exoplane(tmp_path: Path, database_url: str, sandbox: Sandbox) -> AsyncIterator[Exoplane]:
    async with running_exoplane(
        tmp_path / "home", database_url, sandbox, exotel_timeout_seconds=EXOTEL_TIMEOUT_SECONDS
    ) as running:
        yield running


async def test_a_slow_exotel_fails_the_test_call_with_502_once_the_timeout_passes(
    exoplane: Exoplane, sandbox: Sandbox, platform: Platform
) -> None:
    did = await exoplane.http.post(
        "/api/v1/integrations/exotel/dids",
        headers=platform.auth,
        json={
            "number": EXOPHONE,
            "bot_id": "echo",
            "flow_url": f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/4001",
        },
    )
    assert did.status_code == 201, did.text
    await sandbox.add_flow("4001", [{"type": "hangup"}])
    await sandbox.add_fault(route="calls_connect", latency_seconds=EXOTEL_LATENCY_SECONDS)
    started = time.monotonic()

    response = await exoplane.http.post(
        f"/api/v1/integrations/exotel/dids/{did.json()['id']}/test-call",
        headers=platform.auth,
        json={"to_number": CALLER},
    )

    elapsed = time.monotonic() - started
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "did not answer in time" in error["message"]
    assert EXOTEL_TIMEOUT_SECONDS <= elapsed < EXOTEL_LATENCY_SECONDS


async def test_a_slow_exotel_fails_click_to_call_with_502_once_the_timeout_passes(
    call_centre: CallCentre, sandbox: Sandbox
) -> None:
    await call_centre.add_agent(
        "hari", phone="+919876500014", exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )
    await sandbox.add_fault(route="calls_connect", latency_seconds=EXOTEL_LATENCY_SECONDS)
    started = time.monotonic()

    response = await call_centre.exoplane.http.post(
        "/v2/integrations/call/outbound_call",
        headers=call_centre.auth,
        json={"app_id": call_centre.app.id, "user_id": "hari", "to": CALLER},
    )

    elapsed = time.monotonic() - started
    assert response.status_code == 502, response.text
    body = response.json()
    assert (body["Status"], body["Code"]) == ("Failed", 502)
    assert "did not answer in time" in body["Error"]
    assert EXOTEL_TIMEOUT_SECONDS <= elapsed < EXOTEL_LATENCY_SECONDS
