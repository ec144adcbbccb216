"""The console over ASGI: operators of both roles, and a browser-like client that signs in
and carries each page's CSRF token."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from exoplane.app import create_app
from exoplane.config import Settings
from tests.conftest import make_settings
from tests.voicebot.factories import Operator, create_operator

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, f"no CSRF token on the page:\n{page.text[:2000]}"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    """Sign in as a browser does: load the form (and its cookie), post it."""
    form = await client.get("/console/login")
    assert form.status_code == 200, form.text
    return await client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(form)},
    )


async def post_form(
    client: httpx.AsyncClient, page_path: str, action: str, data: dict[str, str]
) -> httpx.Response:
    """Submit a form found on ``page_path`` with that page's CSRF token."""
    page = await client.get(page_path)
    assert page.status_code == 200, page.text
    return await client.post(action, data={**data, "csrf_token": csrf_of(page)})


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "home", database_url, allow_private_networks=True)


@pytest.fixture
async def super_admin(settings: Settings) -> Operator:
    return await create_operator(settings, "root@example.com", "super_admin")


@pytest.fixture
async def admin(settings: Settings) -> Operator:
    return await create_operator(settings, "ops@example.com", "admin")


@pytest.fixture
async def signed_in(client: httpx.AsyncClient, super_admin: Operator) -> httpx.AsyncClient:
    response = await sign_in(client, super_admin.email, super_admin.password)
    assert response.status_code == 303, response.text
    return client


@contextlib.asynccontextmanager
async def console_client(
    settings: Settings, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with ``settings`` over ASGI, as one browser (its own cookies)."""
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


async def another_browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A second client on the same app, with none of the first one's cookies."""
    transport = client._transport
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
