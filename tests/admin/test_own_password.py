"""An operator changes their own password over /api/v1, as the console's password page does."""

from __future__ import annotations

import httpx

from tests.voicebot.factories import AUDIT, Operator, error_of

PASSWORD = "/api/v1/operators/me/password"


async def test_an_admin_changes_their_own_password_and_it_is_audited_without_the_values(
    client: httpx.AsyncClient, admin: Operator, super_admin: Operator
) -> None:
    new = "a-long-new-passphrase"
    response = await client.post(
        PASSWORD,
        headers=admin.headers,
        json={"current_password": admin.password, "new_password": new},
    )

    assert response.status_code == 200, response.text
    assert response.json()["email"] == admin.email
    assert "password" not in response.json()
    audit = await client.get(AUDIT, headers=super_admin.headers, params={"action": "operator."})
    [entry] = audit.json()["entries"]
    assert entry["action"] == "operator.change_password"
    assert new not in audit.text
    assert admin.password not in audit.text


async def test_a_wrong_current_password_is_400_naming_the_field(
    client: httpx.AsyncClient, admin: Operator
) -> None:
    response = await client.post(
        PASSWORD,
        headers=admin.headers,
        json={"current_password": "not-it", "new_password": "a-long-new-passphrase"},
    )

    assert error_of(response, 400)["field"] == "current_password"


async def test_a_short_new_password_is_400_naming_the_field(
    client: httpx.AsyncClient, admin: Operator
) -> None:
    response = await client.post(
        PASSWORD,
        headers=admin.headers,
        json={"current_password": admin.password, "new_password": "short"},
    )

    error = error_of(response, 400)
    assert error["field"] == "new_password"
    assert "12" in error["message"]
