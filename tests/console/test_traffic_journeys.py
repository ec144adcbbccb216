"""Operators' journeys through the Webhooks and Calls pages in a real headless Chromium,
against a real server on 127.0.0.1, the Exotel sandbox and a real webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import expect

from tests.console.browser import Browser
from tests.console.journeys import browser, exoplane, receiver, super_admin
from tests.console.test_journeys import CALL_LASTS, api, configure_for_sandbox
from tests.e2e.conftest import (
    ACCOUNT_SID,
    CALLER,
    EXOTEL_KEY,
    EXOTEL_TOKEN,
    CallCentre,
    Exoplane,
    call_centre,
)
from tests.e2e.servers import Sandbox, running_sandbox
from tests.voicebot.factories import Operator
from tests.waiting import WAIT_SECONDS, polled
from tests.webhooks.receiver import Receiver

# The e2e tests' app whose webhooks all go to the receiver, and the journeys' fixtures.
__all__ = ["browser", "call_centre", "exoplane", "receiver", "super_admin"]

EXOPHONE = "+918047491803"
AGENT_PHONE = "+919876500013"
# One retry: a webhook refused twice has failed for good, until an operator replays it.
ONE_RETRY = {"webhook_retry_schedule": [0.05]}
EXOPLANE_SETTINGS = ONE_RETRY
VIEWPORT = {"width": 1100, "height": 720}


@pytest.fixture
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    timing = CALL_LASTS if "live" in request.node.name else {}
    async with running_sandbox(ACCOUNT_SID, EXOTEL_KEY, EXOTEL_TOKEN, **timing) as running:
        yield running


async def failed_delivery(exoplane: Exoplane, operator: Operator, app_id: str) -> dict[str, Any]:
    """The app's incoming_call delivery once it has failed for good."""

    async def fetch() -> list[dict[str, Any]]:
        found: dict[str, Any] = await api(
            exoplane,
            operator,
            "GET",
            f"/api/v1/webhooks/deliveries?app={app_id}&event=incoming_call&status=failed",
        )
        return list(found["deliveries"])

    [delivery] = await polled(fetch, bool, what="the incoming_call delivery failed", every=0.1)
    return delivery


async def test_a_webhook_refused_twice_fails_and_then_succeeds_on_replay(
    browser: Browser,
    super_admin: Operator,
    exoplane: Exoplane,
    sandbox: Sandbox,
    receiver: Receiver,
    call_centre: CallCentre,
) -> None:
    await call_centre.add_agent(
        "gita", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )
    receiver.script = [500, 503]  # the first webhook, incoming_call, is refused twice
    call_sid = await sandbox.dial_in(EXOPHONE, CALLER)
    await sandbox.finished_call(call_sid)
    delivery = await failed_delivery(exoplane, super_admin, call_centre.app.id)
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)

    await browser.nav("Webhooks")
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    rows = page.get_by_test_id("deliveries").get_by_role("row")
    await expect(rows.filter(has_text="incoming_call")).to_contain_text("failed")
    chart = page.get_by_test_id("chart-deliveries")

    async def deliveries_chart() -> str:
        await page.reload()  # the charts' current hour is at most ten seconds old
        return await chart.text_content() or ""

    await polled(deliveries_chart, lambda text: "1 failed" in text, what="the chart", every=1)
    await browser.screenshot("webhooks")
    await page.get_by_role("link", name=delivery["id"], exact=True).click()

    attempts = page.get_by_test_id("attempts")
    await expect(page.get_by_test_id("delivery-status")).to_have_text("failed")
    await expect(attempts.get_by_role("row").nth(1)).to_contain_text("500")
    await expect(attempts.get_by_role("row").nth(2)).to_contain_text("503")
    await expect(attempts).to_contain_text(f"webhook-id{delivery['event_id']}")
    await expect(page.get_by_test_id("payload")).to_contain_text(call_sid)
    await page.get_by_role("button", name="Replay").click()
    await expect(page.get_by_role("status")).to_have_text("Delivery queued to be sent again.")

    async def status() -> str | None:
        await page.reload()
        return await page.get_by_test_id("delivery-status").text_content()

    await polled(status, lambda text: text == "succeeded", what="the replay", every=0.2)
    await expect(attempts.get_by_role("row").nth(3)).to_contain_text("200")
    sent = [r for r in receiver.received if r.json["event"] == "incoming_call"]
    assert [r.headers["webhook-id"] for r in sent] == [delivery["event_id"]] * 3
    await browser.screenshot("webhook-delivery")


async def test_replay_all_failed_shows_its_progress_until_every_one_is_sent(
    browser: Browser,
    super_admin: Operator,
    exoplane: Exoplane,
    sandbox: Sandbox,
    receiver: Receiver,
    call_centre: CallCentre,
) -> None:
    await call_centre.add_agent(
        "gita", phone=AGENT_PHONE, exophone=EXOPHONE, devices={"phone": True, "sip": False}
    )
    receiver.script = [500, 503]
    await sandbox.finished_call(await sandbox.dial_in(EXOPHONE, CALLER))
    await failed_delivery(exoplane, super_admin, call_centre.app.id)
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)

    await browser.nav("Webhooks")
    await page.get_by_label("App").select_option(call_centre.app.id)
    await page.get_by_role("button", name="Filter").click()
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Replay all failed").click()

    await expect(page.get_by_role("heading", level=1)).to_contain_text("Replay")
    await expect(page.get_by_test_id("replay-status")).to_have_text(
        "completed", timeout=WAIT_SECONDS * 1000
    )
    await expect(page.get_by_test_id("replay-count")).to_have_text("1 of 1")
    assert await page.locator("progress").get_attribute("value") == "1"
    await browser.screenshot("webhook-replay")
    remaining = await api(exoplane, super_admin, "GET", "/api/v1/webhooks/deliveries?status=failed")
    assert remaining["deliveries"] == []


async def test_a_running_test_calls_timeline_fills_in_live_on_the_calls_page(
    browser: Browser, super_admin: Operator, exoplane: Exoplane, sandbox: Sandbox
) -> None:
    did = await configure_for_sandbox(exoplane, sandbox, super_admin)
    placed = await api(
        exoplane,
        super_admin,
        "POST",
        f"/api/v1/integrations/exotel/dids/{did['id']}/test-call",
        to_number=CALLER,
    )
    call_sid = placed["call_sid"]
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)

    await browser.nav("Calls")
    await page.get_by_role("link", name=call_sid).click()
    await expect(page.get_by_test_id("call-state")).to_contain_text("following it live")
    await page.evaluate("document.body.dataset.loadedOnce = 'yes'")
    await expect(page.get_by_test_id("call-state")).to_have_text(
        "Call ended", timeout=WAIT_SECONDS * 4 * 1000
    )
    timeline = page.locator("#timeline")
    await expect(timeline.locator("li[data-kind=stream_start]")).to_have_count(1)
    await expect(timeline.locator("li.highlight.close.good")).to_contain_text('"code":1000')
    await expect(page.get_by_test_id("close-code")).to_contain_text("1000")
    await expect(page.get_by_test_id("first-bot-audio")).to_contain_text(" ms")
    await expect(timeline.locator("li").first.locator("time")).to_have_text("+0.000 s")
    assert await page.evaluate("document.body.dataset.loadedOnce") == "yes"  # never reloaded
    await browser.screenshot("call-timeline")

    await browser.nav("Calls")
    await expect(page.get_by_test_id("calls").get_by_role("row").nth(1)).to_contain_text(
        "completed"
    )
    await browser.screenshot("calls")
    await browser.nav("Overview")
    chart = page.get_by_test_id("chart-first-audio")

    async def first_audio_chart() -> str:
        await page.reload()  # the charts' current hour is at most ten seconds old
        return await chart.text_content() or ""

    await polled(first_audio_chart, lambda text: "highest p99" in text, what="the chart", every=1)
    await browser.screenshot("overview")
