"""Cross-origin access: none unless origins are configured, then only for those origins."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from exoplane.app import create_app
from exoplane.config import Settings
from tests.conftest import make_settings

CONSOLE = "https://console.example.com"


async def _preflight(settings: Settings, origin: str) -> httpx.Response:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.options(
                "/v2/integrations/app",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "Authorization",
                },
            )


async def _simple(settings: Settings, origin: str) -> httpx.Response:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/healthz", headers={"Origin": origin})


async def test_no_origin_is_allowed_by_default(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url)

    preflight = await _preflight(settings, CONSOLE)
    simple = await _simple(settings, CONSOLE)

    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


async def test_a_configured_origin_may_call_the_api(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, cors_origins=[CONSOLE])

    preflight = await _preflight(settings, CONSOLE)
    simple = await _simple(settings, CONSOLE)

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == CONSOLE
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert simple.headers["access-control-allow-origin"] == CONSOLE
    assert "X-Request-ID" in simple.headers["access-control-expose-headers"]


async def test_another_origin_is_refused(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, cors_origins=[CONSOLE])

    preflight = await _preflight(settings, "https://evil.example.net")
    simple = await _simple(settings, "https://evil.example.net")

    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


def test_origins_are_read_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXOPLANE_CORS_ORIGINS", " https://a.example.com, https://b.example.com ,")

    settings = Settings(_env_file=None)

    assert settings.cors_origins == ["https://a.example.com", "https://b.example.com"]
