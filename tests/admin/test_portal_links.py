"""Per-app portal links over /api/v1: minted (the URL shown once), listed and revoked by
super_admins only, audited, every bad input refused naming its field."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from exoplane.config import Settings
from exoplane.models import PortalLink
from exoplane.security import hash_secret
from tests.factories import RegisteredApp, app_with_token, database_session
from tests.voicebot.factories import AUDIT, Operator, error_of

OTHER_ID = "00000000-0000-4000-8000-000000000000"


def links_path(app: RegisteredApp, customer_id: str | None = None) -> str:
    return f"/api/v1/customers/{customer_id or app.customer_id}/apps/{app.id}/portal-links"


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
async def registered(client: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    return await app_with_token(client, settings)


async def mint(
    client: httpx.AsyncClient, operator: Operator, app: RegisteredApp, body: Any = None
) -> httpx.Response:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    return await client.post(links_path(app), headers=operator.headers, **kwargs)


async def test_only_a_super_admin_reaches_portal_links_and_only_under_the_apps_customer(
    client: httpx.AsyncClient, super_admin: Operator, admin: Operator, registered: RegisteredApp
) -> None:
    by_admin = await mint(client, admin, registered)
    listed_by_admin = await client.get(links_path(registered), headers=admin.headers)
    anonymous = await client.get(links_path(registered))
    foreign = await client.post(links_path(registered, OTHER_ID), headers=super_admin.headers)

    assert error_of(by_admin, 403)["code"] == "insufficient_role"
    assert error_of(listed_by_admin, 403)["code"] == "insufficient_role"
    assert anonymous.status_code == 401
    assert error_of(foreign, 404)["code"] == "app_not_found"


async def test_a_minted_link_shows_its_url_once_and_only_a_hash_of_its_token_is_kept(
    client: httpx.AsyncClient, settings: Settings, super_admin: Operator, registered: RegisteredApp
) -> None:
    minted = await mint(client, super_admin, registered)
    listed = await client.get(links_path(registered), headers=super_admin.headers)
    audit = await client.get(AUDIT, headers=super_admin.headers)

    assert minted.status_code == 201, minted.text
    link = minted.json()
    prefix = f"{settings.public_url.rstrip('/')}/console/portal/open/"
    assert link["url"].startswith(prefix)
    token = link["url"].removeprefix(prefix)
    assert len(token) >= 43
    assert link["status"] == "active"
    assert link["created_by"] == super_admin.email
    assert link["app_id"] == registered.id
    lasts = moment(link["expires_at"]) - moment(link["created_at"])
    assert lasts == timedelta(seconds=settings.portal_link_default_seconds)
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["portal_links"]] == [link["id"]]
    assert token not in listed.text
    assert "url" not in listed.json()["portal_links"][0]
    assert "app.portal_link_minted" in audit.text
    assert token not in audit.text
    async with database_session(settings) as session:
        row = (await session.scalars(select(PortalLink))).one()
    assert row.token_hash == hash_secret(token)
    assert token not in (row.token_hash, row.id)


async def test_a_link_lasts_as_asked_up_to_the_configured_maximum(
    client: httpx.AsyncClient, settings: Settings, super_admin: Operator, registered: RegisteredApp
) -> None:
    hour = await mint(client, super_admin, registered, {"expires_in_seconds": 3600})
    longest = await mint(
        client, super_admin, registered, {"expires_in_seconds": settings.portal_link_max_seconds}
    )
    too_long = await mint(
        client,
        super_admin,
        registered,
        {"expires_in_seconds": settings.portal_link_max_seconds + 1},
    )

    assert hour.status_code == 201, hour.text
    lasts = moment(hour.json()["expires_at"]) - moment(hour.json()["created_at"])
    assert lasts == timedelta(hours=1)
    assert longest.status_code == 201, longest.text
    error = error_of(too_long, 400)
    assert error["field"] == "expires_in_seconds"
    assert str(settings.portal_link_max_seconds) in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in_seconds": 59},
        {"expires_in_seconds": 0},
        {"expires_in_seconds": -3600},
        {"expires_in_seconds": "3600"},
        {"expires_in_seconds": 3600.5},
        {"expires_in_seconds": True},
        {"expires_in_seconds": 2**70},
    ],
)
async def test_a_bad_expiry_is_refused_naming_the_field(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp, body: Any
) -> None:
    refused = await mint(client, super_admin, registered, body)

    assert error_of(refused, 400)["field"] == "expires_in_seconds"


async def test_an_unknown_field_or_a_body_that_is_not_an_object_is_refused(
    client: httpx.AsyncClient, super_admin: Operator, registered: RegisteredApp
) -> None:
    unknown = await mint(client, super_admin, registered, {"lasts": 3600})
    listed = await mint(client, super_admin, registered, [3600])
    broken = await client.post(
        links_path(registered),
        headers={**super_admin.headers, "Content-Type": "application/json"},
        content=b"{",
    )
    links = await client.get(links_path(registered), headers=super_admin.headers)

    assert error_of(unknown, 400)["field"] == "lasts"
    assert error_of(listed, 400)["code"]
    assert error_of(broken, 400)["code"]
    assert links.json()["portal_links"] == []


async def test_a_revoked_link_says_so_and_revoking_again_or_elsewhere_is_refused(
    client: httpx.AsyncClient,
    settings: Settings,
    super_admin: Operator,
    admin: Operator,
    registered: RegisteredApp,
) -> None:
    link = (await mint(client, super_admin, registered)).json()
    other = await app_with_token(client, settings)
    revoke = links_path(registered) + f"/{link['id']}/revoke"

    by_admin = await client.post(revoke, headers=admin.headers)
    under_other_app = await client.post(
        links_path(other) + f"/{link['id']}/revoke", headers=super_admin.headers
    )
    unknown = await client.post(
        links_path(registered) + f"/{OTHER_ID}/revoke", headers=super_admin.headers
    )
    revoked = await client.post(revoke, headers=super_admin.headers)
    again = await client.post(revoke, headers=super_admin.headers)
    listed = await client.get(links_path(registered), headers=super_admin.headers)
    audit = await client.get(AUDIT, headers=super_admin.headers)

    assert error_of(by_admin, 403)["code"] == "insufficient_role"
    assert error_of(under_other_app, 404)["code"] == "portal_link_not_found"
    assert error_of(unknown, 404)["code"] == "portal_link_not_found"
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_at"] is not None
    assert error_of(again, 409)["code"] == "portal_link_revoked"
    assert [row["status"] for row in listed.json()["portal_links"]] == ["revoked"]
    assert "app.portal_link_revoked" in audit.text


async def test_an_expired_link_is_listed_as_expired(
    client: httpx.AsyncClient, settings: Settings, super_admin: Operator, registered: RegisteredApp
) -> None:
    link = (await mint(client, super_admin, registered, {"expires_in_seconds": 60})).json()
    async with database_session(settings) as session:
        row = await session.get(PortalLink, link["id"])
        assert row is not None
        row.expires_at = row.created_at
    listed = await client.get(links_path(registered), headers=super_admin.headers)

    assert [row["status"] for row in listed.json()["portal_links"]] == ["expired"]
