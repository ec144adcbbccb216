"""Per-app portal links over ASGI: the link opens its app's portal (calls, deliveries with
replay, flow URLs, settings) and nothing else; another app's call or delivery is not found;
an expired or revoked link is refused with a page that says so; the token is never logged;
super_admins mint, list and revoke links on the app's page."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
import pytest

from exoplane.config import Settings
from exoplane.logs import configure_logging
from exoplane.middleware import carries_secret
from exoplane.models import PortalLink
from tests.console.conftest import another_browser, csrf_of, post_form, sign_in
from tests.console.test_pages import EXTERNAL
from tests.factories import RegisteredApp, app_with_token, database_session
from tests.voicebot.factories import AUDIT, Operator
from tests.webhooks.conftest import CALL, app_path, auth, call_hook

PORTAL = "/console/portal"
OTHER_CALL = {**CALL, "CallSid": "call_other_app"}
DELIVERY_LINK = re.compile(r'href="/console/portal/webhooks/deliveries/(\d+)"')
OPERATOR_DELIVERY_LINK = re.compile(r'href="/console/webhooks/deliveries/(\d+)"')


async def app_with_call(
    client: httpx.AsyncClient, settings: Settings, call: dict[str, str]
) -> RegisteredApp:
    """An app whose popup webhook goes to a port on 127.0.0.1, with one incoming call (no
    worker runs here: its delivery stays pending)."""
    app = await app_with_token(client, settings)
    body = {"popup_url": "http://127.0.0.1:9/popup"}
    response = await client.put(app_path(app, "/settings"), headers=auth(app), json=body)
    assert response.status_code == 200, response.text
    hooked = await call_hook(client, app, "popup", call)
    assert hooked.status_code == 200, hooked.text
    return app


@pytest.fixture
async def ours(signed_in: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    return await app_with_call(signed_in, settings, CALL)


@pytest.fixture
async def theirs(signed_in: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    return await app_with_call(signed_in, settings, OTHER_CALL)


async def mint(
    client: httpx.AsyncClient, operator: Operator, app: RegisteredApp, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/customers/{app.customer_id}/apps/{app.id}/portal-links",
        headers=operator.headers,
        json=body,
    )
    assert response.status_code == 201, response.text
    link: dict[str, Any] = response.json()
    return link


def open_path(link: dict[str, Any]) -> str:
    url: str = link["url"]
    return "/console/portal/open/" + url.rsplit("/", 1)[1]


async def opened(signed_in: httpx.AsyncClient, link: dict[str, Any]) -> httpx.AsyncClient:
    """A browser with no operator session that has opened the link."""
    browser = await another_browser(signed_in)
    response = await browser.get(open_path(link))
    assert response.status_code == 303, response.text
    assert response.headers["location"] == PORTAL
    return browser


async def delivery_ids(client: httpx.AsyncClient, app: RegisteredApp) -> list[str]:
    page = await client.get("/console/webhooks", params={"app": app.id})
    return OPERATOR_DELIVERY_LINK.findall(page.text)


async def test_a_link_opens_its_apps_portal_through_a_cookie_of_the_portal_only(
    signed_in: httpx.AsyncClient, super_admin: Operator, ours: RegisteredApp
) -> None:
    link = await mint(signed_in, super_admin, ours)
    browser = await another_browser(signed_in)
    response = await browser.get(open_path(link))
    overview = await browser.get(PORTAL)

    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "exoplane_portal=" in cookie
    assert "Path=/console/portal" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert response.headers["referrer-policy"] == "same-origin"
    assert overview.status_code == 200, overview.text
    assert "unsafe-inline" not in overview.headers["content-security-policy"]
    assert overview.headers["x-frame-options"] == "DENY"
    assert not EXTERNAL.search(overview.text)
    assert 'data-testid="flow-connect_applet_url"' in overview.text
    assert "http://127.0.0.1:9/popup" in overview.text
    assert "Read-only here" in overview.text
    assert "<form" not in overview.text  # nothing to change, nor any way to sign out
    for operator_page in ("/console/customers", "/console/webhooks", "/console/settings"):
        assert operator_page not in overview.text
    await browser.aclose()


async def test_the_portal_shows_its_apps_calls_and_deliveries_and_replays_one(
    signed_in: httpx.AsyncClient,
    super_admin: Operator,
    ours: RegisteredApp,
    theirs: RegisteredApp,
) -> None:
    link = await mint(signed_in, super_admin, ours)
    browser = await opened(signed_in, link)
    [own_delivery] = await delivery_ids(signed_in, ours)
    [other_delivery] = await delivery_ids(signed_in, theirs)

    calls = await browser.get(f"{PORTAL}/calls", params={"app": theirs.id})
    call = await browser.get(f"{PORTAL}/calls/{CALL['CallSid']}")
    webhooks = await browser.get(f"{PORTAL}/webhooks", params={"app": theirs.id})
    detail = await browser.get(f"{PORTAL}/webhooks/deliveries/{own_delivery}")
    replay = f"{PORTAL}/webhooks/deliveries/{own_delivery}/replay"
    without_token = await browser.post(replay)
    operators_token = await browser.post(
        replay, data={"csrf_token": csrf_of(await signed_in.get("/console/webhooks"))}
    )
    replayed = await browser.post(replay, data={"csrf_token": csrf_of(detail)})
    after = await browser.get(replayed.headers["location"])
    audit = await signed_in.get(AUDIT, headers=super_admin.headers, params={"action": "webhook."})

    assert calls.status_code == 200
    assert f'href="{PORTAL}/calls/{CALL["CallSid"]}"' in calls.text
    assert OTHER_CALL["CallSid"] not in calls.text
    assert call.status_code == 200, call.text
    assert "hook_received" in call.text
    assert f'data-events="{PORTAL}/calls/{CALL["CallSid"]}/events"' in call.text
    assert DELIVERY_LINK.findall(webhooks.text) == [own_delivery]
    assert other_delivery not in DELIVERY_LINK.findall(webhooks.text)
    assert detail.status_code == 200
    assert f'action="{PORTAL}/webhooks/deliveries/{own_delivery}/replay"' in detail.text
    assert without_token.status_code == 403
    assert "security token" in without_token.text
    assert operators_token.status_code == 403
    assert replayed.status_code == 303, replayed.text
    assert "Delivery queued to be sent again." in after.text
    [entry] = audit.json()["entries"]
    assert entry["operator"] == f"portal-link:{link['id']}"
    assert entry["target"] == f"webhook_deliveries/{own_delivery}"
    await browser.aclose()


async def test_another_apps_call_or_delivery_and_anything_outside_the_portal_are_not_found(
    signed_in: httpx.AsyncClient,
    super_admin: Operator,
    ours: RegisteredApp,
    theirs: RegisteredApp,
) -> None:
    link = await mint(signed_in, super_admin, ours)
    browser = await opened(signed_in, link)
    [other_delivery] = await delivery_ids(signed_in, theirs)
    csrf = csrf_of(
        await browser.get(
            f"{PORTAL}/webhooks/deliveries/{(await delivery_ids(signed_in, ours))[0]}"
        )
    )

    not_found = [
        await browser.get(f"{PORTAL}/webhooks/deliveries/{other_delivery}"),
        await browser.post(
            f"{PORTAL}/webhooks/deliveries/{other_delivery}/replay", data={"csrf_token": csrf}
        ),
        await browser.get(f"{PORTAL}/calls/{OTHER_CALL['CallSid']}"),
        await browser.get(f"{PORTAL}/calls/{OTHER_CALL['CallSid']}/events"),
        await browser.get(f"{PORTAL}/customers"),
        await browser.get(f"{PORTAL}/webhooks/replays/1"),
        await browser.get(f"{PORTAL}/settings"),
    ]
    operator_pages = [
        await browser.get(path)
        for path in (
            "/console",
            "/console/webhooks",
            f"/console/webhooks/deliveries/{other_delivery}",
            "/console/calls",
            "/console/customers",
            f"/console/customers/{ours.customer_id}/apps/{ours.id}",
            "/console/audit",
        )
    ]
    api = await browser.get("/api/v1/webhooks/deliveries")

    for response in not_found:
        assert response.status_code == 404, (response.url, response.text)
        assert "<dd" not in response.text
    for response in operator_pages:
        assert response.status_code == 303, (response.url, response.text)
        assert response.headers["location"].startswith("/console/login")
    assert api.status_code == 401
    await browser.aclose()


async def test_an_expired_or_revoked_link_is_refused_with_a_page_saying_so(
    signed_in: httpx.AsyncClient, settings: Settings, super_admin: Operator, ours: RegisteredApp
) -> None:
    expiring = await mint(signed_in, super_admin, ours, expires_in_seconds=60)
    revoking = await mint(signed_in, super_admin, ours)
    first = await opened(signed_in, expiring)
    second = await opened(signed_in, revoking)
    assert (await first.get(PORTAL)).status_code == 200
    assert (await second.get(PORTAL)).status_code == 200

    async with database_session(settings) as session:
        row = await session.get(PortalLink, expiring["id"])
        assert row is not None
        row.expires_at = row.created_at
    revoked = await signed_in.post(
        f"/api/v1/customers/{ours.customer_id}/apps/{ours.id}/portal-links/{revoking['id']}/revoke",
        headers=super_admin.headers,
    )
    assert revoked.status_code == 200, revoked.text
    fresh = await another_browser(signed_in)

    refusals = {
        "has expired": [
            await first.get(PORTAL),
            await first.get(f"{PORTAL}/calls"),
            await fresh.get(open_path(expiring)),
        ],
        "has been revoked": [
            await second.get(PORTAL),
            await second.get(f"{PORTAL}/webhooks"),
            await fresh.get(open_path(revoking)),
        ],
    }
    unknown = await fresh.get("/console/portal/open/not-a-link")
    without = await fresh.get(PORTAL)

    for says, responses in refusals.items():
        for response in responses:
            assert response.status_code == 403, response.text
            assert f"This portal link {says}" in response.text
            assert "set-cookie" not in response.headers
            assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert unknown.status_code == 404
    assert "This portal link is not valid" in unknown.text
    assert without.status_code == 401
    assert "Open the portal link you were given" in without.text
    for browser in (first, second, fresh):
        await browser.aclose()


async def test_no_log_line_holds_a_links_token(
    signed_in: httpx.AsyncClient, settings: Settings, super_admin: Operator, ours: RegisteredApp
) -> None:
    captured = io.StringIO()
    configure_logging(settings, stream=captured)
    link = await mint(signed_in, super_admin, ours)
    browser = await opened(signed_in, link)
    await browser.get(PORTAL)
    await browser.get(f"{PORTAL}/calls")
    token = link["url"].rsplit("/", 1)[1]
    await signed_in.post(
        f"/api/v1/customers/{ours.customer_id}/apps/{ours.id}/portal-links/{link['id']}/revoke",
        headers=super_admin.headers,
    )
    await browser.get(open_path(link))

    log = captured.getvalue()
    assert log.count('"event": "request"') >= 5
    assert '"/console/portal/open/[redacted]"' in log
    assert token not in log
    assert carries_secret({"path": open_path(link)})  # no OpenTelemetry span of it either
    assert not carries_secret({"path": PORTAL})
    await browser.aclose()


async def test_the_app_page_mints_lists_and_revokes_portal_links(
    signed_in: httpx.AsyncClient, settings: Settings, ours: RegisteredApp
) -> None:
    page_path = f"/console/customers/{ours.customer_id}/apps/{ours.id}"
    action = f"{page_path}/portal-links"
    minted = await post_form(signed_in, page_path, action, {"expires_in_seconds": "3600"})
    url = re.search(r'data-testid="portal-link-url">([^<]+)<', minted.text)
    later = await signed_in.get(page_path)
    bad = await post_form(signed_in, page_path, action, {"expires_in_seconds": "soon"})
    too_long = str(settings.portal_link_max_seconds + 1)
    long = await post_form(signed_in, page_path, action, {"expires_in_seconds": too_long})
    link_id = re.search(r'data-link="([^"]+)"', later.text)
    assert link_id
    revoked = await post_form(signed_in, page_path, f"{action}/{link_id.group(1)}/revoke", {})
    after = await signed_in.get(revoked.headers["location"])

    assert minted.status_code == 200, minted.text
    assert url
    assert url.group(1).startswith(settings.public_url.rstrip("/") + "/console/portal/open/")
    token = url.group(1).rsplit("/", 1)[1]
    assert token not in later.text
    assert "portal-link-url" not in later.text
    assert ">active<" in later.text
    assert bad.status_code == 400
    assert "Choose how long the link lasts" in bad.text
    assert long.status_code == 400
    assert f"at most {settings.portal_link_max_seconds} seconds" in long.text
    assert revoked.status_code == 303
    assert "Portal link revoked" in after.text
    assert ">revoked<" in after.text
    assert f"{action}/{link_id.group(1)}/revoke" not in after.text


async def test_an_admin_cannot_mint_or_revoke_a_portal_link(
    client: httpx.AsyncClient, settings: Settings, admin: Operator, super_admin: Operator
) -> None:
    app = await app_with_token(client, settings)
    link = await mint(client, super_admin, app)
    assert (await sign_in(client, admin.email, admin.password)).status_code == 303
    csrf = csrf_of(await client.get("/console/webhooks"))
    base = f"/console/customers/{app.customer_id}/apps/{app.id}/portal-links"

    minted = await client.post(base, data={"csrf_token": csrf, "expires_in_seconds": "3600"})
    revoked = await client.post(f"{base}/{link['id']}/revoke", data={"csrf_token": csrf})

    assert minted.status_code == 403
    assert revoked.status_code == 403
    assert "super_admin" in minted.text


async def test_the_portal_follows_its_apps_call_as_server_sent_events(
    signed_in: httpx.AsyncClient, settings: Settings, super_admin: Operator
) -> None:
    # No webhook URLs: a delivery left pending (no worker runs here) would keep it following.
    app = await app_with_token(signed_in, settings)
    ended = {**CALL, "DialCallStatus": "completed", "DialCallDuration": "42"}
    assert (await call_hook(signed_in, app, "popup", CALL)).status_code == 200
    assert (await call_hook(signed_in, app, "incomingcallhungup", ended)).status_code == 200
    browser = await opened(signed_in, await mint(signed_in, super_admin, app))

    page = await browser.get(f"{PORTAL}/calls/{CALL['CallSid']}")
    live = await browser.get(f"{PORTAL}/calls/{CALL['CallSid']}/events")

    assert page.status_code == 200
    assert 'data-testid="call-state">Call ended' in page.text
    assert live.status_code == 200, live.text
    assert live.headers["content-type"].startswith("text/event-stream")
    assert live.headers["x-frame-options"] == "DENY"
    assert "hook_received" in live.text
    assert "event: end" in live.text
    await browser.aclose()
