"""The voice-bot admin API (seed 04, SPEC §6): roles, credentials, DIDs, fleet, audit, logs."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from exoplane.config import Settings
from exoplane.logs import configure_logging
from tests.voicebot.exotel_standin import ExotelStandIn, json_rest_exception
from tests.voicebot.factories import (
    ACCOUNT_SID,
    API_KEY,
    API_TOKEN,
    AUDIT,
    CREDENTIALS,
    DID_BODY,
    DIDS,
    FLOW_URL,
    INTEGRATION,
    SETTINGS,
    TEST_CALL_OPTIONS,
    Operator,
    add_did,
    call_path,
    configure_exotel,
    error_of,
)

# --- roles: every row of seed 04's table, plus settings and audit -------------------------


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    body: dict[str, Any] | None
    role: str
    status: int

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROWS = [
    Row("GET", INTEGRATION, None, "super_admin", 200),
    Row("PUT", INTEGRATION, {"account_sid": "other-sid"}, "super_admin", 200),
    Row("POST", DIDS, {"number": "09123456789"}, "super_admin", 201),
    Row("PUT", DIDS + "/{did}", {"label": "Sales"}, "super_admin", 200),
    Row("DELETE", DIDS + "/{did}", None, "super_admin", 200),
    Row("GET", TEST_CALL_OPTIONS, None, "admin", 200),
    Row("POST", DIDS + "/{did}/test-call", {"to_number": "9876543210"}, "admin", 200),
    Row("GET", SETTINGS, None, "admin", 200),
    Row("PUT", SETTINGS, {"core_fleet": ["https://core-1.example.com"]}, "super_admin", 200),
    Row("GET", AUDIT, None, "super_admin", 200),
    Row("GET", INTEGRATION + "/status", None, "admin", 200),
    Row("GET", DIDS, None, "admin", 200),
]
ADMIN_ROWS = [row for row in ROWS if row.role == "admin"]
SUPER_ADMIN_ROWS = [row for row in ROWS if row.role == "super_admin"]
BAD_KEYS = ["Bearer exo_not-a-real-key", "Basic not-a-bearer-key", "Bearer"]


@pytest.fixture
async def did(client: httpx.AsyncClient, super_admin: Operator, exotel: ExotelStandIn) -> str:
    """A configured integration pointing at the stand-in, with one callable DID."""
    await configure_exotel(client, super_admin, api_base_url=exotel.base_url)
    return str((await add_did(client, super_admin))["id"])


async def send(
    client: httpx.AsyncClient, row: Row, did: str, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(
        row.method, row.path.format(did=did), json=row.body, headers=headers
    )


async def audit_entries(client: httpx.AsyncClient, operator: Operator) -> list[dict[str, Any]]:
    response = await client.get(AUDIT, headers=operator.headers, params={"limit": 200})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


@pytest.mark.parametrize("row", ROWS, ids=str)
async def test_a_super_admin_may_use_every_endpoint(
    client: httpx.AsyncClient, super_admin: Operator, did: str, row: Row
) -> None:
    response = await send(client, row, did, super_admin.headers)

    assert response.status_code == row.status, response.text


@pytest.mark.parametrize("row", ADMIN_ROWS, ids=str)
async def test_an_admin_may_use_the_admin_endpoints(
    client: httpx.AsyncClient, admin: Operator, did: str, row: Row
) -> None:
    response = await send(client, row, did, admin.headers)

    assert response.status_code == row.status, response.text


@pytest.mark.parametrize("row", SUPER_ADMIN_ROWS, ids=str)
async def test_an_admin_is_refused_super_admin_endpoints_with_403_and_nothing_changes(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator, did: str, row: Row
) -> None:
    before = await audit_entries(client, super_admin)

    response = await send(client, row, did, admin.headers)

    error = error_of(response, 403)
    assert error["code"] == "insufficient_role"
    assert "super_admin" in error["message"]
    assert await audit_entries(client, super_admin) == before


@pytest.mark.parametrize("row", ROWS, ids=str)
async def test_a_request_without_a_key_is_401_and_nothing_changes(
    client: httpx.AsyncClient, super_admin: Operator, exotel: ExotelStandIn, did: str, row: Row
) -> None:
    before = await audit_entries(client, super_admin)

    response = await send(client, row, did, {})

    assert error_of(response, 401)["code"] == "missing_api_key"
    assert await audit_entries(client, super_admin) == before
    assert exotel.requests == []


@pytest.mark.parametrize("row", ROWS, ids=str)
@pytest.mark.parametrize("header", BAD_KEYS)
async def test_a_request_with_a_bad_key_is_401_and_nothing_changes(
    client: httpx.AsyncClient,
    super_admin: Operator,
    exotel: ExotelStandIn,
    did: str,
    row: Row,
    header: str,
) -> None:
    before = await audit_entries(client, super_admin)

    response = await send(client, row, did, {"Authorization": header})

    error_of(response, 401)
    assert await audit_entries(client, super_admin) == before
    assert exotel.requests == []


def exoplane_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EXOPLANE_HOME": str(settings.home),
        "EXOPLANE_DATABASE_URL": settings.database_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "exoplane", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_an_operator_created_with_the_cli_can_use_the_api_with_its_key(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    result = exoplane_cli(
        settings,
        "operators",
        "create",
        "--email",
        "Cli@Example.com",
        "--role",
        "super_admin",
        "--json",
    )

    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["email"] == "cli@example.com"
    assert created["role"] == "super_admin"
    response = await client.get(
        INTEGRATION, headers={"Authorization": f"Bearer {created['api_key']}"}
    )
    assert response.status_code == 200, response.text


# --- credentials --------------------------------------------------------------------------

VIEW_FIELDS = {"account_sid", "api_base_url", "credentials_configured", "status", "dids"}


async def test_a_fresh_integration_is_not_configured_and_uses_the_default_base_url(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await client.get(INTEGRATION, headers=super_admin.headers)

    assert response.status_code == 200
    assert response.json() == {
        "account_sid": None,
        "api_base_url": "https://api.exotel.com",
        "credentials_configured": False,
        "status": "not_configured",
        "dids": [],
    }


@pytest.mark.parametrize(
    "present",
    list(itertools.product([False, True], repeat=3)),
    ids=lambda present: (
        "+".join(name for name, on in zip(CREDENTIALS, present, strict=True) if on) or "none"
    ),
)
async def test_credentials_are_configured_only_when_sid_key_and_token_are_all_present(
    client: httpx.AsyncClient, super_admin: Operator, present: tuple[bool, bool, bool]
) -> None:
    body = {
        name: value for (name, value), on in zip(CREDENTIALS.items(), present, strict=True) if on
    }

    put = await client.put(INTEGRATION, headers=super_admin.headers, json=body)
    got = await client.get(INTEGRATION, headers=super_admin.headers)

    assert put.status_code == 200, put.text
    configured = all(present)
    for view in (put.json(), got.json()):
        assert view["credentials_configured"] is configured
        assert view["status"] == ("configured" if configured else "not_configured")
        assert view["account_sid"] == (ACCOUNT_SID if present[0] else None)


async def test_the_integration_never_returns_the_api_key_or_token(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    put = await client.put(INTEGRATION, headers=super_admin.headers, json=CREDENTIALS)
    await add_did(client, super_admin)
    got = await client.get(INTEGRATION, headers=super_admin.headers)

    for response in (put, got):
        assert response.status_code == 200
        assert set(response.json()) == VIEW_FIELDS
        assert API_KEY not in response.text
        assert API_TOKEN not in response.text
        assert '"api_key"' not in response.text
        assert '"api_token"' not in response.text


async def test_an_omitted_secret_keeps_its_stored_value(
    client: httpx.AsyncClient, super_admin: Operator, exotel: ExotelStandIn
) -> None:
    await configure_exotel(client, super_admin, api_base_url=exotel.base_url)
    did = await add_did(client, super_admin)

    view = await client.put(
        INTEGRATION, headers=super_admin.headers, json={"account_sid": "renamed-sid"}
    )
    call = await client.post(
        call_path(did["id"]), headers=super_admin.headers, json={"to_number": "9876543210"}
    )

    assert view.json()["credentials_configured"] is True
    assert call.status_code == 200, call.text
    [request] = exotel.requests
    assert request.path == "/v1/Accounts/renamed-sid/Calls/connect"
    assert request.basic_auth == (API_KEY, API_TOKEN)


async def test_a_new_token_replaces_only_the_token(
    client: httpx.AsyncClient, super_admin: Operator, exotel: ExotelStandIn
) -> None:
    await configure_exotel(client, super_admin, api_base_url=exotel.base_url)
    did = await add_did(client, super_admin)

    await client.put(INTEGRATION, headers=super_admin.headers, json={"api_token": "rotated-token"})
    call = await client.post(
        call_path(did["id"]), headers=super_admin.headers, json={"to_number": "9876543210"}
    )

    assert call.status_code == 200, call.text
    assert exotel.requests[0].basic_auth == (API_KEY, "rotated-token")


async def test_an_empty_secret_is_refused_naming_the_field(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await client.put(INTEGRATION, headers=super_admin.headers, json={"api_key": ""})

    assert error_of(response, 400)["field"] == "api_key"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8081",
        "https://127.0.0.1",
        "https://localhost:8443",
        "https://10.0.0.7",
        "https://169.254.169.254",
        "http://api.exotel.com",
    ],
)
async def test_a_non_public_or_plain_http_api_base_url_is_refused_by_default(
    strict_client: httpx.AsyncClient, super_admin: Operator, url: str
) -> None:
    response = await strict_client.put(
        INTEGRATION, headers=super_admin.headers, json=CREDENTIALS | {"api_base_url": url}
    )
    stored = await strict_client.get(INTEGRATION, headers=super_admin.headers)

    error = error_of(response, 400)
    assert error["field"] == "api_base_url"
    assert "api_base_url" in error["message"]
    assert stored.json()["api_base_url"] == "https://api.exotel.com"
    assert stored.json()["credentials_configured"] is False


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://api.in.exotel.com", "https://api.in.exotel.com"),
        ("api.in.exotel.com", "https://api.in.exotel.com"),
        ("https://api.exotel.com/", "https://api.exotel.com"),
        ("https://api.in.exotel.com/v1/Accounts/acme-sid", "https://api.in.exotel.com"),
    ],
)
async def test_a_public_https_api_base_url_is_accepted_and_normalised(
    strict_client: httpx.AsyncClient, super_admin: Operator, url: str, stored: str
) -> None:
    response = await strict_client.put(
        INTEGRATION, headers=super_admin.headers, json={"api_base_url": url}
    )

    assert response.status_code == 200, response.text
    assert response.json()["api_base_url"] == stored


async def test_a_loopback_api_base_url_is_accepted_when_private_networks_are_allowed(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await client.put(
        INTEGRATION, headers=super_admin.headers, json={"api_base_url": "http://127.0.0.1:8081/"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["api_base_url"] == "http://127.0.0.1:8081"


@pytest.mark.parametrize(
    "url", ["https://", "ftp://files.example.com", "http://user:secret@127.0.0.1:8081"]
)
async def test_an_api_base_url_that_is_not_an_http_url_is_refused_even_when_private_is_allowed(
    client: httpx.AsyncClient, super_admin: Operator, url: str
) -> None:
    response = await client.put(
        INTEGRATION, headers=super_admin.headers, json={"api_base_url": url}
    )

    assert error_of(response, 400)["field"] == "api_base_url"


# --- DIDs ---------------------------------------------------------------------------------

DID_FIELDS = {"id", "number", "label", "bot_id", "flow_url", "websocket_url"}


@pytest.mark.parametrize(
    "raw",
    ["09876543210", "9876543210", "919876543210", "00919876543210", "+91 98765-43210"],
)
async def test_a_did_number_is_normalised_to_e164(
    client: httpx.AsyncClient, super_admin: Operator, raw: str
) -> None:
    did = await add_did(client, super_admin, number=raw)

    assert did["number"] == "+919876543210"


async def test_a_valid_number_outside_india_is_kept(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    did = await add_did(client, super_admin, number="+442071838750")

    assert did["number"] == "+442071838750"


async def test_a_did_answers_its_fields_and_derived_websocket_url(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    did = await add_did(client, super_admin, id="support-line")

    assert did == {
        "id": "support-line",
        "number": "+918047491899",
        "label": "Support line",
        "bot_id": "support",
        "flow_url": FLOW_URL,
        "websocket_url": "wss://localhost/exotel/support",
    }


async def test_a_did_needs_neither_bot_nor_flow(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await client.post(DIDS, headers=super_admin.headers, json={"number": "9876543210"})

    assert response.status_code == 201, response.text
    did = response.json()
    assert set(did) == DID_FIELDS
    assert (did["bot_id"], did["flow_url"], did["websocket_url"]) == (None, None, "")


@pytest.mark.parametrize("raw", ["12345", "not a number", "+9112", "1234567890"])
async def test_an_invalid_did_number_is_400_naming_number(
    client: httpx.AsyncClient, super_admin: Operator, raw: str
) -> None:
    response = await client.post(DIDS, headers=super_admin.headers, json=DID_BODY | {"number": raw})

    error = error_of(response, 400)
    assert error["field"] == "number"
    assert "number" in error["message"]


async def test_a_did_flow_url_must_be_an_absolute_http_url(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await client.post(
        DIDS, headers=super_admin.headers, json=DID_BODY | {"flow_url": "my.exotel.com/flow"}
    )

    assert error_of(response, 400)["field"] == "flow_url"


async def test_a_duplicate_did_number_is_409_whatever_its_spelling(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    await add_did(client, super_admin, number="+918047491899")

    response = await client.post(
        DIDS, headers=super_admin.headers, json=DID_BODY | {"number": "08047491899"}
    )
    listed = await client.get(INTEGRATION, headers=super_admin.headers)

    assert error_of(response, 409)["code"] == "did_exists"
    assert len(listed.json()["dids"]) == 1


@pytest.mark.parametrize(("method", "body"), [("PUT", {"label": "Sales"}), ("DELETE", None)])
async def test_an_unknown_did_is_404(
    client: httpx.AsyncClient, super_admin: Operator, method: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(
        method, f"{DIDS}/no-such-did", headers=super_admin.headers, json=body
    )

    assert error_of(response, 404)["code"] == "did_not_found"


async def test_a_did_update_changes_label_bot_and_flow(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    did = await add_did(client, super_admin)
    change = {
        "label": "Sales line",
        "bot_id": "sales",
        "flow_url": "http://my.exotel.com/acme-sid/exoml/start_voice/927",
    }

    response = await client.put(f"{DIDS}/{did['id']}", headers=super_admin.headers, json=change)
    listed = await client.get(INTEGRATION, headers=super_admin.headers)

    expected = did | change | {"websocket_url": "wss://localhost/exotel/sales"}
    assert response.status_code == 200, response.text
    assert response.json() == expected
    assert listed.json()["dids"] == [expected]


async def test_a_partial_did_update_keeps_the_other_fields(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    did = await add_did(client, super_admin)

    response = await client.put(
        f"{DIDS}/{did['id']}", headers=super_admin.headers, json={"label": "Renamed"}
    )

    assert response.json() == did | {"label": "Renamed"}


async def test_detaching_the_bot_empties_the_websocket_url(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    did = await add_did(client, super_admin)

    response = await client.put(
        f"{DIDS}/{did['id']}", headers=super_admin.headers, json={"bot_id": None}
    )

    assert response.json()["bot_id"] is None
    assert response.json()["websocket_url"] == ""


async def test_a_deleted_did_is_gone(client: httpx.AsyncClient, super_admin: Operator) -> None:
    did = await add_did(client, super_admin)

    deleted = await client.delete(f"{DIDS}/{did['id']}", headers=super_admin.headers)
    listed = await client.get(INTEGRATION, headers=super_admin.headers)
    again = await client.delete(f"{DIDS}/{did['id']}", headers=super_admin.headers)

    assert deleted.status_code == 200
    assert deleted.json() == {"id": did["id"], "deleted": True}
    assert listed.json()["dids"] == []
    error_of(again, 404)


# --- websocket_url: derived from core_fleet, never stored --------------------------------


async def set_fleet(client: httpx.AsyncClient, operator: Operator, fleet: list[str]) -> None:
    response = await client.put(SETTINGS, headers=operator.headers, json={"core_fleet": fleet})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("fleet", "websocket_url"),
    [
        (["https://core-1.example.com", "https://core-2.example.com"], "wss://core-1.example.com"),
        (["http://core.internal:8080/"], "ws://core.internal:8080"),
        ([], "wss://localhost"),
    ],
    ids=["https-to-wss", "http-to-ws", "unset"],
)
async def test_the_websocket_url_follows_the_first_fleet_entry(
    client: httpx.AsyncClient, super_admin: Operator, fleet: list[str], websocket_url: str
) -> None:
    await set_fleet(client, super_admin, fleet)

    did = await add_did(client, super_admin, bot_id="support")

    assert did["websocket_url"] == f"{websocket_url}/exotel/support"


async def test_a_did_without_a_bot_has_an_empty_websocket_url(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    await set_fleet(client, super_admin, ["https://core-1.example.com"])

    did = await add_did(client, super_admin, bot_id=None)

    assert did["websocket_url"] == ""


async def test_the_websocket_url_changes_when_the_fleet_changes(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    await set_fleet(client, super_admin, ["https://core-1.example.com"])
    await add_did(client, super_admin, bot_id="support")

    await set_fleet(client, super_admin, ["http://core-9.example.com"])
    after_change = await client.get(INTEGRATION, headers=super_admin.headers)
    await set_fleet(client, super_admin, [])
    after_reset = await client.get(INTEGRATION, headers=super_admin.headers)

    assert (
        after_change.json()["dids"][0]["websocket_url"] == "ws://core-9.example.com/exotel/support"
    )
    assert after_reset.json()["dids"][0]["websocket_url"] == "wss://localhost/exotel/support"


async def test_the_fleet_setting_reads_back_as_written(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    before = await client.get(SETTINGS, headers=admin.headers)
    await set_fleet(
        client, super_admin, ["https://core-1.example.com/", "https://core-2.example.com"]
    )
    after = await client.get(SETTINGS, headers=admin.headers)

    assert before.json() == {"core_fleet": []}
    assert after.json() == {
        "core_fleet": ["https://core-1.example.com", "https://core-2.example.com"]
    }


@pytest.mark.parametrize("entry", ["core-1.example.com", "ftp://core-1.example.com", "https://"])
async def test_a_fleet_entry_must_be_an_absolute_http_url(
    client: httpx.AsyncClient, super_admin: Operator, entry: str
) -> None:
    response = await client.put(
        SETTINGS,
        headers=super_admin.headers,
        json={"core_fleet": ["https://core-1.example.com", entry]},
    )

    assert error_of(response, 400)["field"] == "core_fleet.1"


# --- test-call options --------------------------------------------------------------------


async def test_test_call_options_list_the_dids_usable_in_each_mode_and_nothing_else(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    both = await add_did(client, super_admin, number="+918047491801", bot_id="support")
    flow_only = await add_did(client, super_admin, number="+918047491802", bot_id=None)
    stream_only = await add_did(client, super_admin, number="+918047491803", flow_url=None)
    await add_did(client, super_admin, number="+918047491804", flow_url=None, bot_id=None)

    response = await client.get(TEST_CALL_OPTIONS, headers=admin.headers)

    assert response.status_code == 200
    assert response.json() == [
        {**{key: did[key] for key in ("id", "number", "label", "bot_id")}, "modes": modes}
        for did, modes in (
            (both, ["flow", "stream"]),
            (flow_only, ["flow"]),
            (stream_only, ["stream"]),
        )
    ]
    assert FLOW_URL not in response.text
    assert "websocket_url" not in response.text


# --- audit --------------------------------------------------------------------------------


async def test_every_credential_did_and_settings_change_is_audited_once_with_its_operator(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    await configure_exotel(client, super_admin)
    did = await add_did(client, super_admin)
    await client.put(f"{DIDS}/{did['id']}", headers=super_admin.headers, json={"label": "New"})
    await client.delete(f"{DIDS}/{did['id']}", headers=super_admin.headers)
    await set_fleet(client, super_admin, ["https://core-1.example.com"])
    await client.get(INTEGRATION, headers=super_admin.headers)
    await client.get(TEST_CALL_OPTIONS, headers=admin.headers)
    await client.get(SETTINGS, headers=admin.headers)

    entries = await audit_entries(client, super_admin)

    kinds = ["settings", "did", "did", "did", "credentials"]
    assert len(entries) == len(kinds)
    for entry, kind in zip(entries, kinds, strict=True):
        assert kind in entry["action"]
        assert entry["operator"] == super_admin.email
        assert entry["at"]
    assert [entry["target"] for entry in entries[1:4]] == [f"dids/{did['id']}"] * 3


async def test_the_audit_log_never_contains_secret_values(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    await configure_exotel(client, super_admin)
    await client.put(INTEGRATION, headers=super_admin.headers, json={"api_token": "rotated-token"})

    response = await client.get(AUDIT, headers=super_admin.headers)

    assert len(response.json()["entries"]) == 2
    for secret in (API_KEY, API_TOKEN, "rotated-token", super_admin.api_key):
        assert secret not in response.text


# --- logs ---------------------------------------------------------------------------------


async def test_no_log_line_contains_the_exotel_secrets_or_operator_keys(
    client: httpx.AsyncClient,
    settings: Settings,
    super_admin: Operator,
    admin: Operator,
    exotel: ExotelStandIn,
) -> None:
    captured = io.StringIO()
    configure_logging(settings, stream=captured)

    await configure_exotel(client, super_admin, api_base_url=exotel.base_url)
    await client.put(INTEGRATION, headers=super_admin.headers, json={"api_token": "rotated-token"})
    did = await add_did(client, super_admin)
    await client.get(INTEGRATION, headers=super_admin.headers)
    await client.get(TEST_CALL_OPTIONS, headers=admin.headers)
    placed = await client.post(
        call_path(did["id"]), headers=admin.headers, json={"to_number": "9876543210"}
    )
    exotel.script.append(json_rest_exception("Invalid CallerId"))
    refused = await client.post(
        call_path(did["id"]), headers=admin.headers, json={"to_number": "9876543210"}
    )
    await client.get(AUDIT, headers=super_admin.headers)

    log = captured.getvalue()
    assert placed.status_code == 200
    assert refused.status_code == 502
    events = [json.loads(line).get("event") for line in log.splitlines() if line.startswith("{")]
    assert events.count("request") >= 8
    for secret in (API_KEY, API_TOKEN, "rotated-token", super_admin.api_key, admin.api_key):
        assert secret not in log


async def test_dids_are_listed_a_page_at_a_time_in_order_of_number(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    for n in (3, 1, 2):
        await add_did(client, super_admin, number=f"08047491{n:03d}", label=None)

    first = await client.get(DIDS, headers=super_admin.headers, params={"limit": 2})
    second = await client.get(
        DIDS, headers=super_admin.headers, params={"limit": 2, "after": first.json()["next_after"]}
    )

    assert [did["number"] for did in first.json()["dids"]] == ["+918047491001", "+918047491002"]
    assert [did["number"] for did in second.json()["dids"]] == ["+918047491003"]
    assert second.json()["next_after"] is None
    assert first.json()["dids"][0]["websocket_url"].endswith("/exotel/support")


async def test_the_audit_log_is_filtered_by_operator_and_by_action(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    await add_did(client, super_admin)
    await configure_exotel(client, super_admin)

    dids = await client.get(AUDIT, headers=super_admin.headers, params={"action": "did."})
    nobody = await client.get(AUDIT, headers=super_admin.headers, params={"operator": "x@y.z"})
    mine = await client.get(
        AUDIT, headers=super_admin.headers, params={"operator": "ROOT@example.com"}
    )

    assert [entry["action"] for entry in dids.json()["entries"]] == ["did.create"]
    assert nobody.json()["entries"] == []
    assert len(mine.json()["entries"]) == 2


async def test_an_admin_reads_the_integrations_status_and_dids_but_never_a_secret(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    await configure_exotel(client, super_admin)
    await add_did(client, super_admin)

    status = await client.get(INTEGRATION + "/status", headers=admin.headers)
    dids = await client.get(DIDS, headers=admin.headers)

    assert status.status_code == 200
    assert status.json() == {
        "account_sid": ACCOUNT_SID,
        "api_base_url": "https://api.exotel.com",
        "credentials_configured": True,
        "status": "configured",
    }
    assert [did["number"] for did in dids.json()["dids"]] == ["+918047491899"]
    for body in (status.text, dids.text):
        assert API_KEY not in body
        assert API_TOKEN not in body
