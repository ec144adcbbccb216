"""Operators and every app's webhooks: the delivery log across apps, replaying one delivery,
and replays of every failed delivery matching a filter, run in the background, cancellable
and carried over a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from exoplane.config import Settings
from tests.console.conftest import console_client
from tests.factories import RegisteredApp
from tests.voicebot.factories import Operator, create_operator
from tests.waiting import polled, until
from tests.webhooks.conftest import CALL, app_sending_to, call_hook, serving, webhook_settings
from tests.webhooks.receiver import Receiver

DELIVERIES = "/api/v1/webhooks/deliveries"
REPLAYS = "/api/v1/webhooks/replays"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # The log is polled while deliveries settle: more often than an operator's 200/minute.
    return webhook_settings(tmp_path, database_url, rate_limit="10000/minute")


@pytest.fixture
async def operator(settings: Settings) -> Operator:
    return await create_operator(settings, "ops@example.com", "admin")


async def get(client: httpx.AsyncClient, operator: Operator, path: str, **params: Any) -> Any:
    response = await client.get(path, headers=operator.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def deliveries(client: httpx.AsyncClient, operator: Operator, **params: Any) -> list[Any]:
    page = await get(client, operator, DELIVERIES, **params)
    return list(page["deliveries"])


async def failed_popups(
    client: httpx.AsyncClient,
    app: RegisteredApp,
    receiver: Receiver,
    operator: Operator,
    n: int,
    *,
    before: int = 0,
) -> None:
    """``n`` more incoming calls (after ``before`` earlier ones) whose webhooks the receiver
    refuses for good (410)."""
    receiver.script = [410] * n
    for number in range(before, before + n):
        await call_hook(client, app, "popup", {**CALL, "CallSid": f"{app.id}-{number}"})

    await polled(
        lambda: deliveries(client, operator, app=app.id, status="failed", limit=100),
        lambda found: len(found) == before + n,
        what=f"{n} failed deliveries",
    )


async def test_the_log_lists_every_apps_deliveries_filtered_by_app_event_status_and_time(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, operator: Operator
) -> None:
    first = await app_sending_to(client, settings, receiver)
    second = await app_sending_to(client, settings, receiver)
    await failed_popups(client, first, receiver, operator, 1)
    await call_hook(client, second, "missedcall", CALL)
    await polled(
        lambda: deliveries(client, operator, app=second.id, status="succeeded"),
        bool,
        what="the missed call delivered",
    )

    every = await deliveries(client, operator)
    of_second = await deliveries(client, operator, app=second.id)
    missed = await deliveries(client, operator, event="call_missed")
    failed = await deliveries(client, operator, status="failed")
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    none_yet = await deliveries(client, operator, since=later)
    earlier = await deliveries(client, operator, until=later)

    assert {d["app_id"] for d in every} == {first.id, second.id}
    assert [d["event"] for d in of_second] == ["call_missed"]
    assert [d["app_id"] for d in missed] == [second.id]
    assert [(d["app_id"], d["event"]) for d in failed] == [(first.id, "incoming_call")]
    assert none_yet == []
    assert len(earlier) == len(every) == 2


async def test_pages_stay_the_same_while_new_deliveries_arrive(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, operator: Operator
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await failed_popups(client, app, receiver, operator, 5)
    first = await get(client, operator, DELIVERIES, limit=2)
    second = await get(client, operator, DELIVERIES, limit=2, cursor=first["next_cursor"])

    await failed_popups(client, app, receiver, operator, 3, before=5)
    again = await get(client, operator, DELIVERIES, limit=2, cursor=first["next_cursor"])
    last = await get(client, operator, DELIVERIES, limit=2, cursor=second["next_cursor"])

    assert again["deliveries"] == second["deliveries"]
    ids = [int(d["id"]) for page in (first, second, last) for d in page["deliveries"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 5
    assert (last["has_more"], last["next_cursor"]) == (False, None)


async def test_one_delivery_shows_its_payload_and_attempts_and_replays_with_its_event_id(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, operator: Operator
) -> None:
    app = await app_sending_to(client, settings, receiver)
    await failed_popups(client, app, receiver, operator, 1)
    [failed] = await deliveries(client, operator, app=app.id)

    detail = await get(client, operator, f"{DELIVERIES}/{failed['id']}")
    replay = await client.post(f"{DELIVERIES}/{failed['id']}/replay", headers=operator.headers)
    received = await receiver.wait_for(2)

    after = await polled(
        lambda: get(client, operator, f"{DELIVERIES}/{failed['id']}"),
        lambda found: found["status"] == "succeeded",
        what="the replayed delivery",
    )
    assert detail["app_id"] == app.id
    assert detail["payload"]["call_sid"] == f"{app.id}-0"
    assert [a["status_code"] for a in detail["attempt_log"]] == [410]
    assert detail["attempt_log"][0]["response_body"] == "answered 410"
    sent = detail["attempt_log"][0]["request_headers"]
    assert sent["webhook-id"] == received[0].headers["webhook-id"] == failed["event_id"]
    assert sent["webhook-signature"] == received[0].headers["webhook-signature"]
    assert sent["User-Agent"].startswith("exoplane-webhooks/")
    assert replay.status_code == 202, replay.text
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]
    assert [a["status_code"] for a in after["attempt_log"]] == [410, 200]
    root = await create_operator(settings, "root@example.com", "super_admin")
    audit = await get(client, root, "/api/v1/audit", action="webhook.")
    assert audit["entries"][0]["action"] == "webhook.replay"


async def test_replaying_every_failed_delivery_of_an_app_sends_those_and_no_others(
    client: httpx.AsyncClient, settings: Settings, receiver: Receiver, operator: Operator
) -> None:
    chosen = await app_sending_to(client, settings, receiver)
    other = await app_sending_to(client, settings, receiver)
    await failed_popups(client, chosen, receiver, operator, 3)
    await failed_popups(client, other, receiver, operator, 2)

    started = await client.post(REPLAYS, headers=operator.headers, json={"app_id": chosen.id})
    assert started.status_code == 202, started.text
    replay = started.json()
    assert (replay["status"], replay["total"]) == ("running", 3)

    done = await polled(
        lambda: get(client, operator, f"{REPLAYS}/{replay['id']}"),
        lambda found: found["status"] == "completed",
        what="the replay completed",
    )
    await polled(
        lambda: deliveries(client, operator, app=chosen.id, status="succeeded"),
        lambda found: len(found) == 3,
        what="the chosen app's deliveries sent again",
    )
    await receiver.wait_for(8)
    assert done["replayed"] == 3
    assert done["filter"]["app_id"] == chosen.id
    assert len(await deliveries(client, operator, app=chosen.id, status="failed")) == 0
    assert len(await deliveries(client, operator, app=other.id, status="failed")) == 2
    listed = await get(client, operator, REPLAYS)
    assert [r["id"] for r in listed["replays"]] == [replay["id"]]


async def test_a_replay_made_while_no_worker_runs_is_done_after_a_restart_unless_cancelled(
    settings: Settings, receiver: Receiver, operator: Operator
) -> None:
    async with serving(settings) as client:
        app = await app_sending_to(client, settings, receiver)
        await failed_popups(client, app, receiver, operator, 2)
    async with console_client(settings) as quiet:  # the app without a delivery worker
        kept = await quiet.post(REPLAYS, headers=operator.headers, json={"app_id": app.id})
        dropped = await quiet.post(REPLAYS, headers=operator.headers, json={"app_id": app.id})
        cancelled = await quiet.post(
            f"{REPLAYS}/{dropped.json()['id']}/cancel", headers=operator.headers
        )
        again = await quiet.post(
            f"{REPLAYS}/{dropped.json()['id']}/cancel", headers=operator.headers
        )
        assert cancelled.json()["status"] == "cancelled", cancelled.text
        assert (await get(quiet, operator, f"{REPLAYS}/{kept.json()['id']}"))["replayed"] == 0

    async with serving(settings) as client:
        done = await polled(
            lambda: get(client, operator, f"{REPLAYS}/{kept.json()['id']}"),
            lambda found: found["status"] == "completed",
            what="the replay made before the restart completed",
        )
        await until(lambda: len(receiver.received) >= 4, what="both sent again")
        still = await get(client, operator, f"{REPLAYS}/{dropped.json()['id']}")

    assert done["replayed"] == 2
    assert (still["status"], still["replayed"]) == ("cancelled", 0)
    assert again.status_code == 409
    assert "cancelled" in again.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", DELIVERIES + "?status=lost", None, "status"),
        ("GET", DELIVERIES + "?event=call_lost", None, "event"),
        ("GET", DELIVERIES + "?cursor=abc", None, "cursor"),
        ("GET", DELIVERIES + "?since=2026-01-02T00:00Z&until=2026-01-01T00:00Z", None, "since"),
        ("POST", REPLAYS, {"event": "call_lost"}, "event"),
        ("POST", REPLAYS, {"colour": "red"}, "colour"),
        ("POST", REPLAYS, {"since": "2026-01-02T00:00Z", "until": "2026-01-01T00:00Z"}, "since"),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    client: httpx.AsyncClient,
    operator: Operator,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    response = await client.request(method, path, headers=operator.headers, json=body)

    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["message"]


async def test_unknown_ids_are_404_and_no_operator_is_401(
    client: httpx.AsyncClient, operator: Operator
) -> None:
    missing = await client.get(f"{DELIVERIES}/999999", headers=operator.headers)
    replay = await client.post(f"{DELIVERIES}/999999/replay", headers=operator.headers)
    job = await client.get(f"{REPLAYS}/999999", headers=operator.headers)
    anonymous = await client.get(DELIVERIES)

    assert [missing.status_code, replay.status_code, job.status_code] == [404, 404, 404]
    assert anonymous.status_code == 401
