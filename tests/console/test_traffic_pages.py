"""The console's webhook and call pages over ASGI: every app's deliveries, one delivery and
replaying it, replaying every failed one, the call logs and a call's timeline."""

from __future__ import annotations

import re

import httpx
import pytest

from exoplane.config import Settings
from tests.console.conftest import csrf_of, post_form
from tests.console.test_pages import EXTERNAL
from tests.factories import RegisteredApp, app_with_token
from tests.webhooks.conftest import CALL, app_path, auth, call_hook

DELIVERY_LINK = re.compile(r'href="/console/webhooks/deliveries/(\d+)"')


@pytest.fixture
async def app_with_a_call(signed_in: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    """An app whose popup webhook goes to a port on 127.0.0.1, and one incoming call (no
    worker runs here: its delivery stays pending)."""
    app = await app_with_token(signed_in, settings)
    body = {"popup_url": "http://127.0.0.1:9/popup"}
    response = await signed_in.put(app_path(app, "/settings"), headers=auth(app), json=body)
    assert response.status_code == 200, response.text
    hooked = await call_hook(signed_in, app, "popup", CALL)
    assert hooked.status_code == 200, hooked.text
    return app


@pytest.mark.parametrize("path", ["/console/webhooks", "/console/calls"])
async def test_the_new_pages_have_the_consoles_headers_and_nothing_from_elsewhere(
    signed_in: httpx.AsyncClient, path: str
) -> None:
    response = await signed_in.get(path)

    assert response.status_code == 200, response.text
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert "<script>" not in response.text
    assert not re.search(r"\son[a-z]+=", response.text)
    assert not EXTERNAL.search(response.text)
    assert 'aria-current="page"' in response.text


async def test_the_webhooks_page_lists_filters_charts_and_replays_one_delivery(
    signed_in: httpx.AsyncClient, app_with_a_call: RegisteredApp
) -> None:
    app = app_with_a_call
    listed = await signed_in.get("/console/webhooks", params={"app": app.id})
    other = await signed_in.get("/console/webhooks", params={"status": "failed"})
    [delivery_id] = DELIVERY_LINK.findall(listed.text)
    detail = await signed_in.get(f"/console/webhooks/deliveries/{delivery_id}")
    replayed = await signed_in.post(
        f"/console/webhooks/deliveries/{delivery_id}/replay",
        data={"csrf_token": csrf_of(detail)},
    )

    assert listed.status_code == 200
    assert 'data-testid="chart-deliveries"' in listed.text
    assert 'data-testid="chart-latency"' in listed.text
    assert "1 in all: 0 succeeded, 0 failed, 1 pending" in listed.text
    assert '<rect class="series-pending"' in listed.text
    assert DELIVERY_LINK.findall(other.text) == []
    assert detail.status_code == 200
    assert CALL["CallSid"] in detail.text  # the payload
    assert "Not attempted yet." in detail.text
    assert replayed.status_code == 303
    assert replayed.headers["location"].endswith("?done=delivery_replayed")


async def test_replay_all_failed_starts_a_job_with_progress_that_can_be_cancelled(
    signed_in: httpx.AsyncClient, app_with_a_call: RegisteredApp
) -> None:
    started = await post_form(
        signed_in,
        "/console/webhooks",
        "/console/webhooks/replays",
        {"app": app_with_a_call.id, "event": "incoming_call", "since": "", "until": ""},
    )
    assert started.status_code == 303, started.text
    job = started.headers["location"]
    running = await signed_in.get(job)
    cancelled = await post_form(signed_in, job, f"{job}/cancel", {})
    after = await signed_in.get(cancelled.headers["location"])
    again = await signed_in.post(f"{job}/cancel", data={"csrf_token": csrf_of(after)})

    assert '<meta http-equiv="refresh"' in running.text
    assert "<progress" in running.text
    assert ">running<" in running.text
    assert "Replay cancelled." in after.text
    assert ">cancelled<" in after.text
    assert '<meta http-equiv="refresh"' not in after.text
    assert again.status_code == 409
    assert "already cancelled" in again.text


async def test_the_call_log_of_an_app_and_its_calls_timeline(
    signed_in: httpx.AsyncClient, app_with_a_call: RegisteredApp
) -> None:
    app = app_with_a_call
    log = await signed_in.get("/console/calls", params={"app": app.id, "direction": "inbound"})
    outbound = await signed_in.get(
        "/console/calls", params={"app": app.id, "direction": "outbound"}
    )
    page = await signed_in.get(f"/console/calls/{CALL['CallSid']}", params={"app": app.id})
    platform = await signed_in.get(f"/console/calls/{CALL['CallSid']}")

    assert log.status_code == 200
    assert f"/console/calls/{CALL['CallSid']}?app={app.id}" in log.text
    assert CALL["CallSid"] not in outbound.text
    assert page.status_code == 200, page.text
    assert "+0.000 s" in page.text
    assert "hook_received" in page.text
    assert "webhook_queued" in page.text
    assert 'data-testid="call-state">Call in progress' in page.text
    assert f"/console/calls/{CALL['CallSid']}/events?app={app.id}" in page.text
    assert platform.status_code == 404


async def test_the_overview_has_the_call_charts(signed_in: httpx.AsyncClient) -> None:
    overview = await signed_in.get("/console")

    assert 'data-testid="chart-calls"' in overview.text
    assert 'data-testid="chart-first-audio"' in overview.text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/console/webhooks?status=lost", "status"),
        ("/console/webhooks?since=yesterday", "since"),
        ("/console/webhooks?since=2026-01-02T00:00&until=2026-01-01T00:00", "since"),
        ("/console/webhooks/deliveries/99999999", "99999999"),
        ("/console/calls?cursor=abc", "cursor"),
        ("/console/calls?direction=sideways", "direction"),
        ("/console/webhooks/replays/99999999", "99999999"),
    ],
)
async def test_bad_filters_and_unknown_ids_get_error_pages_naming_them(
    signed_in: httpx.AsyncClient, path: str, field: str
) -> None:
    response = await signed_in.get(path)

    assert response.status_code in (400, 404), response.text
    assert field in response.text
    assert response.headers["content-type"].startswith("text/html")
