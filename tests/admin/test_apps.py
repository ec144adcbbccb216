"""A customer's app administered over /api/v1: details, flow URLs, settings, the webhook
signing secret, agents with their devices, and importing agents from CSV."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from exoplane.config import Settings
from tests.factories import RegisteredApp, app_with_token, create_user
from tests.voicebot.factories import AUDIT, Operator, error_of

OTHER_ID = "00000000-0000-4000-8000-000000000000"
HEADER = (
    "AppUserId,AppUsername,Email,ExotelAccountSid,ExotelUserName,AgentNumber,VirtualNumber,Role"
)


def base(app: RegisteredApp) -> str:
    return f"/api/v1/customers/{app.customer_id}/apps/{app.id}"


def csv_of(count: int, *, start: int = 1, extra: str = "") -> str:
    lines = [HEADER]
    for n in range(start, start + count):
        lines.append(
            f"agent{n},Agent {n},agent{n}@example.com,exoteldemo,Agent {n},"
            f"+9198765{n:05d},08047491899,user"
        )
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
async def registered(client: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    return await app_with_token(client, settings)


async def test_an_admin_and_another_customers_path_are_refused(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator, registered: RegisteredApp
) -> None:
    refused = await client.get(base(registered) + "/agents", headers=admin.headers)
    foreign = await client.get(
        f"/api/v1/customers/{OTHER_ID}/apps/{registered.id}/agents", headers=super_admin.headers
    )

    assert error_of(refused, 403)["code"] == "insufficient_role"
    assert error_of(foreign, 404)["code"] == "app_not_found"


async def test_the_app_and_its_flow_urls_show_no_secret(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp
) -> None:
    details = await client.get(base(registered), headers=super_admin.headers)
    urls = await client.get(base(registered) + "/flow-urls", headers=super_admin.headers)
    own = await client.get(
        f"/v2/integrations/{registered.customer_id}/apps/{registered.id}/flow-urls",
        headers={"Authorization": registered.token},
    )

    assert details.status_code == 200, details.text
    assert details.json()["id"] == registered.id
    assert registered.secret not in details.text
    assert "your_api_key" not in details.text
    assert urls.json() == own.json()["data"]


async def test_settings_are_read_and_changed_with_their_version(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp
) -> None:
    read = await client.get(base(registered) + "/settings", headers=super_admin.headers)
    etag = read.headers["ETag"]
    changed = await client.put(
        base(registered) + "/settings",
        headers=super_admin.headers | {"If-Match": etag},
        json={"popup_url": "https://your-server.com/popup", "recording_enabled": True},
    )
    stale = await client.put(
        base(registered) + "/settings",
        headers=super_admin.headers | {"If-Match": etag},
        json={"popup_url": "https://your-server.com/other"},
    )
    bad = await client.put(
        base(registered) + "/settings",
        headers=super_admin.headers,
        json={"callback_url": "ftp://x"},
    )
    seen_by_app = await client.get(
        f"/v2/integrations/{registered.customer_id}/apps/{registered.id}/settings",
        headers={"Authorization": registered.token},
    )

    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] != etag
    assert error_of(stale, 409)["code"] == "settings_conflict"
    assert "callback_url" in error_of(bad, 400)["message"]
    settings = seen_by_app.json()["data"]["settings"]
    assert settings["popup_url"] == "https://your-server.com/popup"
    assert settings["recording_enabled"] is True


async def test_the_signing_secret_is_revealed_on_request_and_rotated(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp
) -> None:
    revealed = await client.post(base(registered) + "/webhook-secret", headers=super_admin.headers)
    rotated = await client.post(
        base(registered) + "/webhook-secret/rotate",
        headers=super_admin.headers,
        json={"grace_seconds": 0},
    )
    again = await client.post(base(registered) + "/webhook-secret", headers=super_admin.headers)
    bad = await client.post(
        base(registered) + "/webhook-secret/rotate",
        headers=super_admin.headers,
        json={"grace_seconds": -1},
    )
    audit = await client.get(AUDIT, headers=super_admin.headers)

    assert revealed.status_code == 200, revealed.text
    assert rotated.json()["secret"] != revealed.json()["secret"]
    assert again.json()["secret"] == rotated.json()["secret"]
    assert "grace_seconds" in error_of(bad, 400)["message"]
    actions = [entry["action"] for entry in audit.json()["entries"]]
    assert "app.reveal_webhook_secret" in actions
    assert "app.rotate_webhook_secret" in actions
    assert revealed.json()["secret"] not in audit.text


async def test_agents_are_searched_and_paged(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp
) -> None:
    for n in range(1, 6):
        await create_user(client, registered, n)
    await create_user(client, registered, 6, name="Priya Sharma")

    seen: list[str] = []
    cursor = "0"
    while cursor is not None:
        page = await client.get(
            base(registered) + "/agents",
            headers=super_admin.headers,
            params={"limit": 4, "cursor": cursor},
        )
        seen += [agent["user_id"] for agent in page.json()["agents"]]
        cursor = page.json()["next_cursor"]
    found = await client.get(
        base(registered) + "/agents", headers=super_admin.headers, params={"search": "PRIYA"}
    )

    assert seen == [f"agent_{n:03d}" for n in range(1, 7)]
    agents = found.json()["agents"]
    assert [agent["user_id"] for agent in agents] == ["agent_006"]
    assert agents[0]["devices"]["sip"]["registered"] is False
    assert agents[0]["devices"]["sip"]["last_seen"] is None
    assert "secret" not in agents[0]["sip"]


async def test_an_agent_is_added_edited_switched_and_deleted(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp
) -> None:
    agents = base(registered) + "/agents"
    body = {"user_id": "asha", "name": "Asha", "email": "asha@example.com"}
    created = await client.post(agents, headers=super_admin.headers, json=body)
    twice = await client.post(agents, headers=super_admin.headers, json=body)
    edited = await client.put(
        agents + "/asha", headers=super_admin.headers, json={"phone_number": "09876500001"}
    )
    phone_on = await client.put(
        agents + "/asha/devices", headers=super_admin.headers, json={"sip": False}
    )
    last_off = await client.put(
        agents + "/asha/devices", headers=super_admin.headers, json={"phone": False}
    )
    deleted = await client.delete(agents + "/asha", headers=super_admin.headers)
    gone = await client.get(agents + "/asha", headers=super_admin.headers)

    assert created.status_code == 201, created.text
    assert "secret" not in created.json()["sip"]
    assert error_of(twice, 409)["code"] == "user_exists"
    assert edited.json()["phone_number"] == "+919876500001"
    assert phone_on.json()["devices"]["sip"]["enabled"] is False
    refusal = error_of(last_off, 400)
    assert refusal["code"] == "device_rule_violation"
    assert "At least one device must stay enabled" in refusal["message"]
    assert deleted.json() == {"user_id": "asha", "deleted": True}
    assert error_of(gone, 404)["code"] == "user_not_found"


async def test_a_csv_of_agents_is_imported_whole(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp
) -> None:
    response = await client.post(
        base(registered) + "/agents/import",
        headers=super_admin.headers | {"Content-Type": "text/csv"},
        content=csv_of(200).encode(),
    )
    listed = await client.get(
        base(registered) + "/agents", headers=super_admin.headers, params={"limit": 200}
    )

    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 200
    assert response.json()["failed"] == 0
    assert [row["row"] for row in response.json()["rows"]] == list(range(2, 202))
    assert len(listed.json()["agents"]) == 200
    audit = await client.get(AUDIT, headers=super_admin.headers, params={"action": "agent."})
    [entry] = audit.json()["entries"]
    assert entry["action"] == "agent.import"
    assert entry["details"] == {"imported": 200}


async def test_a_csv_with_a_bad_row_imports_nothing_and_says_why_for_each_row(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp
) -> None:
    await create_user(client, registered, 1, user_id="taken", email="taken@example.com")
    bad_rows = (
        "agent4,Agent 4,not-an-email,,,,08047491899,\n"
        "agent1,Agent 1 again,other@example.com,,,,08047491899,\n"
        "taken,Taken,new@example.com,,,,08047491899,\n"
        "agent7,Agent 7,agent7@example.com,another-sid,,,08047491899,\n"
    )
    response = await client.post(
        base(registered) + "/agents/import",
        headers=super_admin.headers | {"Content-Type": "text/csv"},
        content=csv_of(3, extra=bad_rows).encode(),
    )
    listed = await client.get(base(registered) + "/agents", headers=super_admin.headers)

    error = error_of(response, 400)
    body = response.json()
    assert error["code"] == "import_refused"
    assert error["field"] == "file"
    assert body["imported"] == 0
    rows = {row["row"]: row for row in body["rows"]}
    assert [rows[n]["ok"] for n in (2, 3, 4)] == [True, True, True]
    assert rows[5]["field"] == "Email"
    assert rows[6]["field"] == "AppUserId"
    assert "row 2" in rows[6]["message"]
    assert rows[7]["field"] == "AppUserId"
    assert "already" in rows[7]["message"]
    assert rows[8]["field"] == "ExotelAccountSid"
    assert [agent["user_id"] for agent in listed.json()["agents"]] == ["taken"]


@pytest.mark.parametrize(
    ("content", "wanted"),
    [
        (b"", "empty"),
        (HEADER.encode() + b"\n", "no agents"),
        (b"AppUserId,Nickname\nx,y\n", "Nickname"),
        (b"AppUserId,Email\nx,x@example.com\n", "AppUsername"),
        (b"\xff\xfe\x00", "UTF-8"),
        (csv_of(1001).encode(), "At most 1000"),
    ],
    ids=["empty", "header-only", "unknown-column", "missing-column", "not-utf8", "too-many"],
)
async def test_a_file_that_is_not_an_agent_csv_is_refused_naming_it(
    client: httpx.AsyncClient,
    super_admin: Operator,
    registered: RegisteredApp,
    content: bytes,
    wanted: str,
) -> None:
    response = await client.post(
        base(registered) + "/agents/import",
        headers=super_admin.headers | {"Content-Type": "text/csv"},
        content=content,
    )

    error: dict[str, Any] = error_of(response, 400)
    assert wanted in error["message"]
    assert error.get("field", "file") == "file"
