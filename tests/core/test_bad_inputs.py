"""Hostile and malformed inputs: every one is a 4xx in the path's envelope, never a 5xx."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from exoplane.app import create_app
from exoplane.config import Settings
from exoplane.inputs import INT64_MAX
from tests.factories import RegisteredApp, app_with_token, create_user
from tests.voicebot.factories import AUDIT, DIDS, add_did, create_operator

TOO_BIG = str(INT64_MAX + 1)


def _routes(settings: Settings) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) of every HTTP route the app serves."""
    app = create_app(settings)
    return [
        (method, route.path, route)
        for route in app.router.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods or ())
    ]


def _fill(path: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path)


def _error_of(response: httpx.Response) -> tuple[str, str | None]:
    """(message, field) of either envelope."""
    body = response.json()
    if "error" in body:
        return body["error"]["message"], body["error"].get("field")
    return body["Error"], None


@pytest.fixture
async def registered(client: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    return await app_with_token(client, settings)


async def test_every_route_refuses_a_nul_in_its_path_with_a_400(
    settings: Settings, client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    for method, path, _route in _routes(settings):
        if "{" not in path:
            continue
        url = _fill(path, "a%00b")
        response = await client.request(
            method, url, headers={"Authorization": registered.token}, json={}
        )

        assert response.status_code == 400, (method, path, response.text)
        assert "NUL" in _error_of(response)[0]


async def test_every_route_refuses_out_of_range_integers_with_a_4xx(
    settings: Settings, client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    operator = await create_operator(settings, "root@example.com", "super_admin")
    checked = 0
    for method, path, route in _routes(settings):
        token = operator.headers["Authorization"] if path.startswith("/api/") else registered.token
        names = re.findall(r"\{([^}]+)\}", path)
        url = path.format(**{name: _path_value(name, route, registered) for name in names})
        integers = [
            param.alias
            for param in route.dependant.query_params
            if "int" in str(param.field_info.annotation)
        ]
        # One out-of-range value a request, so that none hides behind another's error.
        cases = [{name: TOO_BIG} for name in integers]
        if TOO_BIG in url or not cases:
            cases.append({})
        for query in cases:
            response = await client.request(
                method, url, params=query, headers={"Authorization": token}, json={}
            )

            assert response.status_code < 500, (method, url, query, response.text)
            if query or TOO_BIG in url:
                checked += 1
                # Without a session a console page sends the browser to sign in first
                # (tests/console checks its pages' refusals once signed in).
                refusals = (400, 401, 403, 404, *((303,) if path.startswith("/console") else ()))
                assert response.status_code in refusals, (method, path, query)
    assert checked >= 8


def _path_value(name: str, route: APIRoute, registered: RegisteredApp) -> str:
    if name == "customer_id":
        return registered.customer_id
    if name == "app_id":
        return registered.id
    integer = any(
        param.name == name and "int" in str(param.field_info.annotation).lower()
        for param in route.dependant.path_params
    )
    return TOO_BIG if integer else "x"


async def test_an_integer_query_parameter_past_int64_is_a_400_naming_it(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    response = await client.get(
        registered.users_path,
        params={"cursor": TOO_BIG},
        headers={"Authorization": registered.token},
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "cursor"


async def test_an_integer_path_id_past_int64_is_a_400_naming_it(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    path = (
        f"/v2/integrations/{registered.customer_id}/apps/{registered.id}"
        f"/webhooks/deliveries/{TOO_BIG}"
    )

    response = await client.get(path, headers={"Authorization": registered.token})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "delivery_id"


async def test_an_exotel_users_page_past_int64_is_a_400(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    response = await client.get(
        "/v2/integrations/usermapping",
        params={"last_value": TOO_BIG},
        headers={"Authorization": registered.token},
    )

    assert response.status_code == 400
    assert "last_value" in response.json()["Error"]


async def test_an_audit_cursor_past_int64_is_a_400(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    operator = await create_operator(settings, "root@example.com", "super_admin")

    response = await client.get(AUDIT, params={"cursor": TOO_BIG}, headers=operator.headers)

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "cursor"


# --- NUL characters ----------------------------------------------------------------------


async def test_a_nul_in_the_token_request_is_a_400_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v2/integrations/token", json={"Id": "abc\x00", "Secret": "s", "Entity": "app"}
    )

    assert response.status_code == 400
    assert response.json()["Status"] == "Failed"
    assert response.json()["Error"] == "Field 'Id' must not contain a NUL character"


async def test_a_nul_deep_in_a_resource_body_names_the_field_in_the_resource_envelope(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    response = await client.post(
        registered.users_path,
        headers={"Authorization": registered.token},
        json={"user_id": "agent", "name": "Agent\x00", "email": "a@example.com"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["field"] == "name"


async def test_a_nul_in_a_hook_parameter_is_a_400_naming_it(
    client: httpx.AsyncClient,
) -> None:
    for name in ("CallSid", "CallFrom", "CallTo"):
        response = await client.get(
            "/v2/integrations/call/inbound_call/some-app",
            params={"type": "popup", name: "abc\x00def"},
        )

        assert response.status_code == 400
        assert response.json()["Error"] == (
            f"Query parameter '{name}' must not contain a NUL character"
        )


async def test_a_nul_in_a_form_body_is_a_400_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v2/integrations/call/status/some-call",
        content=b"CallSid=abc%00&Status=completed",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 400
    assert "'CallSid'" in response.json()["Error"]


async def test_a_nul_in_a_multipart_form_field_is_a_400_naming_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v2/integrations/call/status/some-call",
        files={"CallSid": (None, "abc\x00"), "Recording": ("a.wav", b"\x00\x01")},
    )

    assert response.status_code == 400
    assert response.json()["Error"] == "Field 'CallSid' must not contain a NUL character"


async def test_a_nul_in_a_header_is_a_400_naming_it(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    response = await client.get(
        registered.users_path,
        headers={"Authorization": registered.token, "X-Client": "a\x00b"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "x-client"


async def test_an_escaped_backslash_before_u0000_is_not_a_nul(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    response = await client.post(
        registered.users_path,
        headers={"Authorization": registered.token},
        json={"user_id": "agent", "name": "Agent \\u0000", "email": "a@example.com"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["data"]["name"] == "Agent \\u0000"


# --- headers and paths ---------------------------------------------------------------------


async def test_two_authorization_headers_are_a_400_on_both_apis(
    client: httpx.AsyncClient, registered: RegisteredApp, settings: Settings
) -> None:
    operator = await create_operator(settings, "root@example.com", "super_admin")
    cases = [
        ("/v2/integrations/users", registered.token),
        (registered.users_path, registered.token),
        (DIDS, operator.headers["Authorization"]),
    ]
    for path, token in cases:
        response = await client.get(
            path, headers=[("Authorization", token), ("Authorization", "Bearer other")]
        )

        assert response.status_code == 400, path
        assert "Authorization" in _error_of(response)[0]
    response = await client.get(
        registered.users_path,
        headers=[("Authorization", registered.token), ("Authorization", registered.token)],
    )
    assert response.json()["error"]["code"] == "duplicate_header"


async def test_a_trailing_slash_is_a_404_not_a_redirect(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    response = await client.get(
        registered.users_path + "/", headers={"Authorization": registered.token, "Host": "evil"}
    )

    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"]["code"] == "not_found"


async def test_head_answers_a_get_resource_with_its_headers_and_no_body(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    await create_user(client, registered)
    headers = {"Authorization": registered.token}

    got = await client.get(registered.users_path, headers=headers)
    head = await client.head(registered.users_path, headers=headers)

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]


async def test_a_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.request("OPTIONS", "/v2/integrations/app")

    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert allowed == {"GET", "HEAD", "POST", "DELETE"}


async def test_ids_in_paths_match_in_any_letter_case(
    client: httpx.AsyncClient, registered: RegisteredApp, settings: Settings
) -> None:
    upper = f"/v2/integrations/{registered.customer_id.upper()}/apps/{registered.id.upper()}"

    response = await client.get(upper + "/users", headers={"Authorization": registered.token})

    assert response.status_code == 200, response.text
    operator = await create_operator(settings, "root@example.com", "super_admin")
    did = await add_did(client, operator)
    response = await client.delete(f"{DIDS}/{did['id'].upper()}", headers=operator.headers)
    assert response.status_code in (200, 204), response.text


# --- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v2/integrations/token", "/v2/integrations/call/status/x"])
@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000],
    ids=["invalid-utf8", "deep-arrays", "deep-objects"],
)
async def test_an_unreadable_json_body_is_a_400_validation_error(
    client: httpx.AsyncClient, path: str, body: bytes
) -> None:
    response = await client.post(path, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["Error"] == "Request body is not valid JSON"


async def test_an_unreadable_body_on_a_resource_path_is_a_validation_error(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    response = await client.post(
        registered.users_path,
        content=b"\xff\xfe{}",
        headers={"Authorization": registered.token, "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


async def test_a_validation_error_lists_ten_problems_and_counts_the_rest(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    body: dict[str, Any] = {f"k{n}": 0 for n in range(50_000)}

    response = await client.post(
        registered.users_path, headers={"Authorization": registered.token}, json=body
    )

    assert response.status_code == 400
    assert len(response.content) < 2_000
    message = response.json()["error"]["message"]
    assert message.count("is not a known field") + message.count("is required") == 10
    assert message.endswith("and 49993 more")


async def test_long_inputs_are_not_echoed_in_full(
    client: httpx.AsyncClient, registered: RegisteredApp
) -> None:
    long_id = "x" * 5_000
    responses = [
        await client.get(f"/v2/integrations/call/nowhere/{long_id}"),
        await client.get(
            f"{registered.users_path}/{long_id}", headers={"Authorization": registered.token}
        ),
        await client.get(
            f"/v2/integrations/{registered.customer_id}/apps/{long_id}",
            headers={"Authorization": registered.token},
        ),
        await client.post(
            registered.users_path,
            headers={"Authorization": registered.token},
            json={"user_id": long_id, long_id: 1, "name": "n", "email": "a@example.com"},
        ),
    ]

    for response in responses:
        assert 400 <= response.status_code < 500
        assert len(response.content) < 1_500, response.text
