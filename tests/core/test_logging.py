"""Logs: one JSON line per request with its id, and never a secret."""

from __future__ import annotations

import io
import json

import httpx
import structlog

from exoplane.config import Settings
from exoplane.logs import configure_logging, get_logger
from tests.factories import customer_with_token, register_app, user_body


async def test_no_secret_reaches_the_logs_during_a_full_flow(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    captured = io.StringIO()
    configure_logging(settings, stream=captured)

    customer = await customer_with_token(client, settings)
    app = await register_app(client, customer)
    headers = {"Authorization": app.token}
    created = await client.post(app.users_path, headers=headers, json=user_body())
    await client.get("/v2/integrations/app", headers=headers)
    await client.get("/v2/integrations/usermapping?user_id=agent_001", headers=headers)
    await client.get(
        "/v2/integrations/app?entity=customer", headers={"Authorization": customer.token}
    )
    await client.delete("/v2/integrations/app", headers=headers)

    log = captured.getvalue()
    lines = [json.loads(line) for line in log.splitlines()]
    secrets = [
        customer.secret,
        customer.token,
        app.secret,
        app.token,
        "your_api_key",
        "your_api_token",
        created.json()["data"]["sip"]["secret"],
    ]
    assert len([line for line in lines if line["event"] == "request"]) >= 7
    assert all("request_id" in line for line in lines if line["event"] == "request")
    for secret in secrets:
        assert secret not in log


def test_fields_named_like_credentials_are_redacted(settings: Settings) -> None:
    captured = io.StringIO()
    configure_logging(settings, stream=captured)

    get_logger("test").info("calling upstream", api_token="tok-123", Authorization="Bearer x")

    line = json.loads(captured.getvalue())
    assert line["api_token"] == "[redacted]"
    assert line["Authorization"] == "[redacted]"
    assert "tok-123" not in captured.getvalue()


def test_bound_request_id_appears_on_every_line(settings: Settings) -> None:
    captured = io.StringIO()
    configure_logging(settings, stream=captured)

    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        get_logger("test").info("one")
    finally:
        structlog.contextvars.unbind_contextvars("request_id")

    assert json.loads(captured.getvalue())["request_id"] == "r-1"
