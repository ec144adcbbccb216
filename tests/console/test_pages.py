"""The console's pages over ASGI: headers, roles, CSRF, write-only secrets, escaping."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.console.conftest import another_browser, csrf_of, post_form, sign_in
from tests.voicebot.factories import API_KEY, API_TOKEN, AUDIT, CREDENTIALS, DIDS, Operator

PAGES = (
    "/console",
    "/console/exotel",
    "/console/dids",
    "/console/test-call",
    "/console/settings",
    "/console/audit",
    "/console/operators",
    "/console/password",
)
SUPER_ADMIN_PAGES = ("/console/audit", "/console/operators")
EXTERNAL = re.compile(r"""(?:src|href|action)=["']?(?:https?:)?//""", re.IGNORECASE)


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_forbids_inline_script_and_framing_and_loads_nothing_from_elsewhere(
    signed_in: httpx.AsyncClient, path: str
) -> None:
    response = await signed_in.get(path)

    assert response.status_code == 200, response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script>" not in response.text
    assert not re.search(r"\son[a-z]+=", response.text)  # no inline event handlers
    assert not EXTERNAL.search(response.text)


async def test_the_sign_in_page_has_the_same_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/console/login")

    assert response.headers["x-frame-options"] == "DENY"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert 'for="field-email">Email<' in response.text
    assert 'for="field-password">Password<' in response.text
    assert ">Sign in</button>" in response.text


@pytest.mark.parametrize("path", SUPER_ADMIN_PAGES)
async def test_an_admin_gets_a_403_page_that_says_which_role_is_needed(
    client: httpx.AsyncClient, admin: Operator, path: str
) -> None:
    await sign_in(client, admin.email, admin.password)

    response = await client.get(path)

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "This needs the super_admin role" in response.text
    assert admin.email in response.text


async def test_an_admin_sees_exotel_and_dids_read_only_and_cannot_post_to_them(
    client: httpx.AsyncClient, admin: Operator, super_admin: Operator
) -> None:
    await client.put("/api/v1/integrations/exotel", headers=super_admin.headers, json=CREDENTIALS)
    await sign_in(client, admin.email, admin.password)

    exotel = await client.get("/console/exotel")
    dids = await client.get("/console/dids")
    refused = await post_form(client, "/console/dids", "/console/dids", {"number": "08047491899"})

    assert exotel.status_code == 200
    assert "Read-only" in exotel.text
    assert 'name="api_key"' not in exotel.text
    assert "Configured" in exotel.text
    assert "Read-only" in dids.text
    assert "Add DID" not in dids.text
    assert refused.status_code == 403
    assert (await client.get(DIDS.rsplit("/", 1)[0], headers=super_admin.headers)).json()[
        "dids"
    ] == []


async def test_a_change_without_the_forms_token_is_refused_and_changes_nothing(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await signed_in.post("/console/dids", data={"number": "08047491899"})
    foreign = await signed_in.post(
        "/console/dids", data={"number": "08047491899", "csrf_token": "forged-token"}
    )

    assert response.status_code == 403
    assert foreign.status_code == 403
    assert "security token" in response.text
    integration = await signed_in.get("/api/v1/integrations/exotel", headers=super_admin.headers)
    assert integration.json()["dids"] == []


async def test_another_sessions_token_does_not_pass(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    async with await another_browser(signed_in) as other:
        await sign_in(other, super_admin.email, super_admin.password)
        others_token = csrf_of(await other.get("/console/dids"))

    response = await signed_in.post(
        "/console/dids", data={"number": "08047491899", "csrf_token": others_token}
    )

    assert response.status_code == 403


async def test_saved_secrets_never_appear_in_any_page_and_a_blank_field_keeps_them(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    saved = await post_form(
        signed_in, "/console/exotel", "/console/exotel", {**CREDENTIALS, "api_base_url": ""}
    )
    assert saved.status_code == 303, saved.text
    renamed = await post_form(
        signed_in,
        "/console/exotel",
        "/console/exotel",
        {"account_sid": "renamed-sid", "api_key": "", "api_token": ""},
    )
    assert renamed.status_code == 303, renamed.text

    for path in PAGES:
        page = (await signed_in.get(path)).text
        assert API_KEY not in page
        assert API_TOKEN not in page
    view = await signed_in.get("/api/v1/integrations/exotel", headers=super_admin.headers)
    assert view.json()["credentials_configured"] is True
    assert view.json()["account_sid"] == "renamed-sid"
    assert "Configured" in (await signed_in.get("/console/exotel")).text


async def test_a_stored_script_in_a_did_label_is_shown_as_text(
    signed_in: httpx.AsyncClient,
) -> None:
    label = "<script>alert(1)</script>"
    added = await post_form(
        signed_in, "/console/dids", "/console/dids", {"number": "08047491899", "label": label}
    )
    assert added.status_code == 303, added.text

    page = await signed_in.get("/console/dids")

    assert label not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_a_did_the_api_refuses_shows_the_apis_message_next_to_the_field(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    api = await signed_in.post(
        DIDS, headers=super_admin.headers, json={"number": "08047491899", "bot_id": "no spaces"}
    )
    page = await post_form(
        signed_in,
        "/console/dids",
        "/console/dids",
        {"number": "08047491899", "bot_id": "no spaces"},
    )

    assert api.status_code == 400
    assert page.status_code == 400
    message = api.json()["error"]["message"]
    assert 'id="field-bot_id-error"' in page.text
    assert message.replace("'", "&#39;") in page.text


async def test_a_duplicate_number_is_named_next_to_the_number_field(
    signed_in: httpx.AsyncClient,
) -> None:
    first = await post_form(signed_in, "/console/dids", "/console/dids", {"number": "08047491899"})
    assert first.status_code == 303
    again = await post_form(
        signed_in, "/console/dids", "/console/dids", {"number": "+918047491899"}
    )

    assert again.status_code == 400
    assert 'id="field-number-error">The DID +918047491899 exists already' in again.text


async def test_a_did_without_a_bot_says_assign_a_bot_first(signed_in: httpx.AsyncClient) -> None:
    await post_form(signed_in, "/console/dids", "/console/dids", {"number": "08047491899"})

    page = await signed_in.get("/console/dids")

    assert "Assign a bot first" in page.text


async def test_the_audit_log_filters_by_operator_and_action_and_pages(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    for n in range(55):
        await signed_in.post(DIDS, headers=super_admin.headers, json={"number": f"080474{n:05d}"})

    first = await signed_in.get("/console/audit", params={"action": "did."})
    older = re.search(r'href="(/console/audit\?[^"]*cursor=\d+)"', first.text)
    assert older, first.text
    second = await signed_in.get(older.group(1).replace("&amp;", "&"))
    nobody = await signed_in.get("/console/audit", params={"operator": "ops@example.com"})
    api = await signed_in.get(AUDIT, headers=super_admin.headers, params={"action": "console."})

    assert first.text.count("<code>did.create</code>") == 50
    assert second.text.count("<code>did.create</code>") == 5
    assert "console.sign_in" not in first.text
    assert "Nothing recorded that matches" in nobody.text
    assert [entry["action"] for entry in api.json()["entries"]] == ["console.sign_in"]


async def test_out_of_range_numbers_and_unknown_calls_get_error_pages_not_500s(
    signed_in: httpx.AsyncClient,
) -> None:
    too_big = await signed_in.get("/console/audit", params={"cursor": str(2**63)})
    unknown = await signed_in.get("/console/test-call/CA-unknown")
    events = await signed_in.get("/console/test-call/CA-unknown/events")
    no_page = await signed_in.get("/console/nowhere")

    assert too_big.status_code == 400
    assert "cursor" in too_big.text
    assert unknown.status_code == 404
    assert "No test call or bot stream" in unknown.text
    assert events.status_code == 404
    assert no_page.status_code == 404
    assert no_page.headers["content-type"].startswith("text/html")


async def test_a_did_is_edited_and_deleted_through_its_page(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    await post_form(signed_in, "/console/dids", "/console/dids", {"number": "08047491899"})
    [did] = (await signed_in.get(DIDS, headers=super_admin.headers)).json()["dids"]
    page = f"/console/dids/{did['id']}"

    bad = await post_form(signed_in, page, page, {"label": "Sales", "bot_id": "bad bot"})
    saved = await post_form(signed_in, page, page, {"label": "Sales", "bot_id": "echo"})
    [edited] = (await signed_in.get(DIDS, headers=super_admin.headers)).json()["dids"]
    deleted = await post_form(signed_in, page, page + "/delete", {})

    assert bad.status_code == 400
    assert 'id="field-bot_id-error"' in bad.text
    assert saved.status_code == 303
    assert (edited["label"], edited["bot_id"]) == ("Sales", "echo")
    assert deleted.status_code == 303
    assert (await signed_in.get(DIDS, headers=super_admin.headers)).json()["dids"] == []


async def test_the_core_fleet_is_saved_one_url_a_line_and_a_bad_one_is_named(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    bad = await post_form(
        signed_in, "/console/settings", "/console/settings", {"core_fleet": "ftp://core"}
    )
    saved = await post_form(
        signed_in,
        "/console/settings",
        "/console/settings",
        {"core_fleet": "https://core-1.example.com\n\nhttps://core-2.example.com\n"},
    )

    assert bad.status_code == 400
    assert 'id="field-core_fleet-note"' in bad.text
    assert "core_fleet.0" in bad.text
    assert saved.status_code == 303
    fleet = await signed_in.get("/api/v1/settings", headers=super_admin.headers)
    assert fleet.json()["core_fleet"] == [
        "https://core-1.example.com",
        "https://core-2.example.com",
    ]
    page = await signed_in.get("/console/settings")
    assert "wss://core-1.example.com" in page.text


async def test_the_last_super_admin_cannot_demote_themselves_and_is_told_why(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    page = await signed_in.get("/console/operators")
    own_id = re.search(r'action="/console/operators/([^"]+)"', page.text)
    assert own_id

    response = await signed_in.post(
        f"/console/operators/{own_id[1]}", data={"role": "admin", "csrf_token": csrf_of(page)}
    )

    assert response.status_code == 409
    assert "last active super_admin" in response.text
