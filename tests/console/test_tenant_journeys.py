"""Super_admins' journeys through the Customers pages in a real headless Chromium, against a
real server on 127.0.0.1."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.console.browser import Browser
from tests.console.journeys import browser, exoplane, sandbox, super_admin
from tests.e2e.conftest import Exoplane
from tests.factories import APP_BODY
from tests.voicebot.factories import Operator, create_operator

__all__ = ["browser", "exoplane", "sandbox", "super_admin"]  # the journeys' fixtures

VIEWPORT = {"width": 1100, "height": 720}
CSV_HEADER = "AppUserId,AppUsername,Email,ExotelUserName,AgentNumber,VirtualNumber,Role"


async def call(
    exoplane: Exoplane, method: str, path: str, headers: dict[str, str], **body: Any
) -> Any:
    response = await exoplane.http.request(method, path, headers=headers, json=body or None)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def customer_with_app(exoplane: Exoplane, operator: Operator) -> tuple[str, str]:
    customer_id, app_id, _ = await customer_app_and_token(exoplane, operator)
    return customer_id, app_id


async def customer_app_and_token(exoplane: Exoplane, operator: Operator) -> tuple[str, str, str]:
    """A customer made by an operator, an app it registered itself over the APIs, and a
    token of that app."""
    customer = await call(exoplane, "POST", "/api/v1/customers", operator.headers, name="Acme")
    token = await call(
        exoplane,
        "POST",
        "/v2/integrations/token",
        {},
        Id=customer["id"],
        Secret=customer["secret"],
        Entity="customer",
    )
    app = await call(
        exoplane,
        "POST",
        "/v2/integrations/app",
        {"Authorization": token["Data"]},
        **(APP_BODY | {"AppName": "Support desk"}),
    )
    app_token = await call(
        exoplane,
        "POST",
        "/v2/integrations/token",
        {},
        Id=app["Data"]["AppID"],
        Secret=app["Data"]["AppSecret"],
        Entity="app",
    )
    return customer["id"], app["Data"]["AppID"], app_token["Data"]


def agents_csv(count: int) -> bytes:
    rows = [CSV_HEADER] + [
        f"agent{n:03d},Agent {n},agent{n:03d}@example.com,Agent {n},+9198765{n:05d},"
        "08047491899,user"
        for n in range(1, count + 1)
    ]
    return ("\n".join(rows) + "\n").encode()


async def test_a_new_customers_secret_is_shown_once_and_never_again(
    browser: Browser, super_admin: Operator
) -> None:
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.nav("Customers")
    await page.get_by_label("Name").fill("Acme Retail")
    await page.get_by_role("button", name="Create customer").click()

    secret = await page.get_by_test_id("new-customer-secret").inner_text()
    customer_id = await page.get_by_test_id("new-customer-id").inner_text()
    await page.get_by_role("button", name="Copy the CustomerSecret").click()
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await browser.screenshot("customer-created")

    for path in ("/console/customers", f"/console/customers/{customer_id}"):
        assert secret not in await browser.source(path)
    await browser.nav("Customers")
    await expect(page.get_by_role("link", name="Acme Retail")).to_be_visible()
    await expect(page.get_by_test_id("new-customer-secret")).to_have_count(0)


async def test_an_apps_settings_are_set_with_a_field_error_shown_at_the_field(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    customer_id, app_id = await customer_with_app(exoplane, super_admin)
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.nav("Customers")
    await page.get_by_role("link", name="Acme").click()
    await page.get_by_role("link", name="Support desk").click()

    await expect(page.get_by_test_id("flow-connect_applet_url")).to_contain_text(
        f"/v2/integrations/call/route/{app_id}?sig="
    )
    await page.get_by_label("Popup URL").fill("ftp://crm.example.com/popup")
    await page.get_by_role("button", name="Save settings").click()
    popup = page.get_by_label("Popup URL")
    await expect(popup).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#field-popup_url-error")).to_contain_text("popup_url")
    await browser.screenshot("app-settings-field-error")

    await popup.fill(f"{exoplane.url}/crm/popup")
    await page.get_by_label("Record calls").check()
    await page.get_by_role("button", name="Save settings").click()

    await expect(page.get_by_role("status")).to_have_text("Settings saved.")
    await expect(page.get_by_label("Popup URL")).to_have_value(f"{exoplane.url}/crm/popup")
    await expect(page.get_by_label("Record calls")).to_be_checked()
    assert "your_api_key" not in await browser.source(
        f"/console/customers/{customer_id}/apps/{app_id}"
    )
    await browser.screenshot("app-settings-saved")


async def test_200_agents_are_imported_from_a_csv_with_the_progress_shown(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    customer_id, app_id = await customer_with_app(exoplane, super_admin)
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto(f"/console/customers/{customer_id}/apps/{app_id}/agents")
    # Every text the progress line shows, in order, as the page shows them.
    await page.evaluate(
        """() => {
          window.progressSeen = [];
          const status = document.getElementById("import-status");
          new MutationObserver(() => window.progressSeen.push(status.textContent))
            .observe(status, {childList: true, characterData: true, subtree: true});
        }"""
    )
    await page.get_by_label("CSV file", exact=True).set_input_files(
        {"name": "agents.csv", "mimeType": "text/csv", "buffer": agents_csv(200)}
    )
    await page.get_by_role("button", name="Import", exact=True).click()

    status = page.get_by_test_id("import-status")
    await expect(status).to_have_text("Done. Imported 200 agents.")
    await expect(page.locator("#import-progress")).to_have_attribute("value", "100")
    seen: list[str] = await page.evaluate("window.progressSeen")
    assert seen[0] == "Uploading agents.csv…"
    assert "Uploaded; checking 200 rows and importing them…" in seen
    await expect(page.get_by_role("table").filter(has_text="Each row's result")).to_contain_text(
        "agent200"
    )
    await expect(page.get_by_role("link", name="Next page")).to_be_visible()
    await browser.screenshot("agents-imported")


async def test_a_csv_with_a_bad_row_imports_nothing_and_says_which_row(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    customer_id, app_id = await customer_with_app(exoplane, super_admin)
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto(f"/console/customers/{customer_id}/apps/{app_id}/agents")
    bad = agents_csv(3) + b"agent004,Agent 4,not-an-email,Agent 4,,08047491899,user\n"
    await page.get_by_label("CSV file", exact=True).set_input_files(
        {"name": "agents.csv", "mimeType": "text/csv", "buffer": bad}
    )
    await page.get_by_role("button", name="Import", exact=True).click()

    await expect(page.get_by_test_id("import-outcome")).to_have_text(
        "1 of 4 rows were refused: nothing was imported. Fix them and import the file again."
    )
    await expect(page.locator("tr.refused")).to_contain_text("Email")
    await expect(page.get_by_role("table").first).to_contain_text("No agents")
    await browser.screenshot("agents-import-refused")


async def test_turning_off_an_agents_last_device_is_refused_with_the_reason(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    customer_id, app_id = await customer_with_app(exoplane, super_admin)
    agents = f"/api/v1/customers/{customer_id}/apps/{app_id}/agents"
    await call(
        exoplane,
        "POST",
        agents,
        super_admin.headers,
        user_id="asha",
        name="Asha",
        email="asha@example.com",
        phone_number="09876500001",
    )
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)
    await browser.goto(f"/console/customers/{customer_id}/apps/{app_id}/agents")

    await page.get_by_role("switch", name="SIP device of asha").click()
    await expect(page.get_by_role("status")).to_have_text("Devices saved.")
    phone = page.get_by_role("switch", name="Phone device of asha")
    await expect(phone).to_have_attribute("aria-checked", "true")
    await expect(phone).to_have_accessible_description(
        "The last enabled device: calls need at least one, so it stays on until the other is "
        "turned on."
    )
    await phone.click()

    await expect(page.get_by_test_id("device-error")).to_contain_text(
        "At least one device must stay enabled"
    )
    await expect(page.get_by_role("switch", name="Phone device of asha")).to_have_attribute(
        "aria-checked", "true"
    )
    await browser.screenshot("last-device-refused")


async def test_an_admin_is_refused_the_customer_pages_and_told_why(
    browser: Browser, exoplane: Exoplane
) -> None:
    admin = await create_operator(exoplane.settings, "ops@example.com", "admin")
    page = browser.page
    await browser.sign_in(admin.email, admin.password)

    bar = page.get_by_role("navigation", name="Console")
    await expect(bar.get_by_role("link", name="Customers")).to_have_count(0)
    await browser.goto("/console/customers")
    await expect(page.get_by_role("alert")).to_have_text(
        "This needs the super_admin role; you are signed in as ops@example.com, an admin."
    )
    await browser.screenshot("customers-refused")


async def test_a_tour_of_the_customer_pages(
    browser: Browser, super_admin: Operator, exoplane: Exoplane
) -> None:
    """Also what docs/console.md shows: run with EXOPLANE_TEST_ARTIFACTS=docs/console."""
    customer_id, app_id, app_token = await customer_app_and_token(exoplane, super_admin)
    await call(exoplane, "POST", "/api/v1/customers", super_admin.headers, name="Globex")
    agents = f"/api/v1/customers/{customer_id}/apps/{app_id}/agents"
    for n, name in enumerate(("Asha Rao", "Vikram Iyer", "Meera Nair"), start=1):
        await call(
            exoplane,
            "POST",
            agents,
            super_admin.headers,
            user_id=name.split()[0].lower(),
            name=name,
            email=f"{name.split()[0].lower()}@example.com",
            phone_number=f"0987650000{n}",
            virtual_number="08047491899",
        )
    await call(exoplane, "PUT", agents + "/vikram/devices", super_admin.headers, phone=False)
    await call(
        exoplane,
        "POST",
        f"/v2/integrations/{customer_id}/apps/{app_id}/users/asha/devices/sip/registration",
        {"Authorization": app_token},
        registered=True,
    )
    page = browser.page
    await browser.sign_in(super_admin.email, super_admin.password)

    app = f"/console/customers/{customer_id}/apps/{app_id}"
    tour = (
        ("customers", "/console/customers"),
        ("customer", f"/console/customers/{customer_id}"),
        ("app", app),
        ("agents", app + "/agents"),
    )
    for name, path in tour:
        await browser.goto(path)
        await expect(page.get_by_role("heading", level=1)).to_be_visible()
        await page.screenshot(path=str(browser.artifacts / f"{name}.png"), full_page=True)
    await expect(page.get_by_test_id("agent-asha")).to_contain_text("registered, last seen")
    await expect(page.get_by_test_id("agent-meera")).to_contain_text("not registered, never seen")
