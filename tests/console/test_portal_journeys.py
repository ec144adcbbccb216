"""A per-app portal link in a real headless Chromium, against a real server on 127.0.0.1,
the Exotel sandbox and a real webhook receiver: a super_admin mints it on the app's page;
whoever opens it sees that app's deliveries (and replays one), calls, flow URLs and
settings, and nothing else; revoked or expired, it is refused with a page that says so."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import expect

from exoplane.models import PortalLink
from tests.console.browser import Browser
from tests.console.journeys import browser, exoplane, receiver, sandbox, super_admin
from tests.console.test_journeys import api
from tests.console.test_traffic_journeys import AGENT_PHONE, EXOPHONE, ONE_RETRY, failed_delivery
from tests.e2e.conftest import (
    CALLER,
    CallCentre,
    Exoplane,
    call_centre,
)
from tests.e2e.servers import Sandbox
from tests.factories import app_with_token, database_session
from tests.voicebot.factories import Operator
from tests.waiting import polled
from tests.webhooks.conftest import auth, call_hook
from tests.webhooks.receiver import Receiver

# The e2e tests' app whose webhooks all go to the receiver, and the journeys' fixtures.
__all__ = ["browser", "call_centre", "exoplane", "receiver", "sandbox", "super_admin"]
EXOPLANE_SETTINGS = ONE_RETRY
VIEWPORT = {"width": 1100, "height": 720}

APPS = "/api/v1/customers"
OTHER_CALL = {"CallSid": "call_of_another_app", "CallFrom": CALLER, "CallTo": "08047491899"}


async def another_apps_delivery(exoplane: Exoplane, operator: Operator) -> str:
    """Another app of another customer, with one call and its delivery; the delivery's id."""
    other = await app_with_token(exoplane.http, exoplane.settings)
    settings = {"popup_url": "http://127.0.0.1:9/popup"}
    path = f"/v2/integrations/{other.customer_id}/apps/{other.id}/settings"
    assert (await exoplane.http.put(path, headers=auth(other), json=settings)).is_success
    assert (await call_hook(exoplane.http, other, "popup", OTHER_CALL)).is_success

    async def fetch() -> list[dict[str, Any]]:
        found = await api(exoplane, operator, "GET", f"/api/v1/webhooks/deliveries?app={other.id}")
        return list(found["deliveries"])

    [delivery] = await polled(fetch, bool, what="the other app's delivery", every=0.1)
    return str(delivery["id"])


async def test_a_portal_link_shows_its_app_and_nothing_else_until_revoked_or_expired(
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
    app = call_centre.app
    delivery = await failed_delivery(exoplane, super_admin, app.id)
    other_delivery = await another_apps_delivery(exoplane, super_admin)
    page = browser.page

    # A super_admin mints a link on the app's page, copies it, and signs out.
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto(f"/console/customers/{app.customer_id}/apps/{app.id}")
    await page.get_by_label("Expires after").select_option(label="1 day")
    await page.get_by_role("button", name="Mint a portal link").click()
    link = await page.get_by_test_id("portal-link-url").text_content()
    assert link is not None
    links = page.get_by_test_id("portal-links")
    await expect(links.get_by_role("row").nth(1)).to_contain_text("active")
    await expect(links.get_by_role("row").nth(1)).to_contain_text(super_admin.email)
    await page.get_by_test_id("portal-links").scroll_into_view_if_needed()
    await browser.screenshot("portal-links")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You have signed out.")

    # The integrator opens it: their app, its flow URLs and settings.
    await page.goto(link)
    assert urlsplit(page.url).path == "/console/portal"
    assert "/open/" not in page.url
    details = await api(exoplane, super_admin, "GET", f"{APPS}/{app.customer_id}/apps/{app.id}")
    await expect(page.get_by_test_id("portal-app")).to_have_text(details["name"])
    await expect(page.get_by_role("heading", level=1)).to_have_text(details["name"])
    popup = call_centre.flow_urls["passthru_urls"]["popup"]
    await expect(page.get_by_test_id("flow-popup")).to_contain_text(popup)
    await expect(page.get_by_test_id("settings")).to_contain_text(receiver.url("/popup"))
    await browser.screenshot("portal")

    # Its failed delivery, replayed until it succeeds.
    portal = page.get_by_role("navigation", name="Portal")
    await portal.get_by_role("link", name="Webhooks", exact=True).click()
    rows = page.get_by_test_id("deliveries").get_by_role("row")
    await expect(rows.filter(has_text="incoming_call")).to_contain_text("failed")
    await expect(page.get_by_role("link", name=other_delivery, exact=True)).to_have_count(0)
    await page.get_by_role("link", name=delivery["id"], exact=True).click()
    await expect(page.get_by_test_id("delivery-status")).to_have_text("failed")
    await page.get_by_role("button", name="Replay").click()
    await expect(page.get_by_role("status")).to_have_text("Delivery queued to be sent again.")

    async def status() -> str | None:
        await page.reload()
        return await page.get_by_test_id("delivery-status").text_content()

    await polled(status, lambda text: text == "succeeded", what="the replay", every=0.2)
    await browser.screenshot("portal-delivery")

    # Its call and the call's timeline.
    await portal.get_by_role("link", name="Calls", exact=True).click()
    await page.get_by_role("link", name=call_sid).click()
    await expect(page.get_by_test_id("call-sid")).to_have_text(call_sid)
    await expect(page.locator("#timeline li[data-kind=hook_received]").first).to_be_visible()

    # Another app's delivery and call, and anything outside the portal: not found.
    for path in (
        f"/console/portal/webhooks/deliveries/{other_delivery}",
        f"/console/portal/calls/{OTHER_CALL['CallSid']}",
        "/console/portal/customers",
        "/console/portal/webhooks/replays/1",
    ):
        response = await page.goto(exoplane.url + path)
        assert response is not None
        assert response.status == 404, path
        await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    # No operator page: each sends the browser to sign in.
    for path in ("/console", "/console/webhooks", "/console/calls", "/console/customers"):
        await browser.goto(path)
        assert urlsplit(page.url).path == "/console/login", path

    # Revoked, the link is refused on the very next page, and when opened again.
    revoke = f"{APPS}/{app.customer_id}/apps/{app.id}/portal-links"
    [minted] = (await api(exoplane, super_admin, "GET", revoke))["portal_links"]
    await api(exoplane, super_admin, "POST", f"{revoke}/{minted['id']}/revoke")
    await browser.goto("/console/portal")
    await expect(page.locator("main")).to_contain_text("This portal link has been revoked")
    await page.goto(link)
    await expect(page.locator("main")).to_contain_text("This portal link has been revoked")
    await browser.screenshot("portal-revoked")

    # Expired, likewise.
    expiring = await api(exoplane, super_admin, "POST", revoke, expires_in_seconds=3600)
    async with database_session(exoplane.settings) as session:
        row = await session.get(PortalLink, expiring["id"])
        assert row is not None
        row.expires_at = row.created_at
    await page.goto(expiring["url"])
    await expect(page.locator("main")).to_contain_text("This portal link has expired")
    await browser.screenshot("portal-expired")
