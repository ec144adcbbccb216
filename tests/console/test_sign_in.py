"""Signing in and out of the console, its cookies, its limits and its sessions' ends."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx

from exoplane.config import Settings
from exoplane.logs import configure_logging
from tests.conftest import make_settings
from tests.console.conftest import another_browser, console_client, csrf_of, post_form, sign_in
from tests.voicebot.factories import API_KEY, API_TOKEN, CREDENTIALS, Operator
from tests.waiting import until


def cookie_header(response: httpx.Response, name: str) -> str:
    [header] = [
        value for value in response.headers.get_list("set-cookie") if value.startswith(name + "=")
    ]
    return header


async def test_signing_in_sets_an_httponly_samesite_session_cookie_and_lands_on_the_overview(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await sign_in(client, super_admin.email, super_admin.password)

    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookie = cookie_header(response, "exoplane_console").lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/console" in cookie
    assert "secure" not in cookie
    overview = await client.get("/console")
    assert overview.status_code == 200
    assert "Set-up checklist" in overview.text
    assert super_admin.email in overview.text


async def test_the_session_cookie_is_secure_when_the_public_url_is_https(
    tmp_path: Path, database_url: str, super_admin: Operator
) -> None:
    settings = make_settings(tmp_path / "https", database_url, public_url="https://ops.example")
    async with console_client(settings, "https://ops.example") as client:
        form = await client.get("/console/login")
        assert "secure" in cookie_header(form, "exoplane_console_sign_in").lower()
        response = await client.post(
            "/console/login",
            data={
                "email": super_admin.email,
                "password": super_admin.password,
                "csrf_token": csrf_of(form),
            },
        )

    assert response.status_code == 303, response.text
    assert "secure" in cookie_header(response, "exoplane_console").lower()


async def test_a_wrong_password_is_refused_with_the_form_again_and_no_session(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await sign_in(client, super_admin.email, "not-the-password")

    assert response.status_code == 401
    assert "Wrong email or password" in response.text
    assert 'name="email"' in response.text
    assert "exoplane_console=" not in response.headers.get("set-cookie", "")
    assert (await client.get("/console")).status_code == 303


async def test_an_unknown_email_gets_the_same_answer_as_a_wrong_password(
    client: httpx.AsyncClient,
) -> None:
    response = await sign_in(client, "nobody@example.com", "whatever-it-is")

    assert response.status_code == 401
    assert "Wrong email or password" in response.text


async def test_a_page_without_a_session_sends_the_browser_to_sign_in_and_back(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await client.get("/console/dids")

    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/dids"
    form = await client.get(response.headers["location"])
    signed = await client.post(
        "/console/login",
        data={
            "email": super_admin.email,
            "password": super_admin.password,
            "csrf_token": csrf_of(form),
            "next": "/console/dids",
        },
    )
    assert signed.headers["location"] == "/console/dids"


async def test_after_sign_in_the_browser_is_never_sent_off_the_console(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    form = await client.get("/console/login")
    response = await client.post(
        "/console/login",
        data={
            "email": super_admin.email,
            "password": super_admin.password,
            "csrf_token": csrf_of(form),
            "next": "//evil.example/console",
        },
    )

    assert response.headers["location"] == "/console"


async def test_signing_in_without_the_forms_token_is_refused(
    client: httpx.AsyncClient, super_admin: Operator
) -> None:
    response = await client.post(
        "/console/login", data={"email": super_admin.email, "password": super_admin.password}
    )

    assert response.status_code == 403
    assert "security token" in response.text
    assert "exoplane_console=" not in response.headers.get("set-cookie", "")


async def test_failed_sign_ins_are_limited_per_account_even_with_the_right_password_after(
    tmp_path: Path, database_url: str, super_admin: Operator
) -> None:
    settings = make_settings(tmp_path / "h", database_url, console_sign_in_limit="3/minute")
    async with console_client(settings) as client:
        for _ in range(3):
            assert (await sign_in(client, super_admin.email, "wrong-guess")).status_code == 401

        response = await sign_in(client, super_admin.email, super_admin.password)

    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.text


async def test_failed_sign_ins_are_limited_per_address_across_accounts(
    tmp_path: Path, database_url: str, super_admin: Operator
) -> None:
    settings = make_settings(tmp_path / "h", database_url, console_sign_in_limit="3/minute")
    async with console_client(settings) as client:
        for n in range(3):
            response = await sign_in(client, f"guess-{n}@example.com", "wrong-guess")
            assert response.status_code == 401

        response = await sign_in(client, super_admin.email, super_admin.password)

    assert response.status_code == 429


async def test_successful_sign_ins_spend_no_budget(
    tmp_path: Path, database_url: str, super_admin: Operator
) -> None:
    settings = make_settings(tmp_path / "h", database_url, console_sign_in_limit="2/minute")
    async with console_client(settings) as client:
        for _ in range(4):
            response = await sign_in(client, super_admin.email, super_admin.password)
            assert response.status_code == 303


async def test_signing_out_ends_the_session_on_the_server(
    signed_in: httpx.AsyncClient,
) -> None:
    token = signed_in.cookies["exoplane_console"]

    response = await post_form(signed_in, "/console", "/console/logout", {})

    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?done=signed_out"
    stolen = await another_browser(signed_in)
    async with stolen:
        stolen.cookies.set("exoplane_console", token, path="/console")
        assert (await stolen.get("/console")).status_code == 303


async def test_a_session_idle_for_longer_than_the_idle_timeout_has_ended(
    tmp_path: Path, database_url: str, super_admin: Operator
) -> None:
    settings = make_settings(tmp_path / "h", database_url, console_idle_timeout_seconds=1)
    async with console_client(settings) as client:
        assert (await sign_in(client, super_admin.email, super_admin.password)).status_code == 303
        assert (await client.get("/console")).status_code == 200

        async def signed_out() -> bool:
            return (await client.get("/console")).status_code == 303

        # Polled once a second at most: a poll is a page, and a page keeps the session alive.
        await until(signed_out, what="the idle session ending", every=1.5)


async def test_a_session_ends_at_its_lifetime_however_active(
    tmp_path: Path, database_url: str, super_admin: Operator
) -> None:
    settings = make_settings(tmp_path / "h", database_url, console_session_lifetime_seconds=2)
    async with console_client(settings) as client:
        assert (await sign_in(client, super_admin.email, super_admin.password)).status_code == 303

        async def signed_out() -> bool:
            return (await client.get("/console")).status_code == 303

        await until(signed_out, what="the session reaching its lifetime", every=0.1)
        assert (await client.get("/console/dids")).status_code == 303


async def test_a_disabled_operator_is_signed_out_at_once_and_cannot_sign_in(
    signed_in: httpx.AsyncClient, admin: Operator
) -> None:
    async with await another_browser(signed_in) as browser:
        assert (await sign_in(browser, admin.email, admin.password)).status_code == 303
        assert (await browser.get("/console")).status_code == 200
        page = await signed_in.get("/console/operators")
        admin_id = page.text.split(f"Disable {admin.email}")[0].rsplit("/console/operators/", 1)[1]
        admin_id = admin_id.split('"')[0]
        disabled = await signed_in.post(
            f"/console/operators/{admin_id}",
            data={"disabled": "true", "csrf_token": csrf_of(page)},
        )
        assert disabled.status_code == 303, disabled.text

        assert (await browser.get("/console")).status_code == 303
        refused = await sign_in(browser, admin.email, admin.password)
        assert refused.status_code == 401
        assert "disabled" in refused.text


async def test_changing_the_password_signs_out_other_sessions_and_the_new_one_works(
    signed_in: httpx.AsyncClient, super_admin: Operator
) -> None:
    new_password = "a-brand-new-passphrase"
    async with await another_browser(signed_in) as other:
        assert (await sign_in(other, super_admin.email, super_admin.password)).status_code == 303

        response = await post_form(
            signed_in,
            "/console/password",
            "/console/password",
            {
                "current_password": super_admin.password,
                "new_password": new_password,
                "confirm_password": new_password,
            },
        )

        assert response.status_code == 303, response.text
        assert (await signed_in.get("/console")).status_code == 200
        assert (await other.get("/console")).status_code == 303
        assert (await sign_in(other, super_admin.email, super_admin.password)).status_code == 401
        assert (await sign_in(other, super_admin.email, new_password)).status_code == 303


async def test_a_wrong_current_password_is_named_next_to_its_field(
    signed_in: httpx.AsyncClient,
) -> None:
    response = await post_form(
        signed_in,
        "/console/password",
        "/console/password",
        {
            "current_password": "not-it",
            "new_password": "long-enough-password",
            "confirm_password": "long-enough-password",
        },
    )

    assert response.status_code == 400
    assert 'id="field-current_password-error">The current password is wrong' in response.text


async def test_no_log_line_contains_a_password_session_token_or_credential(
    client: httpx.AsyncClient, settings: Settings, super_admin: Operator
) -> None:
    captured = io.StringIO()
    configure_logging(settings, stream=captured)

    await sign_in(client, super_admin.email, "a-wrong-guess-123")
    await sign_in(client, super_admin.email, super_admin.password)
    await post_form(client, "/console/exotel", "/console/exotel", CREDENTIALS)
    created = await post_form(
        client,
        "/console/operators",
        "/console/operators",
        {"email": "n@example.com", "role": "admin"},
    )
    shown = re.search(r'data-testid="new-password">([^<]+)<', created.text)
    assert shown

    log = captured.getvalue()
    assert log.count('"event": "request"') >= 6
    for value in (
        super_admin.password,
        "a-wrong-guess-123",
        client.cookies["exoplane_console"],
        API_KEY,
        API_TOKEN,
        shown[1],
    ):
        assert value not in log
