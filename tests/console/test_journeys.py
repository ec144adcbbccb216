"""Operators' journeys through the console in a real headless Chromium, against a real
server on 127.0.0.1 and the Exotel sandbox."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from tests.console.browser import Browser
from tests.console.journeys import browser, exoplane, sandbox, super_admin
from tests.e2e.conftest import (
    ACCOUNT_SID,
    CALLER,
    EXOTEL_KEY,
    EXOTEL_TOKEN,
    Exoplane,
)
from tests.e2e.servers import Sandbox
from tests.voicebot.factories import Operator, create_operator
from tests.waiting import WAIT_SECONDS

__all__ = ["browser", "exoplane", "sandbox", "super_admin"]  # the journeys' fixtures

EXOPHONE = "+918047491803"
FLOW_ID = "2001"
FLOW_URL = f"http://my.exotel.com/{ACCOUNT_SID}/exoml/start_voice/{FLOW_ID}"
# Calls ring and talk in real time here, so the timeline is seen filling in live.
CALL_LASTS = {"time_scale": 1.0, "ring_seconds": 2.0, "caller_turns": 1}
SANDBOX_TIMING = CALL_LASTS


@pytest.fixture
async def admin(exoplane: Exoplane) -> Operator:
    return await create_operator(exoplane.settings, "ops@example.com", "admin")


async def api(exoplane: Exoplane, operator: Operator, method: str, path: str, **body: Any) -> Any:
    response = await exoplane.http.request(method, path, headers=operator.headers, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def configure_for_sandbox(
    exoplane: Exoplane, sandbox: Sandbox, operator: Operator, *, token: str = EXOTEL_TOKEN
) -> dict[str, Any]:
    """Credentials for the sandbox, this server as the core fleet, and an echo-bot DID whose
    flow (in the sandbox) streams to the DID's websocket_url; the DID."""
    await api(
        exoplane,
        operator,
        "PUT",
        "/api/v1/integrations/exotel",
        account_sid=ACCOUNT_SID,
        api_key=EXOTEL_KEY,
        api_token=token,
        api_base_url=sandbox.url,
    )
    await api(exoplane, operator, "PUT", "/api/v1/settings", core_fleet=[exoplane.url])
    did: dict[str, Any] = await api(
        exoplane,
        operator,
        "POST",
        "/api/v1/integrations/exotel/dids",
        number=EXOPHONE,
        label="Echo line",
        bot_id="echo",
        flow_url=FLOW_URL,
    )
    await sandbox.add_flow(FLOW_ID, [{"type": "voicebot", "url": did["websocket_url"]}])
    return did


async def test_an_operator_signs_in_and_out(browser: Browser, super_admin: Operator) -> None:
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)

    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Console")).to_contain_text("Operators")
    await page.get_by_role("button", name="Sign out").click()

    await expect(page.get_by_role("status")).to_have_text("You have signed out.")
    await browser.goto("/console/dids")
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    await browser.screenshot("signed-out")


async def test_a_wrong_password_is_refused(browser: Browser, super_admin: Operator) -> None:
    await browser.sign_in(super_admin.email, "not-my-password")

    await expect(browser.page.get_by_role("alert")).to_have_text("Wrong email or password")
    await expect(browser.page.get_by_label("Email")).to_have_value(super_admin.email)
    await browser.screenshot("wrong-password")


async def test_saved_credentials_show_as_configured_and_never_reach_the_page(
    browser: Browser, super_admin: Operator, sandbox: Sandbox
) -> None:
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.nav("Exotel")
    await expect(page.get_by_text("Not configured")).to_be_visible()

    await page.get_by_label("Account SID").fill(ACCOUNT_SID)
    await page.get_by_label("API key").fill(EXOTEL_KEY)
    await page.get_by_label("API token").fill(EXOTEL_TOKEN)
    await page.get_by_label("API base URL").fill(sandbox.url)
    await page.get_by_role("button", name="Save").click()

    await expect(page.get_by_role("status")).to_have_text("Exotel credentials saved.")
    await expect(page.get_by_text("Configured", exact=True)).to_be_visible()
    await expect(page.get_by_label("API key")).to_have_value("")
    for path in ("/console/exotel", "/console", "/console/dids", "/console/audit"):
        source = await browser.source(path)
        assert EXOTEL_KEY not in source
        assert EXOTEL_TOKEN not in source
    assert EXOTEL_KEY not in await page.content()
    await browser.screenshot("exotel-configured")


async def test_an_added_dids_websocket_url_is_copied_to_the_clipboard(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.nav("DIDs")

    await page.get_by_label("Number").fill("08047491899")
    await page.get_by_label("Label").fill("Support line")
    await page.get_by_label("Bot").fill("echo")
    await page.get_by_role("button", name="Add DID").click()

    await expect(page.get_by_role("status")).to_have_text("DID added.")
    row = page.get_by_role("row").filter(has_text="+918047491899")
    await expect(row).to_contain_text("Support line")
    [did] = (await api(exoplane, super_admin, "GET", "/api/v1/integrations/exotel"))["dids"]
    await row.get_by_role("button", name="Copy the WebSocket URL of +918047491899").click()
    await expect(row.get_by_role("button", name="Copy the WebSocket URL")).to_have_text("Copied")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert copied == did["websocket_url"]
    assert "/exotel/echo" in copied
    await browser.screenshot("did-copied")


async def test_a_did_without_a_bot_asks_for_one_and_invalid_input_is_named(
    browser: Browser, super_admin: Operator
) -> None:
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto("/console/dids")

    await page.get_by_label("Number").fill("12")
    await page.get_by_role("button", name="Add DID").click()
    await expect(page.locator("#field-number-error")).to_contain_text("number")
    await page.get_by_label("Number").fill("08047491899")
    await page.get_by_role("button", name="Add DID").click()

    await expect(page.get_by_role("row").filter(has_text="+918047491899")).to_contain_text(
        "Assign a bot first"
    )
    await browser.screenshot("did-without-bot")


async def test_a_test_call_shows_its_callsid_at_once_and_its_timeline_fills_in_live(
    browser: Browser, super_admin: Operator, exoplane: Exoplane, sandbox: Sandbox
) -> None:
    await configure_for_sandbox(exoplane, sandbox, super_admin)
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.nav("Test call")

    await page.get_by_label("DID").select_option(label=f"{EXOPHONE} — Echo line (echo)")
    await page.get_by_label("Number to call").fill(CALLER)
    await page.get_by_role("button", name="Place test call").click()

    call_sid = await page.get_by_test_id("call-sid").text_content()
    assert call_sid
    await expect(page.get_by_test_id("provider-status")).not_to_have_text("—")
    await expect(page.get_by_test_id("call-state")).to_contain_text("following it live")
    await page.evaluate("document.body.dataset.loadedOnce = 'yes'")
    await expect(page.get_by_test_id("call-state")).to_have_text(
        "Call ended", timeout=WAIT_SECONDS * 4 * 1000
    )
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text("stream_start")
    await expect(timeline).to_contain_text("stream_closed")
    assert await page.evaluate("document.body.dataset.loadedOnce") == "yes"  # never reloaded
    finished = await sandbox.finished_call(call_sid)
    assert finished["Status"] == "completed"
    await browser.screenshot("test-call-ended")


async def test_exotels_refusal_of_a_test_call_shows_exotels_message(
    browser: Browser, super_admin: Operator, exoplane: Exoplane, sandbox: Sandbox
) -> None:
    await configure_for_sandbox(exoplane, sandbox, super_admin, token="not-the-token")
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto("/console/test-call")

    await page.get_by_label("Number to call").fill(CALLER)
    await page.get_by_role("button", name="Place test call").click()

    alert = page.get_by_role("alert")
    await expect(alert).to_be_visible()
    api_answer = await exoplane.http.post(
        "/api/v1/integrations/exotel/dids/"
        + (await _only_did(exoplane, super_admin))
        + "/test-call",
        headers=super_admin.headers,
        json={"to_number": CALLER},
    )
    assert api_answer.status_code == 502
    await expect(alert).to_have_text(api_answer.json()["error"]["message"])
    await browser.screenshot("test-call-refused")


async def _only_did(exoplane: Exoplane, operator: Operator) -> str:
    [did] = (await api(exoplane, operator, "GET", "/api/v1/integrations/exotel"))["dids"]
    return str(did["id"])


async def test_an_admin_sees_less_than_a_super_admin_and_is_told_why(
    browser: Browser, admin: Operator, super_admin: Operator, exoplane: Exoplane
) -> None:
    await api(
        exoplane, super_admin, "POST", "/api/v1/integrations/exotel/dids", number="08047491899"
    )
    page = browser.page
    await browser.sign_in(admin.email, admin.password)

    nav = page.get_by_role("navigation", name="Console")
    await expect(nav).to_contain_text("Test call")
    await expect(nav).not_to_contain_text("Operators")
    await browser.nav("DIDs")
    await expect(page.get_by_text("Read-only")).to_be_visible()
    await expect(page.get_by_role("button", name="Add DID")).to_have_count(0)
    await browser.goto("/console/operators")

    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("This needs the super_admin role")
    await browser.screenshot("admin-refused")


async def test_a_form_with_a_forged_token_is_refused(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto("/console/dids")
    await page.get_by_label("Number").fill("08047491899")
    await page.evaluate(
        "document.querySelectorAll('input[name=csrf_token]')"
        ".forEach(input => { input.value = 'forged'; })"
    )

    await page.get_by_role("button", name="Add DID").click()

    await expect(page.get_by_role("alert")).to_contain_text("security token")
    view = await api(exoplane, super_admin, "GET", "/api/v1/integrations/exotel")
    assert view["dids"] == []
    await browser.screenshot("csrf-refused")


async def test_a_stored_script_in_a_did_label_shows_as_text(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    label = "<script>alert('label')</script><img src=x onerror=alert(2)>"
    await api(
        exoplane,
        super_admin,
        "POST",
        "/api/v1/integrations/exotel/dids",
        number="08047491899",
        label=label,
    )
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto("/console/dids")

    row = page.get_by_role("row").filter(has_text="+918047491899")
    await expect(row.get_by_role("cell").nth(1)).to_have_text(label)
    await expect(page.locator("img")).to_have_count(0)
    assert browser.dialogs == []
    await browser.screenshot("label-as-text")


async def test_operators_are_created_with_credentials_shown_once_and_can_be_disabled(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto("/console/operators")
    await page.get_by_label("Email").fill("new-ops@example.com")
    await page.get_by_label("Role", exact=True).select_option("admin")
    await page.get_by_role("button", name="Create operator").click()

    password = await page.get_by_test_id("new-password").text_content()
    api_key = await page.get_by_test_id("new-api-key").text_content()
    assert password
    assert api_key
    check = await exoplane.http.get(
        "/api/v1/settings", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert check.status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Disable new-ops@example.com").click()

    await expect(page.get_by_role("status")).to_have_text("Operator saved.")
    await expect(page.get_by_role("row").filter(has_text="new-ops@example.com")).to_contain_text(
        "Disabled"
    )
    assert password not in await page.content()
    refused = await exoplane.http.get(
        "/api/v1/settings", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert refused.status_code == 401
    await browser.screenshot("operator-disabled")


TOUR = (
    ("overview", "/console"),
    ("exotel", "/console/exotel"),
    ("dids", "/console/dids"),
    ("test-call", "/console/test-call"),
    ("settings", "/console/settings"),
    ("audit-log", "/console/audit"),
    ("operators", "/console/operators"),
)


async def test_a_tour_of_every_page_after_a_test_call(
    browser: Browser, super_admin: Operator, admin: Operator, exoplane: Exoplane, sandbox: Sandbox
) -> None:
    """Also what docs/console.md shows: run with EXOPLANE_TEST_ARTIFACTS=docs/console."""
    did = await configure_for_sandbox(exoplane, sandbox, super_admin)
    await api(
        exoplane, super_admin, "POST", "/api/v1/integrations/exotel/dids", number="08047491804"
    )
    placed = await api(
        exoplane,
        super_admin,
        "POST",
        f"/api/v1/integrations/exotel/dids/{did['id']}/test-call",
        to_number=CALLER,
    )
    await sandbox.finished_call(placed["call_sid"])
    page = browser.page
    await page.set_viewport_size({"width": 1100, "height": 720})
    await browser.goto("/console/login")
    await browser.screenshot("sign-in")
    await browser.sign_in(super_admin.email, super_admin.password)

    for name, path in TOUR:
        await browser.goto(path)
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        await page.screenshot(path=str(browser.artifacts / f"{name}.png"))
    await browser.goto(f"/console/test-call/{placed['call_sid']}")
    await expect(page.get_by_test_id("call-state")).to_have_text("Call ended")
    await page.screenshot(path=str(browser.artifacts / "test-call-timeline.png"))
    await browser.goto("/console")
    await expect(page.get_by_role("listitem").filter(has_text="Last test call")).to_contain_text(
        "completed"
    )
