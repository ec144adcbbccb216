"""Plain typed helpers that build the world a test needs, through the real API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from exoplane.config import Settings
from exoplane.db import create_engine, create_session_factory, unit_of_work
from exoplane.integrations.service import create_customer as create_customer_row
from exoplane.security import Vault, load_secret_key

APP_BODY: dict[str, Any] = {
    "AppName": "WebRTC",
    "ExotelAccountSid": "exoteldemo",
    "ExotelApiKey": "your_api_key",
    "ExotelApiToken": "your_api_token",
    "ExotelDomain": "mumbai",
    "IsActive": True,
}


@dataclass(frozen=True)
class Customer:
    id: str
    secret: str
    token: str


@dataclass(frozen=True)
class RegisteredApp:
    id: str
    secret: str
    customer_id: str
    token: str

    @property
    def users_path(self) -> str:
        return f"/v2/integrations/{self.customer_id}/apps/{self.id}/users"


@asynccontextmanager
async def database_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """One unit of work on the test's database, beside whatever app is running on it."""
    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_session_factory(engine)) as session:
            yield session
    finally:
        await engine.dispose()


async def create_customer(settings: Settings, name: str = "Acme") -> tuple[str, str]:
    async with database_session(settings) as session:
        vault = Vault(load_secret_key(settings))
        customer, secret = await create_customer_row(session, vault, name)
        return customer.id, secret


async def get_token(client: httpx.AsyncClient, entity: str, id_: str, secret: str) -> str:
    response = await client.post(
        "/v2/integrations/token", json={"Id": id_, "Secret": secret, "Entity": entity}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["Data"]
    return token


async def customer_with_token(client: httpx.AsyncClient, settings: Settings) -> Customer:
    customer_id, secret = await create_customer(settings)
    return Customer(customer_id, secret, await get_token(client, "customer", customer_id, secret))


async def register_app(
    client: httpx.AsyncClient, customer: Customer, **overrides: Any
) -> RegisteredApp:
    response = await client.post(
        "/v2/integrations/app",
        headers={"Authorization": customer.token},
        json={**APP_BODY, **overrides},
    )
    assert response.status_code == 200, response.text
    data = response.json()["Data"]
    token = await get_token(client, "app", data["AppID"], data["AppSecret"])
    return RegisteredApp(data["AppID"], data["AppSecret"], customer.id, token)


async def app_with_token(client: httpx.AsyncClient, settings: Settings) -> RegisteredApp:
    return await register_app(client, await customer_with_token(client, settings))


def user_body(n: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "user_id": f"agent_{n:03d}",
        "name": f"Agent {n}",
        "email": f"agent{n}@example.com",
        "phone_number": f"+9198765{n:05d}",
        "virtual_number": "+918047491899",
        **overrides,
    }


def mapping_body(n: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "AppUserId": f"agent{n}@example.com",
        "AppUsername": f"Agent Number{n}",
        "Email": f"agent{n}@example.com",
        "ExotelAccountSid": "exoteldemo",
        "ExotelUserName": f"Agent Number{n}",
        "AgentNumber": f"09876{n:06d}",
        "VirtualNumber": "08047491899",
        **overrides,
    }


async def create_user(
    client: httpx.AsyncClient, app: RegisteredApp, n: int = 1, **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        app.users_path, headers={"Authorization": app.token}, json=user_body(n, **overrides)
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data
