"""The Customers pages over ASGI: customers, an app, its agents; roles, secrets shown once,
typed confirmations, field errors, conflicts, the device rule and the CSV import without
JavaScript."""

from __future__ import annotations

import re

import httpx
import pytest

from exoplane.config import Settings
from tests.console.conftest import csrf_of, post_form, sign_in
from tests.factories import RegisteredApp, app_with_token, create_user
from tests.voicebot.factories import Operator

HEADER = "AppUserId,AppUsername,Email,VirtualNumber"


def app_page(app: RegisteredApp) -> str:
    return f"/console/customers/{app.customer_id}/apps/{app.id}"


@pytest.fixture
async def registered(client: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    return await app_with_token(client, settings)


async def test_the_pages_are_linked_and_carry_the_consoles_headers(
    signed_in: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    for path in (
        "/console/customers",
        f"/console/customers/{registered.customer_id}",
        app_page(registered),
        app_page(registered) + "/agents",
    ):
        response = await signed_in.get(path)

        assert response.status_code == 200, (path, response.text)
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert not re.search(r"\son[a-z]+=", response.text)
        assert 'href="/console/customers"' in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/console/customers",
        "/console/customers/{customer}",
        "/console/customers/{customer}/apps/{app}",
        "/console/customers/{customer}/apps/{app}/agents",
    ],
)
async def test_an_admin_gets_a_403_page_that_says_why(
    client: httpx.AsyncClient, admin: Operator, registered: RegisteredApp, path: str
) -> None:
    await sign_in(client, admin.email, admin.password)

    response = await client.get(path.format(customer=registered.customer_id, app=registered.id))
    overview = await client.get("/console")

    assert response.status_code == 403
    assert "This needs the super_admin role" in response.text
    assert "ops@example.com, an admin" in response.text
    assert 'href="/console/customers"' not in overview.text


async def test_a_new_customers_secret_is_shown_once_and_never_again(
    signed_in: httpx.AsyncClient,
) -> None:
    created = await post_form(
        signed_in, "/console/customers", "/console/customers", {"name": "Acme Retail"}
    )
    secret = re.search(r'data-testid="new-customer-secret">([^<]+)<', created.text)
    customer_id = re.search(r'data-testid="new-customer-id">([^<]+)<', created.text)

    assert created.status_code == 201, created.text
    assert secret is not None
    assert customer_id is not None
    for path in ("/console/customers", f"/console/customers/{customer_id.group(1)}"):
        assert secret.group(1) not in (await signed_in.get(path)).text
    listed = await signed_in.get("/console/customers", params={"search": "retail"})
    assert "Acme Retail" in listed.text
    none = await signed_in.get("/console/customers", params={"search": "globex"})
    assert "Acme Retail" not in none.text


async def test_a_blank_name_is_refused_at_the_field(signed_in: httpx.AsyncClient) -> None:
    response = await post_form(signed_in, "/console/customers", "/console/customers", {"name": " "})

    assert response.status_code == 400
    assert 'id="field-name-error"' in response.text


async def test_a_customer_is_renamed_disabled_rotated_and_deleted_once_its_name_is_typed(
    signed_in: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    page = f"/console/customers/{registered.customer_id}"
    renamed = await post_form(signed_in, page, page, {"name": "Acme Two"})
    disabled = await post_form(signed_in, page, page, {"disabled": "true"})
    rotated = await post_form(signed_in, page, page + "/secret", {"grace_seconds": "3600"})
    wrong = await post_form(signed_in, page, page + "/delete", {"confirm_name": "Acme"})
    still = await signed_in.get(page)
    deleted = await post_form(signed_in, page, page + "/delete", {"confirm_name": "Acme Two"})
    gone = await signed_in.get(page)

    assert renamed.status_code == 303
    assert disabled.status_code == 303
    assert "Disabled" in still.text
    assert "Acme Two" in still.text
    assert 'data-testid="rotated-secret"' in rotated.text
    assert "The old secret keeps working until" in rotated.text
    assert wrong.status_code == 400
    assert "Type the customer&#39;s name, Acme Two, to confirm the delete" in wrong.text
    assert registered.id in still.text  # its app was listed, and survived the wrong name
    assert deleted.status_code == 303
    assert gone.status_code == 404


async def test_the_app_page_shows_flow_urls_with_their_places_and_no_secret(
    signed_in: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    response = await signed_in.get(app_page(registered))

    assert registered.secret not in response.text
    assert "your_api_key" not in response.text
    assert "Connect applet, as its dynamic URL" in response.text
    assert f"/v2/integrations/call/route/{registered.id}?sig=" in response.text
    assert response.text.count('class="copy"') >= 5  # AppID and four flow URLs
    assert 'data-testid="webhook-secret"' not in response.text


async def test_settings_errors_are_shown_at_the_field_and_a_stale_form_is_refused(
    signed_in: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    page = app_page(registered)
    loaded = await signed_in.get(page)
    token = csrf_of(loaded)
    version = re.search(r'name="version" value="([^"]*)"', loaded.text)
    assert version is not None
    form = {"csrf_token": token, "version": version.group(1).replace("&#34;", '"')}

    bad = await signed_in.post(page + "/settings", data=form | {"popup_url": "ftp://example.com"})
    saved = await signed_in.post(
        page + "/settings",
        data=form | {"popup_url": "https://your-server.com/popup", "recording_enabled": "true"},
    )
    stale = await signed_in.post(
        page + "/settings", data=form | {"popup_url": "https://your-server.com/other"}
    )
    shown = await signed_in.get(page)

    assert bad.status_code == 400
    assert 'id="field-popup_url-error"' in bad.text
    assert saved.status_code == 303
    assert stale.status_code == 409
    assert "changed since you read them" in stale.text
    assert "Load the current settings" in stale.text
    assert 'value="https://your-server.com/popup"' in shown.text
    assert 'name="recording_enabled" type="checkbox" value="true" checked' in shown.text


async def test_the_signing_secret_is_revealed_only_on_request(
    signed_in: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    page = app_page(registered)
    revealed = await post_form(signed_in, page, page + "/webhook-secret", {})
    secret = re.search(r'data-testid="webhook-secret">([^<]+)<', revealed.text)
    rotated = await post_form(
        signed_in, page, page + "/webhook-secret/rotate", {"grace_seconds": "0"}
    )
    new = re.search(r'data-testid="webhook-secret">([^<]+)<', rotated.text)

    assert secret is not None
    assert new is not None
    assert new.group(1) != secret.group(1)
    assert new.group(1) not in (await signed_in.get(page)).text


async def test_the_last_enabled_device_is_refused_with_the_reason_at_its_switch(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    await create_user(client, registered, 1)
    agents = app_page(registered) + "/agents"
    devices = agents + "/agent_001/devices"
    off = await post_form(signed_in, agents, devices, {"device": "sip", "enabled": "false"})
    listed = await signed_in.get(agents)
    refused = await post_form(signed_in, agents, devices, {"device": "phone", "enabled": "false"})

    assert off.status_code == 303
    assert "The last enabled device" in listed.text
    assert refused.status_code == 400
    assert "At least one device must stay enabled" in refused.text
    assert 'data-testid="device-error"' in refused.text


async def test_agents_are_added_edited_and_deleted(
    signed_in: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    agents = app_page(registered) + "/agents"
    body = {"user_id": "asha", "name": "Asha", "email": "asha@example.com", "role": "user"}
    added = await post_form(signed_in, agents, agents, body)
    twice = await post_form(signed_in, agents, agents, body)
    bad = await post_form(signed_in, agents, agents, body | {"user_id": "x", "email": "nope"})
    edited = await post_form(
        signed_in,
        agents + "/asha",
        agents + "/asha",
        {"name": "Asha R", "email": "asha@example.com", "role": "supervisor"},
    )
    listed = await signed_in.get(agents, params={"search": "asha r"})
    deleted = await post_form(signed_in, agents + "/asha", agents + "/asha/delete", {})
    empty = await signed_in.get(agents)

    assert added.status_code == 303
    assert twice.status_code == 400
    assert "already mapped" in twice.text
    assert 'id="field-email-error"' in bad.text
    assert edited.status_code == 303
    assert "Asha R" in listed.text
    assert deleted.status_code == 303
    assert "No agents" in empty.text


async def test_a_csv_import_without_javascript_reports_each_row(
    signed_in: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    agents = app_page(registered) + "/agents"
    token = csrf_of(await signed_in.get(agents))
    good = (
        HEADER
        + "\n"
        + "".join(f"a{n},Agent {n},a{n}@example.com,08047491899\n" for n in range(1, 4))
    )
    bad = HEADER + "\nb1,Agent,b1@example.com,08047491899\nb2,Agent,not-an-email,08047491899\n"

    refused = await signed_in.post(
        agents + "/import", data={"csrf_token": token}, files={"file": ("b.csv", bad, "text/csv")}
    )
    imported = await signed_in.post(
        agents + "/import", data={"csrf_token": token}, files={"file": ("a.csv", good, "text/csv")}
    )
    none = await signed_in.post(agents + "/import", data={"csrf_token": token})

    assert refused.status_code == 400
    assert "1 of 2 rows were refused: nothing was imported" in refused.text
    assert "No agents that match" in (await signed_in.get(agents, params={"search": "b1"})).text
    assert imported.status_code == 200
    assert "Imported 3 agents." in imported.text
    assert none.status_code == 400
    assert "Choose a CSV file to import" in none.text


async def test_an_admins_form_post_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, admin: Operator, registered: RegisteredApp
) -> None:
    await sign_in(client, admin.email, admin.password)
    page = f"/console/customers/{registered.customer_id}"

    refused = await post_form(client, "/console", page + "/delete", {"confirm_name": "Acme"})
    created = await post_form(client, "/console", "/console/customers", {"name": "Globex"})

    assert refused.status_code == 403
    assert "This needs the super_admin role" in refused.text
    assert created.status_code == 403


async def test_no_agent_page_shows_a_sip_secret(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    created = await create_user(client, registered, 1)
    mapping = await client.get(
        "/v2/integrations/usermapping",
        headers={"Authorization": registered.token},
        params={"user_id": "agent_001"},
    )
    secrets = (created["sip"]["secret"], mapping.json()["Data"]["SipSecret"])
    agents = app_page(registered) + "/agents"

    for path in (agents, agents + "/agent_001"):
        response = await signed_in.get(path)
        assert response.status_code == 200, response.text
        for secret in secrets:
            assert secret not in response.text


async def test_an_app_under_another_customer_is_not_found(
    signed_in: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings
) -> None:
    first = await app_with_token(client, settings)
    second = await app_with_token(client, settings)

    response = await signed_in.get(f"/console/customers/{first.customer_id}/apps/{second.id}")

    assert response.status_code == 404
    assert f"No app {second.id} for customer {first.customer_id}" in response.text
