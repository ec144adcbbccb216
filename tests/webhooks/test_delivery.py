"""End to end: Exotel's hooks in, signed webhooks out to a real receiver, retries, replay."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from standardwebhooks import Webhook

from exoplane.config import Settings
from exoplane.models import Call, WebhookEvent
from tests.factories import RegisteredApp
from tests.waiting import polled
from tests.webhooks.conftest import (
    CALL,
    app_path,
    app_sending_to,
    auth,
    call_hook,
    count_rows,
    hook_url,
    signing_secret,
)
from tests.webhooks.receiver import Receiver


async def test_inbound_popup_delivers_a_signed_incoming_call_within_a_second(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    started = time.monotonic()
    response = await call_hook(client, app, "popup", CALL)
    (received,) = await receiver.wait_for(1, timeout=1.0)

    assert response.status_code == 200
    assert response.json()["Data"] == "Success"
    assert received.path == "/popup"
    assert received.at - started < 1.0
    payload = Webhook(await signing_secret(client, app)).verify(received.body, received.headers)
    assert set(payload) == {"event", "call_sid", "from", "to", "timestamp", "event_id"}
    assert payload["event"] == "incoming_call"
    assert payload["call_sid"] == "call_123"
    assert payload["from"] == "+919876543210"
    assert payload["event_id"] == received.headers["webhook-id"]


async def test_a_wrong_secret_does_not_verify(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await call_hook(client, app, "popup", CALL)
    (received,) = await receiver.wait_for(1)

    other_secret = "whsec_" + "A" * 43 + "="

    with pytest.raises(Exception, match="signature"):
        Webhook(other_secret).verify(received.body, received.headers)


async def test_incoming_call_names_the_agents_sip_address_when_the_number_is_mapped(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await client.post(
        app.users_path,
        headers=auth(app),
        json={
            "user_id": "agent_001",
            "name": "Agent",
            "email": "agent@example.com",
            "virtual_number": "08047491899",
        },
    )

    await call_hook(client, app, "popup", CALL)
    (received,) = await receiver.wait_for(1)

    assert received.json["to"] == "sip:agent_001@exoteldemo.voip.exotel.com"


async def test_a_missed_call_reaches_the_missed_call_url(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)

    await call_hook(client, app, "missedcall", CALL)
    (received,) = await receiver.wait_for(1)

    assert received.path == "/missed"
    assert received.json["event"] == "call_missed"
    assert received.json["call_sid"] == "call_123"
    assert received.json["status"] == "missed"


async def test_an_answered_call_that_ends_reports_completion_and_its_recording(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    recording = "https://recordings.exotel.com/call_123.mp3"

    await call_hook(
        client,
        app,
        "incomingcallhungup",
        {
            **CALL,
            "DialCallStatus": "completed",
            "DialCallDuration": "180",
            "RecordingUrl": recording,
        },
    )
    received = await receiver.wait_for(2)

    by_path = {item.path: item.json for item in received}
    assert by_path["/callback"]["event"] == "call_completed"
    assert by_path["/callback"]["status"] == "completed"
    assert by_path["/callback"]["duration"] == 180
    assert set(by_path["/recording"]) == {
        "event",
        "call_sid",
        "recording_url",
        "duration",
        "timestamp",
        "event_id",
    }
    assert by_path["/recording"]["event"] == "recording_ready"
    assert by_path["/recording"]["recording_url"] == recording
    assert by_path["/recording"]["duration"] == 180


async def test_an_unanswered_call_that_ends_is_reported_missed(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)

    await call_hook(
        client,
        app,
        "incomingcallhungup",
        {**CALL, "DialCallStatus": "no-answer"},
    )
    (received,) = await receiver.wait_for(1)

    assert received.path == "/missed"
    assert received.json["status"] == "no-answer"


async def test_a_repeated_hook_raises_one_event(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await call_hook(client, app, "popup", CALL)
    await call_hook(client, app, "popup", CALL)
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)

    listed = await client.get(app_path(app, "/webhooks/deliveries"), headers=auth(app))
    assert len(receiver.received) == 1
    assert len(listed.json()["data"]["deliveries"]) == 1


@pytest.mark.parametrize(
    ("earlier", "kind"),
    [([], "popup"), (["popup"], "missedcall")],
    ids=["about-a-new-call", "about-a-known-call"],
)
async def test_identical_hooks_arriving_together_all_succeed_and_raise_one_event(
    client: httpx.AsyncClient,
    settings: Settings,
    receiver: Receiver,
    earlier: list[str],
    kind: str,
) -> None:
    app = await app_sending_to(client, settings, receiver)
    for earlier_kind in earlier:
        assert (await call_hook(client, app, earlier_kind, CALL)).status_code == 200
    url = await hook_url(client, app, kind) + "&" + urlencode(CALL)

    responses = await asyncio.gather(*(client.get(url) for _ in range(20)))
    await receiver.wait_for(len(earlier) + 1)
    await asyncio.sleep(0.3)

    assert [r.status_code for r in responses] == [200] * 20
    listed = await client.get(app_path(app, "/webhooks/deliveries"), headers=auth(app))
    assert len(listed.json()["data"]["deliveries"]) == len(earlier) + 1
    assert await count_rows(settings, WebhookEvent) == len(earlier) + 1
    assert await count_rows(settings, Call) == 1
    assert len(receiver.received) == len(earlier) + 1


@pytest.mark.parametrize("sig", [None, "", "forged-signature-value"])
async def test_a_hook_without_a_valid_capability_is_401_and_records_nothing(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, sig: str | None
) -> None:
    app = await app_sending_to(client, settings, receiver)
    params = {**CALL, "type": "popup"}
    if sig is not None:
        params["sig"] = sig

    response = await client.get(f"/v2/integrations/call/inbound_call/{app.id}", params=params)
    await asyncio.sleep(0.2)

    listed = await client.get(app_path(app, "/webhooks/deliveries"), headers=auth(app))
    assert response.status_code == 401
    assert response.json()["Status"] == "Failed"
    assert "sig" in response.json()["Error"]
    assert listed.json()["data"]["deliveries"] == []
    assert receiver.received == []


async def test_one_apps_capability_does_not_open_another_apps_hook(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    first = await app_sending_to(client, settings, receiver)
    second = await app_sending_to(client, settings, receiver)
    popup = await hook_url(client, first, "popup")

    response = await client.get(popup.replace(first.id, second.id) + "&CallSid=c1")

    assert response.status_code == 401


async def test_a_hook_without_call_sid_is_400(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)

    response = await call_hook(client, app, "popup")

    assert response.status_code == 400
    assert "CallSid" in response.json()["Error"]


@pytest.mark.parametrize("hook_type", [None, "", "ringing"])
async def test_a_hook_without_a_known_type_is_400_naming_the_field_and_records_nothing(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, hook_type: str | None
) -> None:
    app = await app_sending_to(client, settings, receiver)
    popup = urlsplit(await hook_url(client, app, "popup"))
    params = {key: value for key, value in parse_qsl(popup.query) if key != "type"}
    if hook_type is not None:
        params["type"] = hook_type

    response = await client.get(popup.path, params={**params, **CALL})

    assert response.status_code == 400
    assert response.json()["Status"] == "Failed"
    assert "'type'" in response.json()["Error"]
    assert "popup, incomingcallhungup, missedcall" in response.json()["Error"]
    assert await count_rows(settings, Call) == 0


async def test_500_500_200_is_delivered_on_the_third_attempt_with_three_attempts_logged(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    receiver.script = [500, 500, 200]

    await call_hook(client, app, "popup", CALL)
    received = await receiver.wait_for(3)
    detail = await _only_delivery(client, app, status="succeeded")

    assert len({item.headers["webhook-id"] for item in received}) == 1
    assert detail["status"] == "succeeded"
    assert detail["attempts"] == 3
    log = detail["attempt_log"]
    assert [attempt["status_code"] for attempt in log] == [500, 500, 200]
    assert all(attempt["latency_ms"] >= 0 for attempt in log)
    assert log[0]["response_body"] == "answered 500"


async def test_410_is_final_after_one_attempt(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    receiver.script = [410]

    await call_hook(client, app, "popup", CALL)
    await receiver.wait_for(1)
    detail = await _only_delivery(client, app, status="failed")
    await asyncio.sleep(0.3)

    assert detail["attempts"] == 1
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [408, 429, 503])
async def test_retryable_statuses_are_retried(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, status: int
) -> None:
    app = await app_sending_to(client, settings, receiver)
    receiver.script = [status, 200]

    await call_hook(client, app, "popup", CALL)
    await receiver.wait_for(2)
    detail = await _only_delivery(client, app, status="succeeded")

    assert [attempt["status_code"] for attempt in detail["attempt_log"]] == [status, 200]


async def test_a_hanging_receiver_times_out_and_is_retried(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    receiver.script = ["hang", 200]

    await call_hook(client, app, "popup", CALL)
    await receiver.wait_for(2)
    detail = await _only_delivery(client, app, status="succeeded")

    first, second = detail["attempt_log"]
    assert first["status_code"] is None
    assert "timed out" in first["error"]
    assert second["status_code"] == 200


async def test_a_failed_delivery_can_be_replayed_with_the_same_event_id(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    receiver.script = [410]
    await call_hook(client, app, "popup", CALL)
    failed = await _only_delivery(client, app, status="failed")

    replay = await client.post(
        app_path(app, f"/webhooks/deliveries/{failed['id']}/retry"), headers=auth(app)
    )
    received = await receiver.wait_for(2)
    detail = await _only_delivery(client, app, status="succeeded")

    assert replay.status_code == 202
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]
    assert detail["attempts"] == 2


async def test_deliveries_can_be_filtered_by_status_and_event(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    receiver.script = [410]
    await call_hook(client, app, "popup", CALL)
    await call_hook(client, app, "missedcall", CALL)
    await receiver.wait_for(2)
    await _only_delivery(client, app, status="failed")

    url = app_path(app, "/webhooks/deliveries")
    failed = (await client.get(url, headers=auth(app), params={"status": "failed"})).json()
    missed = (await client.get(url, headers=auth(app), params={"event": "call_missed"})).json()
    bad = await client.get(url, headers=auth(app), params={"status": "lost"})

    assert [d["event"] for d in failed["data"]["deliveries"]] == ["incoming_call"]
    assert [d["event"] for d in missed["data"]["deliveries"]] == ["call_missed"]
    assert bad.status_code == 400
    assert "status" in bad.json()["error"]["message"]


async def test_another_apps_delivery_is_404(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    first = await app_sending_to(client, settings, receiver)
    second = await app_sending_to(client, settings, receiver)
    await call_hook(client, first, "popup", CALL)
    delivery = await _only_delivery(client, first, status="succeeded")

    response = await client.get(
        app_path(second, f"/webhooks/deliveries/{delivery['id']}"), headers=auth(second)
    )

    assert response.status_code == 404


async def test_a_rotated_secret_signs_beside_the_old_one_during_the_grace_period(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver
) -> None:
    app = await app_sending_to(client, settings, receiver)
    old = await signing_secret(client, app)
    rotated = await client.post(
        app_path(app, "/webhooks/secret/rotate"), headers=auth(app), json={"grace_seconds": 60}
    )
    new = rotated.json()["data"]["secret"]

    await call_hook(client, app, "popup", CALL)
    (received,) = await receiver.wait_for(1)

    assert new != old
    assert Webhook(new).verify(received.body, received.headers)
    assert Webhook(old).verify(received.body, received.headers)


async def _only_delivery(
    client: httpx.AsyncClient, app: RegisteredApp, *, status: str
) -> dict[str, Any]:
    """Wait until the app's only delivery reaches ``status``; return it with its attempts."""

    async def listed() -> list[dict[str, Any]]:
        response = await client.get(app_path(app, "/webhooks/deliveries"), headers=auth(app))
        deliveries: list[dict[str, Any]] = response.json()["data"]["deliveries"]
        return deliveries

    deliveries = await polled(
        listed,
        lambda deliveries: any(d["status"] == status for d in deliveries),
        what=f"a {status} delivery",
        every=0.05,
    )
    matching = [d for d in deliveries if d["status"] == status]
    detail = await client.get(
        app_path(app, f"/webhooks/deliveries/{matching[-1]['id']}"), headers=auth(app)
    )
    data: dict[str, Any] = detail.json()["data"]
    return data
