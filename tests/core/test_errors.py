"""Both envelopes for every kind of failure, with the request id and no traceback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.exc import DBAPIError

from exoplane.app import create_app
from exoplane.config import Settings
from tests.conftest import make_settings
from tests.factories import app_with_token


async def test_unknown_legacy_path_answers_in_the_exotel_envelope(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v2/integrations/call/nowhere")

    body = response.json()
    assert response.status_code == 404
    assert body["Status"] == "Failed"
    assert body["Code"] == 404
    assert "/v2/integrations/call/nowhere" in body["Error"]


async def test_unknown_resource_path_answers_in_the_resource_envelope(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v2/integrations/some-customer/apps/some-app/nothing")

    body = response.json()
    assert response.status_code == 404
    assert body["success"] is False
    assert body["error"]["code"] == "not_found"
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]


async def test_wrong_method_is_405_in_the_envelope(client: httpx.AsyncClient) -> None:
    response = await client.put("/v2/integrations/token")

    assert response.status_code == 405
    assert response.json()["Code"] == 405
    assert "PUT" in response.json()["Error"]


async def test_invalid_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v2/integrations/token",
        content=b'{"Id": ',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["Error"] == "Request body is not valid JSON"


async def test_a_form_body_is_refused_with_a_hint_about_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/v2/integrations/token", data={"Id": "x"})

    assert response.status_code == 400
    assert "application/json" in response.json()["Error"]


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, settings: Settings) -> None:
    app = await app_with_token(client, settings)
    huge = {"AppName": "x" * (settings.max_body_bytes + 1)}

    response = await client.post(
        "/v2/integrations/app", headers={"Authorization": app.token}, json=huge
    )

    assert response.status_code == 413
    assert response.json()["Code"] == 413
    assert str(settings.max_body_bytes) in response.json()["Error"]


async def test_a_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    response = await client.post(
        "/v2/integrations/token",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413


@pytest.fixture
async def failing_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)

    @application.get("/v2/integrations/call/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    async with LifespanManager(application) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield http


async def test_an_unexpected_error_is_a_generic_500_with_the_request_id(
    failing_client: httpx.AsyncClient,
) -> None:
    response = await failing_client.get("/v2/integrations/call/boom")

    body = response.json()
    request_id = response.headers["X-Request-ID"]
    assert response.status_code == 500
    assert body["RequestId"] == request_id
    assert request_id in body["Error"]
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


async def test_every_response_carries_a_fresh_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")

    assert uuid.UUID(first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


async def test_readiness_reports_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["database"] == "ok"


async def test_the_app_does_not_start_while_its_database_is_unreachable(tmp_path: Path) -> None:
    """It checks its key against the database's before it serves (tests/test_cluster.py);
    readiness during an outage that begins later is in test_outages.py."""
    url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    settings = make_settings(tmp_path, url, secret_key="k" * 40)

    with pytest.raises((OSError, DBAPIError)):
        async with LifespanManager(create_app(settings)):
            pass


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    schema = await client.get("/openapi.json")

    assert docs.status_code == 200
    assert "/v2/integrations/app" in schema.json()["paths"]
