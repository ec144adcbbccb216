"""Test calls (seed 04, SPEC §6.3) against the Exotel sandbox.

Answers the sandbox never gives (a JSON answer to the XML endpoint, an error inside a 200,
malformed bodies, plain-text errors) come from a real HTTP server standing in for Exotel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.servers import Sandbox, running_sandbox
from tests.voicebot.conftest import EXOTEL_TIMEOUT_SECONDS
from tests.voicebot.exotel_standin import (
    Answer,
    ExotelStandIn,
    json_call,
    json_rest_exception,
)
from tests.voicebot.factories import (
    ACCOUNT_SID,
    API_KEY,
    API_TOKEN,
    DID_NUMBER,
    FLOW_URL,
    INTEGRATION,
    SETTINGS,
    Operator,
    add_did,
    call_path,
    configure_exotel,
    error_of,
)

CUSTOMER = {"to_number": "09876543210"}
CUSTOMER_E164 = "+919876543210"
FLOW_ID = FLOW_URL.rsplit("/", 1)[1]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox with the operator's Exotel account and the DID's flow (it hangs up)."""
    async with running_sandbox(ACCOUNT_SID, API_KEY, API_TOKEN) as running:
        await running.add_flow(FLOW_ID, [{"type": "hangup"}])
        yield running


@pytest.fixture
async def did(client: httpx.AsyncClient, super_admin: Operator, sandbox: Sandbox) -> str:
    """A configured integration pointing at the sandbox, with one DID that has a flow."""
    await configure_exotel(client, super_admin, api_base_url=sandbox.url)
    return str((await add_did(client, super_admin))["id"])


@pytest.fixture
async def standin_did(
    client: httpx.AsyncClient, super_admin: Operator, exotel: ExotelStandIn
) -> str:
    """The same, pointing at the stand-in for answers the sandbox never gives."""
    await configure_exotel(client, super_admin, api_base_url=exotel.base_url)
    return str((await add_did(client, super_admin))["id"])


async def place(
    client: httpx.AsyncClient,
    operator: Operator,
    did_id: str,
    body: dict[str, Any] | None = None,
    key: str | None = None,
) -> httpx.Response:
    headers = operator.headers | ({"Idempotency-Key": key} if key else {})
    return await client.post(call_path(did_id), headers=headers, json=body or CUSTOMER)


# --- the request Exotel receives ----------------------------------------------------------


async def test_the_test_call_posts_exactly_the_documented_form_to_exotel(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    response = await place(client, admin, did)

    assert response.status_code == 200, response.text
    [request] = await sandbox.calls_api_requests()
    assert request["method"] == "POST"
    assert request["path"] == f"/v1/Accounts/{ACCOUNT_SID}/Calls/connect"
    assert request["fields"] == {
        "From": CUSTOMER_E164,
        "CallerId": DID_NUMBER,
        "Url": FLOW_URL,
        "CallType": "trans",
        "CustomField": f"cxb-test:{did}",
    }
    # The sandbox places a call only for the account's own API key and token.
    assert request["status"] == 200


async def test_a_stream_mode_test_call_posts_connect_voice_ai_to_the_dids_websocket_url(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator, sandbox: Sandbox
) -> None:
    await configure_exotel(client, super_admin, api_base_url=sandbox.url)
    await client.put(
        SETTINGS, headers=super_admin.headers, json={"core_fleet": ["http://127.0.0.1:9"]}
    )
    did = await add_did(client, super_admin, flow_url=None, bot_id="support")

    response = await place(client, admin, did["id"], {**CUSTOMER, "mode": "stream"})

    assert response.status_code == 200, response.text
    [request] = await sandbox.calls_api_requests()
    assert request["status"] == 200
    assert request["fields"] == {
        "From": CUSTOMER_E164,
        "CallerId": DID_NUMBER,
        "StreamUrl": "ws://127.0.0.1:9/exotel/support",
        "StreamType": "bidirectional",
        "CustomField": f"cxb-test:{did['id']}",
    }


async def test_a_stream_mode_test_call_from_a_did_without_a_bot_is_400_naming_bot_id(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, super_admin: Operator
) -> None:
    await configure_exotel(client, super_admin, api_base_url=sandbox.url)
    did = await add_did(client, super_admin, bot_id=None)

    response = await place(client, admin, did["id"], {**CUSTOMER, "mode": "stream"})

    error = error_of(response, 400)
    assert error["field"] == "bot_id"
    assert error["code"] == "missing_bot_id"
    assert await sandbox.calls_api_requests() == []


@pytest.mark.parametrize("mode", ["bridge", "", 1, None])
async def test_an_unknown_test_call_mode_is_refused_naming_mode(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str, mode: Any
) -> None:
    response = await place(client, admin, did, {**CUSTOMER, "mode": mode})

    assert 400 <= response.status_code < 500
    assert "mode" in response.text
    assert await sandbox.calls_api_requests() == []


@pytest.mark.parametrize("tail", ["", "/", "/some/path", "/v1/Accounts/other-sid/"], ids=repr)
async def test_every_form_of_the_base_url_reaches_the_calls_connect_url(
    client: httpx.AsyncClient,
    super_admin: Operator,
    admin: Operator,
    sandbox: Sandbox,
    tail: str,
) -> None:
    await configure_exotel(client, super_admin, api_base_url=sandbox.url + tail)
    did = await add_did(client, super_admin)

    response = await place(client, admin, did["id"])

    assert response.status_code == 200, response.text
    assert [request["path"] for request in await sandbox.calls_api_requests()] == [
        f"/v1/Accounts/{ACCOUNT_SID}/Calls/connect"
    ]


async def test_a_did_id_of_the_longest_allowed_length_reaches_exotel_whole(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator, sandbox: Sandbox
) -> None:
    await configure_exotel(client, super_admin, api_base_url=sandbox.url)
    long_id = "d" * 64
    await add_did(client, super_admin, id=long_id)

    response = await place(client, admin, long_id)

    assert response.status_code == 200, response.text
    [request] = await sandbox.calls_api_requests()
    assert request["fields"]["CustomField"] == f"cxb-test:{long_id}"


@pytest.mark.parametrize("to_number", ["9876543210", "+919876543210", "0091 98765 43210"])
async def test_the_customer_number_is_normalised_before_it_is_dialled(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str, to_number: str
) -> None:
    await place(client, admin, did, {"to_number": to_number})

    [request] = await sandbox.calls_api_requests()
    assert request["fields"]["From"] == CUSTOMER_E164


async def test_an_invalid_customer_number_is_400_naming_it_and_rings_nobody(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    response = await place(client, admin, did, {"to_number": "12345"})

    assert error_of(response, 400)["field"] == "to_number"
    assert await sandbox.calls_api_requests() == []


# --- what Exotel answers ------------------------------------------------------------------


async def test_a_successful_answer_gives_the_call_sid_and_provider_status(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    response = await place(client, admin, did)

    [placed] = await sandbox.calls()
    assert response.status_code == 200, response.text
    assert response.json() == {"call_sid": placed["Sid"], "provider_status": "queued"}


async def test_a_json_answer_gives_the_call_sid_and_provider_status(
    client: httpx.AsyncClient, admin: Operator, exotel: ExotelStandIn, standin_did: str
) -> None:
    exotel.script.append(json_call("sid-json-1", "in-progress"))

    response = await place(client, admin, standin_did)

    assert response.status_code == 200, response.text
    assert response.json() == {"call_sid": "sid-json-1", "provider_status": "in-progress"}


async def test_an_injected_exotel_error_is_502_with_the_rest_exception_message(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    await sandbox.add_fault(route="calls_connect", status=402)

    response = await place(client, admin, did)

    error = error_of(response, 502)
    assert error["code"] == "upstream_error"
    assert "Injected fault" in error["message"]
    assert await sandbox.calls() == []


async def test_credentials_exotel_refuses_are_502_with_its_reason(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    rotated = {"sid": ACCOUNT_SID, "api_key": API_KEY, "api_token": "rotated-elsewhere"}
    await sandbox.post("/_sandbox/accounts", rotated)

    response = await place(client, admin, did)

    assert "Authentication failed" in error_of(response, 502)["message"]
    assert await sandbox.calls() == []


async def test_a_flow_exotel_does_not_know_is_502_naming_it(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator, sandbox: Sandbox
) -> None:
    await configure_exotel(client, super_admin, api_base_url=sandbox.url)
    unknown = FLOW_URL.removesuffix(FLOW_ID) + "404"
    did = await add_did(client, super_admin, flow_url=unknown)

    response = await place(client, admin, did["id"])

    assert "No flow 404" in error_of(response, 502)["message"]
    assert await sandbox.calls() == []


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (json_rest_exception("Invalid CallerId 08047491899"), "Invalid CallerId 08047491899"),
        (
            Answer(200, '{"RestException": {"Status": 403, "Message": "Account suspended"}}'),
            "Account suspended",
        ),
        (Answer(500, "upstream exploded", "text/plain"), "upstream exploded"),
        (Answer(503, ""), "503"),
        (Answer(200, '{"Call": {"Status": "queued"}}'), "Sid"),
        (Answer(200, "<TwilioResponse></TwilioResponse>", "application/xml"), "Sid"),
        (Answer(200, "OK", "text/plain"), "Sid"),
        (Answer(200, "[" * 100_000), "Sid"),
    ],
    ids=[
        "json-rest-exception",
        "rest-exception-with-200",
        "http-500",
        "http-503-empty",
        "json-without-sid",
        "xml-without-sid",
        "plain-text-200",
        "deeply-nested-json-200",
    ],
)
async def test_an_upstream_failure_is_502_with_the_upstream_message(
    client: httpx.AsyncClient,
    admin: Operator,
    exotel: ExotelStandIn,
    standin_did: str,
    answer: Answer,
    message: str,
) -> None:
    exotel.script.append(answer)

    response = await place(client, admin, standin_did)

    error = error_of(response, 502)
    assert error["code"] == "upstream_error"
    assert message in error["message"]


async def test_an_exotel_that_does_not_answer_in_time_is_502(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    latency = EXOTEL_TIMEOUT_SECONDS * 2
    await sandbox.add_fault(route="calls_connect", latency_seconds=latency)
    started = time.monotonic()

    response = await place(client, admin, did)

    assert time.monotonic() - started < latency
    error = error_of(response, 502)
    assert "in time" in error["message"]
    # The sandbox logs the request once its delay is over: one request, never a retry.
    async with asyncio.timeout(latency * 4):
        while not await sandbox.calls_api_requests():
            await asyncio.sleep(0.05)
    assert len(await sandbox.calls_api_requests()) == 1


async def test_an_unreachable_exotel_is_502(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator
) -> None:
    await configure_exotel(client, super_admin, api_base_url="http://127.0.0.1:9")
    did = await add_did(client, super_admin)

    response = await place(client, admin, did["id"])

    assert "could not be reached" in error_of(response, 502)["message"]


# --- refused before calling Exotel --------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [{}, {"account_sid": ACCOUNT_SID, "api_key": API_KEY}, {"api_key": API_KEY, "api_token": "t"}],
    ids=["nothing", "no-token", "no-sid"],
)
async def test_a_test_call_without_credentials_is_400_and_rings_nobody(
    client: httpx.AsyncClient,
    super_admin: Operator,
    admin: Operator,
    sandbox: Sandbox,
    stored: dict[str, str],
) -> None:
    response = await client.put(
        INTEGRATION, headers=super_admin.headers, json=stored | {"api_base_url": sandbox.url}
    )
    assert response.status_code == 200, response.text
    did = await add_did(client, super_admin)

    response = await place(client, admin, did["id"])

    assert error_of(response, 400)["code"] == "credentials_not_configured"
    assert await sandbox.calls_api_requests() == []


async def test_a_did_without_a_flow_url_is_400_and_rings_nobody(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator, sandbox: Sandbox
) -> None:
    await configure_exotel(client, super_admin, api_base_url=sandbox.url)
    did = await add_did(client, super_admin, flow_url=None)

    response = await place(client, admin, did["id"])

    error = error_of(response, 400)
    assert error["field"] == "flow_url"
    assert await sandbox.calls_api_requests() == []


async def test_a_test_call_from_an_unknown_did_is_404(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    response = await place(client, admin, "no-such-did")

    assert error_of(response, 404)["code"] == "did_not_found"
    assert await sandbox.calls_api_requests() == []


async def test_a_private_base_url_stored_earlier_is_refused_once_private_networks_are_off(
    strict_client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    response = await place(strict_client, admin, did)

    assert error_of(response, 400)["field"] == "api_base_url"
    assert await sandbox.calls_api_requests() == []


# --- Idempotency-Key ----------------------------------------------------------------------


async def test_the_same_idempotency_key_rings_once_and_replays_the_answer(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    first = await place(client, admin, did, key="call-0001")
    second = await place(client, admin, did, key="call-0001")

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert len(await sandbox.calls_api_requests()) == 1


async def test_different_keys_ring_twice(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    first = await place(client, admin, did, key="call-0001")
    second = await place(client, admin, did, key="call-0002")

    assert first.json()["call_sid"] != second.json()["call_sid"]
    assert len(await sandbox.calls_api_requests()) == 2


async def test_a_reused_key_with_a_different_body_is_409_and_rings_nobody(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    await place(client, admin, did, key="call-0001")

    response = await place(client, admin, did, {"to_number": "9123456789"}, key="call-0001")

    assert error_of(response, 409)["code"] == "idempotency_key_reused"
    assert len(await sandbox.calls_api_requests()) == 1


async def test_a_failed_upstream_call_releases_its_key_for_a_retry(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    await sandbox.add_fault(route="calls_connect", status=503)
    failed = await place(client, admin, did, key="call-0001")
    await sandbox.add_fault(route="calls_connect")  # Exotel is back

    retried = await place(client, admin, did, key="call-0001")
    replayed = await place(client, admin, did, key="call-0001")

    assert failed.status_code == 502
    assert retried.status_code == 200, retried.text
    assert "idempotent-replayed" not in retried.headers
    [placed] = await sandbox.calls()
    assert retried.json()["call_sid"] == placed["Sid"]
    assert replayed.json() == retried.json()
    assert len(await sandbox.calls_api_requests()) == 2


async def test_an_idempotency_key_belongs_to_its_operator(
    client: httpx.AsyncClient,
    super_admin: Operator,
    admin: Operator,
    sandbox: Sandbox,
    did: str,
) -> None:
    first = await place(client, admin, did, key="call-0001")
    other = await place(client, super_admin, did, key="call-0001")

    assert other.status_code == 200
    assert "idempotent-replayed" not in other.headers
    assert other.json() != first.json()
    assert len(await sandbox.calls_api_requests()) == 2


async def test_a_malformed_idempotency_key_is_400(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    response = await place(client, admin, did, key="has spaces in it")

    assert error_of(response, 400)["code"] == "invalid_idempotency_key"
    assert await sandbox.calls_api_requests() == []


async def test_two_concurrent_requests_with_one_key_ring_once(
    client: httpx.AsyncClient, admin: Operator, sandbox: Sandbox, did: str
) -> None:
    first, second = await asyncio.gather(
        place(client, admin, did, key="call-0001"), place(client, admin, did, key="call-0001")
    )

    assert sorted([first.status_code, second.status_code]) in ([200, 200], [200, 409])
    assert len(await sandbox.calls_api_requests()) == 1
